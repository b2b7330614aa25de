"""Output: every sample's label values in its family's order, whichever way they were given."""

from __future__ import annotations

from exporter.metrics import JOB_STATE, NODE_STATE, STATES, JobRef, Output, gauge, job_info_family

JOB = JobRef("j1", "Job one")


def test_job_families_take_the_extra_labels_in_the_familys_order_not_the_callers() -> None:
    info = job_info_family("kind", "owner")
    output = Output("siren", "t1")
    output.add(info, 1, JOB, owner="ann", kind="batch", run_id="r9")
    assert output.samples == [(info, ("siren", "t1", "j1", "Job one", "r9", "batch", "ann"), 1.0)]


def test_families_that_do_not_start_with_the_job_labels_are_ordered_by_name() -> None:
    odd = gauge("odd", "Labels in another order.", ("node", "job_id", "platform", "target", "job_name"))
    target_only = gauge("target_only", "No job.", ("target", "platform"))
    output = Output("siren", "t1")
    output.add(odd, 2, JOB, node="n")
    output.add(target_only, 3)
    assert output.samples == [
        (odd, ("n", "j1", "siren", "t1", "Job one"), 2.0),
        (target_only, ("t1", "siren"), 3.0),
    ]
    assert odd.after_job is None
    assert job_info_family().after_job == ("run_id",)


def test_a_state_set_has_one_sample_per_state_with_the_state_in_its_place() -> None:
    output = Output("dataarts", "t2")
    output.state_set(NODE_STATE, "failed", JOB, node="extract")
    output.state_set(JOB_STATE, "no such state", JOB)
    assert len(output) == 2 * len(STATES)
    samples = list(output.all_samples())
    assert [values for _family, values, _value in samples[: len(STATES)]] == [
        ("dataarts", "t2", "j1", "Job one", "extract", state) for state in STATES
    ]
    assert [value for _family, _values, value in samples[: len(STATES)]] == [float(s == "failed") for s in STATES]
    assert [value for _family, _values, value in samples[len(STATES) :]] == [0.0] * len(STATES), "none is current"


def test_a_sparse_state_set_has_the_current_state_alone() -> None:
    output = Output("dataarts", "t2", sparse=True)
    output.state_set(JOB_STATE, "running", JOB)
    assert list(output.all_samples()) == [(JOB_STATE, ("dataarts", "t2", "j1", "Job one", "running"), 1.0)]
