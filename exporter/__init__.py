"""ingestion-exporter: one Prometheus exporter for data-ingestion and stream-processing jobs."""

__version__ = "0.1.0"
