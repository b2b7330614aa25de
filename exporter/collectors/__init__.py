"""The one registry of platforms: each entry is a collector class, which names its settings model."""

from __future__ import annotations

from typing import Any

from exporter.collectors.base import TargetCollector
from exporter.collectors.cloudstream import CloudStreamCollector
from exporter.collectors.dataarts import DataArtsCollector
from exporter.collectors.informatica import InformaticaCollector
from exporter.collectors.siren import SirenCollector
from exporter.metrics import Family
from exporter.settings import TargetSettings

COLLECTORS: dict[str, type[TargetCollector[Any]]] = {
    collector.platform: collector
    for collector in (InformaticaCollector, SirenCollector, DataArtsCollector, CloudStreamCollector)
}


def target_models() -> list[type[TargetSettings]]:
    return [collector.settings_model for collector in COLLECTORS.values()]


def platform_families() -> list[Family]:
    return [family for collector in COLLECTORS.values() for family in collector.families]
