"""The process-wide pool of upstream workers: each lane's limit, no lane starving another, lanes closed alone."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator

import pytest

from exporter.workers import UPSTREAM_WORKERS, DaemonPool, Lane

WAIT = 10.0  # a bound on every wait: reached only when the pool is broken


class Upstream:
    """Calls that block until released, counting those in flight per lane and the most ever in flight."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self._lock = threading.Lock()
        self.in_flight: Counter[str] = Counter()
        self.most: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()

    def call(self, lane: str, hangs: bool = True) -> Callable[[int], int]:
        def call(item: int) -> int:
            with self._lock:
                self.in_flight[lane] += 1
                self.calls[lane] += 1
                self.most[lane] = max(self.most[lane], self.in_flight[lane])
            try:
                if hangs:
                    assert self.release.wait(WAIT), "never released"
                return item * 10
            finally:
                with self._lock:
                    self.in_flight[lane] -= 1

        return call

    def until(self, **in_flight: int) -> None:
        """Wait (bounded) until each named lane has exactly that many calls in flight."""
        end = time.monotonic() + WAIT
        while any(self.in_flight[lane] != count for lane, count in in_flight.items()):
            assert time.monotonic() < end, (dict(self.in_flight), in_flight)
            time.sleep(0.005)


@pytest.fixture
def pool() -> Iterator[DaemonPool]:
    pool = DaemonPool("test-upstream", most=0)  # the smallest size: lanes share it
    yield pool
    pool.shutdown()


def run_in_thread(lane: Lane, items: list[int], call: Callable[[int], int]) -> tuple[threading.Thread, list[object]]:
    results: list[object] = []
    thread = threading.Thread(target=lambda: results.extend(lane.run(items, call, WAIT)), daemon=True)
    thread.start()
    return thread, results


def test_a_lane_never_has_more_calls_running_than_its_limit(pool: DaemonPool) -> None:
    upstream = Upstream()
    a, b = pool.lane(2), pool.lane(8)
    assert pool.size == 8 + 1
    assert b.run(list(range(8)), upstream.call("b", hangs=False), WAIT) == [i * 10 for i in range(8)]  # 8 workers
    first, first_results = run_in_thread(a, list(range(10)), upstream.call("a"))
    upstream.until(a=2)
    second, second_results = run_in_thread(b, list(range(6)), upstream.call("b"))
    upstream.until(b=6)  # the workers a may not have are b's
    assert upstream.in_flight == {"a": 2, "b": 6}
    upstream.release.set()
    first.join(WAIT)
    second.join(WAIT)
    assert first_results == [item * 10 for item in range(10)] and second_results == [i * 10 for i in range(6)]
    assert upstream.most["a"] == 2, upstream.most


def test_lanes_together_run_no_more_calls_than_the_pool_size(pool: DaemonPool) -> None:
    upstream = Upstream()
    a, b = pool.lane(3), pool.lane(2)
    assert pool.size == 3 + 1
    second, second_results = run_in_thread(b, list(range(10)), upstream.call("b"))
    upstream.until(b=2)
    first, first_results = run_in_thread(a, list(range(10)), upstream.call("a"))
    upstream.until(a=2)  # four in all: the pool's size
    assert upstream.in_flight == {"a": 2, "b": 2}
    upstream.release.set()
    first.join(WAIT)
    second.join(WAIT)
    assert first_results == second_results == [item * 10 for item in range(10)]


def test_a_hung_lane_leaves_the_others_their_workers(pool: DaemonPool) -> None:
    upstream = Upstream()
    hung, other_hung, fast = pool.lane(4), pool.lane(4), pool.lane(4)
    assert pool.size == 4 + 2
    thread, _ = run_in_thread(hung, list(range(20)), upstream.call("hung"))
    upstream.until(hung=4)
    other, _ = run_in_thread(other_hung, list(range(20)), upstream.call("other_hung"))
    upstream.until(other_hung=1)  # what it is owed, and no more: the last worker is owed to `fast`
    assert fast.run(list(range(50)), upstream.call("fast", hangs=False), WAIT) == [i * 10 for i in range(50)]
    assert upstream.in_flight == {"hung": 4, "other_hung": 1, "fast": 0}
    assert upstream.calls["hung"] == 4 and upstream.most["other_hung"] == 1
    upstream.release.set()
    thread.join(WAIT)
    other.join(WAIT)
    assert upstream.calls == {"hung": 20, "other_hung": 20, "fast": 50}


def test_closing_a_lane_leaves_the_calls_of_others_running(pool: DaemonPool) -> None:
    upstream = Upstream()
    closed, kept = pool.lane(2), pool.lane(2)
    first, _ = run_in_thread(closed, [1, 2], upstream.call("closed"))
    second, kept_results = run_in_thread(kept, [1, 2, 3], upstream.call("kept"))
    upstream.until(closed=2, kept=1)
    closed.close()
    assert pool.size == 2
    upstream.release.set()
    first.join(WAIT)
    second.join(WAIT)
    assert kept_results == [10, 20, 30]
    assert kept.run([4], upstream.call("kept"), WAIT) == [40]


def test_results_in_order_with_each_failure_in_its_place(pool: DaemonPool) -> None:
    def call(item: int) -> int:
        if item % 3 == 0:
            raise ValueError(item)
        return item

    results = pool.lane(4).run(list(range(9)), call, WAIT)
    assert [r if isinstance(r, int) else repr(r) for r in results] == [
        repr(ValueError(0)),
        1,
        2,
        repr(ValueError(3)),
        4,
        5,
        repr(ValueError(6)),
        7,
        8,
    ]


def test_past_the_wait_calls_running_time_out_and_the_rest_never_start(pool: DaemonPool) -> None:
    upstream = Upstream()
    lane = pool.lane(2)
    results = lane.run(list(range(6)), upstream.call("a"), 0.2)
    assert all(isinstance(result, TimeoutError) for result in results), results
    upstream.release.set()
    assert lane.run([7], upstream.call("a"), WAIT) == [70]
    assert upstream.calls["a"] == 2 + 1  # the four items not started when the wait ended never ran


def test_an_empty_batch_returns_at_once(pool: DaemonPool) -> None:
    assert pool.lane(1).run([], str, WAIT) == []


def test_a_few_targets_keep_every_call_a_pool_of_their_own_gave_them() -> None:
    """Up to UPSTREAM_WORKERS calls in flight the pool is the sum of the lanes' limits: four platforms of 16 run
    64 calls at once, as with a pool per target; past it the pool stops growing with the number of targets."""
    pool = DaemonPool("test-upstream")
    try:
        upstream = Upstream()
        lanes = [pool.lane(16) for _ in range(4)]
        assert pool.size == 64 == UPSTREAM_WORKERS
        threads = [run_in_thread(lane, list(range(20)), upstream.call(f"l{i}"))[0] for i, lane in enumerate(lanes)]
        upstream.until(**{f"l{i}": 16 for i in range(4)})  # every lane at its limit at once
        upstream.release.set()
        for thread in threads:
            thread.join(WAIT)
        lanes += [pool.lane(16) for _ in range(6)]
        assert pool.size == UPSTREAM_WORKERS  # ten targets of 16: 64 workers, not 160
        lanes += [pool.lane(60)]
        assert pool.size == 60 + 10  # one large lane and a worker for each other one
    finally:
        pool.shutdown()
