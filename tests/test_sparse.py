"""`state_series: sparse`: one state series per job and node (the current one), the same states as `full`."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from exporter.metrics import STATES
from exporter.simulator import Simulator, SimulatorOptions
from tests.helpers import MODEL, SIMULATED, Samples, make_app, make_settings, scrape, simulated

STATE_FAMILIES = ("ingestion_job_state", "ingestion_node_state")


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    # transitions far apart, so the full and the sparse scrape see the same states
    with Simulator(SimulatorOptions(jobs=4, transition_seconds=3600)) as simulator:
        yield simulator


def _targets(sim: Simulator, prefix: str, secrets_dir: Path) -> list[dict[str, Any]]:
    return [simulated(sim, platform, f"{prefix}-{platform}", secrets_dir) for platform in SIMULATED]


def _states(samples: Samples, family: str) -> dict[tuple[tuple[str, str], ...], dict[str, float]]:
    """Per job (or node) without the target label: {state: value}."""
    found: dict[tuple[tuple[str, str], ...], dict[str, float]] = {}
    for (name, labels), value in samples.items():
        if name != family:
            continue
        label_map = dict(labels)
        state = label_map.pop("state")
        label_map["target"] = label_map["target"].split("-", 1)[1]
        found.setdefault(tuple(sorted(label_map.items())), {})[state] = value
    return found


def test_sparse_emits_only_the_current_state_and_agrees_with_full(sim: Simulator, tmp_path: Path) -> None:
    full = scrape(make_app(make_settings(_targets(sim, "full", tmp_path))))
    sparse = scrape(make_app(make_settings(_targets(sim, "sparse", tmp_path), state_series="sparse")))
    for family in STATE_FAMILIES:
        full_states, sparse_states = _states(full, family), _states(sparse, family)
        assert full_states, f"no {family} series to compare"
        assert set(sparse_states) == set(full_states), "sparse keeps every job and node"
        for key, states in full_states.items():
            assert sorted(states) == sorted(STATES) and sum(states.values()) == 1.0
            current = next(state for state, value in states.items() if value == 1.0)
            assert sparse_states[key] == {current: 1.0}, key
    platforms = Counter(dict(key)["platform"] for key in _states(sparse, "ingestion_node_state"))
    assert set(platforms) >= {"informatica", "dataarts"}, "node states come from both node-reporting platforms"
    # nothing but the state sets changes
    others = {key for key in full if key[0] not in STATE_FAMILIES and "scrape_duration" not in key[0]}
    assert {(n, frozenset((k, v.replace("full-", "sparse-")) for k, v in ls)) for n, ls in others} <= set(sparse)


def test_unreadable_job_is_a_single_unknown_series_in_sparse(sim: Simulator, tmp_path: Path) -> None:
    sim.faults.add({"kind": "error", "status": 500, "platform": "dataarts", "endpoint": "job_status"})
    try:
        samples = scrape(make_app(make_settings(_targets(sim, "down", tmp_path), state_series="sparse")))
    finally:
        sim.faults.clear()
    dataarts = {
        key: states
        for key, states in _states(samples, "ingestion_job_state").items()
        if dict(key)["platform"] == "dataarts"
    }
    assert len(dataarts) == len(sim.jobs("dataarts"))
    assert all(states == {"unknown": 1.0} for states in dataarts.values())


def test_full_is_the_default_and_other_values_are_refused() -> None:
    assert MODEL.model_fields["state_series"].default == "full"
    with pytest.raises(ValueError, match="state_series"):
        MODEL(state_series="dense")
