"""The metric contract: family catalogue, normalized states and the per-target sample builder.

Every family the exporter can emit is declared here or in a collector's `families`, so the exposition, the
README metrics table test and the dashboards all read one list.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Literal

NAMESPACE = "ingestion"

STATES: tuple[str, ...] = (
    "starting",
    "running",
    "degraded",
    "failed",
    "stopping",
    "stopped",
    "succeeded",
    "unknown",
)

# How a run ended, for `job_runs_total`: `unknown` is a run seen to end without a readable outcome.
OUTCOMES: tuple[str, ...] = ("succeeded", "failed", "stopped", "unknown")

TARGET_LABELS: tuple[str, ...] = ("platform", "target")
JOB_LABELS: tuple[str, ...] = (*TARGET_LABELS, "job_id", "job_name")
NODE_LABELS: tuple[str, ...] = (*JOB_LABELS, "node")


@dataclass(frozen=True)
class Family:
    """One metric family: its name without namespace, type, HELP sentence and label names in order."""

    name: str
    kind: Literal["gauge", "counter"]
    help: str
    labels: tuple[str, ...]

    @property
    def full_name(self) -> str:
        return f"{NAMESPACE}_{self.name}"

    @cached_property
    def after_job(self) -> tuple[str, ...] | None:
        """The label names after the job's four, when the family starts with them (most do): `Output.add` then
        builds the values as a tuple straight away, with no dictionary per sample."""
        return self.labels[len(JOB_LABELS) :] if self.labels[: len(JOB_LABELS)] == JOB_LABELS else None

    @cached_property
    def state_index(self) -> int:
        """Where the `state` label is among the labels, for a family of state sets."""
        return self.labels.index("state")


def gauge(name: str, help_text: str, labels: tuple[str, ...]) -> Family:
    return Family(name, "gauge", help_text, labels)


def counter(name: str, help_text: str, labels: tuple[str, ...]) -> Family:
    if not name.endswith("_total"):
        raise ValueError(f"counter {name} must end in _total")
    return Family(name, "counter", help_text, labels)


JOB_STATE = gauge(
    "job_state",
    "Normalized job state: 1 for the current state, 0 for every other state of the fixed set.",
    (*JOB_LABELS, "state"),
)
JOB_VENDOR_STATE = gauge(
    "job_vendor_state",
    "The platform's own job state, snake_cased; always 1, the value is in the vendor_state label.",
    (*JOB_LABELS, "vendor_state"),
)
JOB_LAST_UPDATE = gauge(
    "job_last_update_timestamp_seconds",
    "When the platform last recorded the job's status, in seconds since the epoch.",
    JOB_LABELS,
)
JOB_START = gauge(
    "job_start_timestamp_seconds",
    "When the job's current or last run started, in seconds since the epoch.",
    JOB_LABELS,
)
JOB_END = gauge(
    "job_end_timestamp_seconds",
    "When the job's last run ended, in seconds since the epoch; absent while it runs.",
    JOB_LABELS,
)
JOB_RUNS = counter(
    "job_runs_total",
    "Runs of the job that ended since the exporter first looked at it, by outcome; each run counted once.",
    (*JOB_LABELS, "outcome"),
)
JOB_LAST_FAILURE = gauge(
    "job_last_failure_timestamp_seconds",
    "When the job's newest failed run seen by the exporter ended, in seconds since the epoch, as the platform says.",
    JOB_LABELS,
)
NODE_STATE = gauge(
    "node_state",
    "Normalized state of a job's node or operator: 1 for the current state, 0 for the others.",
    (*NODE_LABELS, "state"),
)
NODE_VENDOR_STATE = gauge(
    "node_vendor_state",
    "The platform's own state of a job's node, snake_cased; always 1, the value is in the vendor_state label.",
    (*NODE_LABELS, "vendor_state"),
)
SCRAPE_SUCCESS = gauge(
    "scrape_success",
    "1 when every upstream call for the target succeeded during the last collection, else 0.",
    TARGET_LABELS,
)
SCRAPE_DURATION = gauge(
    "scrape_duration_seconds",
    "Wall time the last collection of the target took, in seconds.",
    TARGET_LABELS,
)
JOBS_DISCOVERED = gauge(
    "jobs_discovered",
    "Jobs the exporter knows for the target, from configuration and the last discovery.",
    TARGET_LABELS,
)

CORE_FAMILIES: tuple[Family, ...] = (
    JOB_STATE,
    JOB_VENDOR_STATE,
    JOB_LAST_UPDATE,
    JOB_START,
    JOB_END,
    JOB_RUNS,
    JOB_LAST_FAILURE,
    NODE_STATE,
    NODE_VENDOR_STATE,
    SCRAPE_SUCCESS,
    SCRAPE_DURATION,
    JOBS_DISCOVERED,
)

_SNAKE_SPLIT = re.compile(r"[^0-9a-zA-Z]+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


@lru_cache(maxsize=1024)  # vendor states are a handful of values, seen again for every job; bounded all the same
def snake_case(value: str) -> str:
    """`Up and Running` -> `up_and_running`, `jobRunning` -> `job_running`: vendor values as label values."""
    spaced = _CAMEL.sub("_", value.strip())
    return "_".join(part for part in _SNAKE_SPLIT.split(spaced) if part).lower() or "empty"


@dataclass(frozen=True)
class JobRef:
    """A job as the exporter names it on every series: a stable id and a display name."""

    job_id: str
    job_name: str = ""


Sample = tuple["Family", tuple[str, ...], float]


class Output:
    """Samples of one target's collection, later merged with the other targets' into families.

    A state set is kept as one entry, its label values with "" for the state and the current state, and expanded
    to its eight samples only as they are written: most of an exposition's samples are states, and one entry
    instead of eight holds a 2,000-job scrape's samples in 7 MiB instead of 12, and builds and renders them in
    about half the CPU (README, Hot paths).
    """

    def __init__(self, platform: str, target: str, *, sparse: bool = False) -> None:
        self.platform = platform
        self.target = target
        self.sparse = sparse
        self.samples: list[Sample] = []
        self.state_sets: list[tuple[Family, tuple[str, ...], str]] = []  # family, values, current state
        self.jobs_with_state: set[str] = set()

    def __len__(self) -> int:
        """How many samples it holds, the state sets' counted one per state."""
        return len(self.samples) + len(STATES) * len(self.state_sets)

    def all_samples(self) -> Iterator[Sample]:
        """Every sample: the added ones, then each state set's, one per normalized state (1 for the current)."""
        yield from self.samples
        for family, values, current in self.state_sets:
            where = family.state_index
            for state in STATES:
                yield family, (*values[:where], state, *values[where + 1 :]), 1.0 if state == current else 0.0

    def add(self, family: Family, value: float, job: JobRef | None = None, **labels: str) -> None:
        """Add one sample; platform, target and the job labels are filled in from context."""
        self.samples.append((family, self._values(family, job, labels), float(value)))

    def _values(self, family: Family, job: JobRef | None, labels: dict[str, str]) -> tuple[str, ...]:
        """The sample's label values in the family's order."""
        after_job = family.after_job if job is not None else None
        if job is not None and after_job is not None and len(after_job) == len(labels):
            return (self.platform, self.target, job.job_id, job.job_name, *[labels[name] for name in after_job])
        values: dict[str, str] = {"platform": self.platform, "target": self.target}
        if job is not None:
            values["job_id"] = job.job_id
            values["job_name"] = job.job_name
        values.update(labels)
        return tuple(values[name] for name in family.labels)

    def add_optional(self, family: Family, value: float | None, job: JobRef, **labels: str) -> None:
        """Add a sample only when the upstream gave a value: absent data stays absent, never 0."""
        if value is not None:
            self.add(family, value, job, **labels)

    def state_set(self, family: Family, current: str, job: JobRef, **labels: str) -> None:
        """Emit every normalized state as 0/1 so alerts and dashboards never miss a series; `sparse` emits only
        the current state's series (value 1)."""
        if self.sparse:
            self.add(family, 1.0, job, state=current, **labels)
            return
        self.state_sets.append((family, self._values(family, job, {**labels, "state": ""}), current))

    def job_state(self, job: JobRef, state: str, vendor_state: str | None) -> None:
        self.state_set(JOB_STATE, state, job)
        if vendor_state is not None:
            self.add(JOB_VENDOR_STATE, 1, job, vendor_state=snake_case(vendor_state))
        self.jobs_with_state.add(job.job_id)

    def job_unknown(self, job: JobRef) -> None:
        """A job whose status could not be read this time stays visible as `unknown`."""
        if job.job_id not in self.jobs_with_state:
            self.job_state(job, "unknown", None)

    def child(self) -> Output:
        """A buffer for one job, merged only when the job was read completely and in time."""
        return Output(self.platform, self.target, sparse=self.sparse)

    def extend(self, other: Output) -> None:
        self.samples.extend(other.samples)
        self.state_sets.extend(other.state_sets)
        self.jobs_with_state |= other.jobs_with_state


def all_families(extra: Iterable[Family]) -> tuple[Family, ...]:
    """The core families plus the collectors' own. A name may repeat with other labels (each platform's
    `job_info` has its own descriptive labels) but never with another type or HELP."""
    families: list[Family] = list(CORE_FAMILIES)
    for family in extra:
        clash = next((f for f in families if f.name == family.name), None)
        if clash is not None and (clash.kind, clash.help) != (family.kind, family.help):
            raise ValueError(f"family {family.name} declared twice with another type or HELP")
        if family not in families:
            families.append(family)
    return tuple(families)


def node_info_family(*extra_labels: str) -> Family:
    """A platform's `ingestion_node_info`: the node labels and its own descriptive labels."""
    return gauge(
        "node_info", "Descriptive labels of a job's node or operator; always 1.", (*NODE_LABELS, *extra_labels)
    )


def job_info_family(*extra_labels: str) -> Family:
    """A platform's `ingestion_job_info`: the job labels, `run_id` and its own descriptive labels."""
    return gauge(
        "job_info",
        "Descriptive labels of the job and its current run; always 1.",
        (*JOB_LABELS, "run_id", *extra_labels),
    )
