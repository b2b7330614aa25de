# Container image of ingestion-exporter.
#
#   podman build -t ingestion-exporter:0.1.0 --build-arg VERSION=0.1.0 .
#   podman run --rm -p 9867:9867 -v "$PWD/config.yaml:/etc/ingestion-exporter/config.yaml:ro" ingestion-exporter:0.1.0
#
# The build stage installs the pinned runtime dependencies (requirements.lock, wheels only) and the exporter
# into a virtual environment; the final stage is the same slim Python base with that environment copied in,
# no pip, no compiler, and a fixed non-root UID/GID (10001) that Kubernetes' runAsNonRoot can verify.
# The exporter is PID 1 and stops cleanly on SIGTERM (it installs its own handler).

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
RUN python -m venv /opt/ingestion-exporter
COPY requirements.lock ./
RUN /opt/ingestion-exporter/bin/pip install --no-deps --only-binary=:all: -r requirements.lock
COPY pyproject.toml README.md ./
COPY exporter ./exporter
RUN /opt/ingestion-exporter/bin/pip install --no-deps --no-compile . \
    && /opt/ingestion-exporter/bin/python -m compileall -q /opt/ingestion-exporter/lib \
    && /opt/ingestion-exporter/bin/python -m pip uninstall --yes pip setuptools

FROM ${PYTHON_IMAGE}

ARG PYTHON_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG SOURCE=https://github.com/ingestion-exporter/ingestion-exporter

LABEL org.opencontainers.image.title="ingestion-exporter" \
      org.opencontainers.image.description="Prometheus exporter for data-ingestion and stream-processing jobs on Informatica, Huawei DataArts Studio, Huawei Cloud Stream and Siren Federate." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"

RUN groupadd --system --gid 10001 exporter \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin exporter

COPY --from=build /opt/ingestion-exporter /opt/ingestion-exporter

ENV PATH=/opt/ingestion-exporter/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

USER 10001:10001
EXPOSE 9867
ENTRYPOINT ["ingestion-exporter"]
CMD ["--config.file=/etc/ingestion-exporter/config.yaml"]
