"""Which jobs this exporter process collects when several processes share the work, as kube-state-metrics shards.

The unit of sharding is the job: shard I of N owns the jobs whose key, the target name and the job id joined by a
NUL byte, hashes under SHA-256 to a number (its first eight bytes, big-endian) equal to I modulo N. The function
is fixed: every process and every release puts a job on the same shard, one huge target spreads over all
shards, and many small ones spread too. Shard 0 of 1 owns every job.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

_ORDINAL = re.compile(r"-(\d+)$")


@dataclass(frozen=True)
class Shard:
    ordinal: int = 0
    total: int = 1

    def owns(self, target: str, job_id: str) -> bool:
        return self.total == 1 or job_shard(target, job_id, self.total) == self.ordinal


def job_shard(target: str, job_id: str, total: int) -> int:
    """The shard of `total` that owns a job."""
    digest = hashlib.sha256(f"{target}\0{job_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % total


def ordinal_of_pod(name: str) -> int | None:
    """A StatefulSet pod's ordinal: the number after its name's last dash (`ingestion-exporter-2` -> 2)."""
    found = _ORDINAL.search(name)
    return int(found.group(1)) if found else None


EVERY_JOB = Shard()
"""The one shard of an exporter that does not share its jobs."""
