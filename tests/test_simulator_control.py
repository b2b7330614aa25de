"""The simulator's clock control, over real HTTP."""

from __future__ import annotations

import pytest
import requests

from exporter.simulator import Simulator, SimulatorOptions
from tests.vendors import advance, informatica_session, informatica_status

# --- clock --------------------------------------------------------------------------------------------------


def test_clock_control_moves_simulated_time_for_sessions() -> None:
    with Simulator(SimulatorOptions(jobs=1, platforms=["informatica"], session_idle_seconds=60)) as sim:
        session, flow = informatica_session(sim), sim.jobs("informatica")[0]["id"]
        before = sim.clock.now()
        now = advance(sim, 61)
        assert 61 <= now - before < 62 and abs(sim.clock.now() - now) < 1
        assert informatica_status(sim, session, flow).status_code == 401  # idle past its limit
        assert abs(advance(sim, 0) - sim.clock.now()) < 1


@pytest.mark.parametrize(
    "body",
    [
        '{"advance": -1}',
        '{"advance": "60"}',
        '{"advance": true}',
        '{"advance": NaN}',
        '{"advance": Infinity}',
        "{}",
        "[60]",
        "sixty",
    ],
)
def test_clock_control_refuses_what_is_not_a_forward_move(body: str) -> None:
    with Simulator(SimulatorOptions(jobs=1, platforms=["informatica"])) as sim:
        before = sim.clock.now()
        reply = requests.post(f"{sim.url}/_sim/clock", data=body, timeout=5)
        assert reply.status_code == 400 and reply.json()["error"]
        assert sim.clock.now() - before < 1
