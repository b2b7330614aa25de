"""One bounded pool of daemon threads for every target's upstream calls, each target on a lane of its own.

A pool per target cost the process a thread per call in flight of every target at once: ten targets of 16 ran
160 threads contending for the GIL, and the CPU of the same jobs rose with the number of targets. One pool for
the process keeps the calls in flight near one target's, whatever the number of targets.

Its size follows the lanes open: the sum of their limits up to UPSTREAM_WORKERS (so a few targets keep every call
in flight a pool of their own gave them), and past it the larger of UPSTREAM_WORKERS and the largest lane's limit
plus one worker for each other lane (ten targets of 16: 64 workers, not 160). A lane never has
more calls running than its limit, and a worker goes to the waiting lane with the fewest running; a lane with
nothing running is always owed one worker (a lane that has some may not take the last worker another one is
owed), so one slow or hung target holds at most its limit and never the workers the others need to progress.

The threads are daemons (ThreadPoolExecutor joins its workers at interpreter exit: a call stuck on a hung
upstream would hold the process past SIGTERM). A lane runs a batch of items without a Future per item.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")
_PENDING = object()
UPSTREAM_WORKERS = 64  # calls in flight at most for the whole process, unless one lane and a worker each need more
WORKER_NAME = "upstream"  # the workers' threads are named WORKER_NAME-<n>


class DaemonPool:
    """The process's upstream workers; lanes are opened per target and may outlive a configuration's reload."""

    def __init__(self, name: str = WORKER_NAME, most: int = UPSTREAM_WORKERS) -> None:
        self._name = name
        self._most = most
        self._cond = threading.Condition(threading.Lock())
        self._open: list[Lane] = []
        self._waiting: list[Lane] = []  # lanes with items not yet started
        self._size = 0
        self._workers = 0
        self._running = 0  # calls running, of open lanes and of closed ones alike
        self._idle = 0
        self._started = 0
        self._stopped = False

    @property
    def size(self) -> int:
        with self._cond:
            return self._size

    def lane(self, limit: int) -> Lane:
        """A lane of at most `limit` calls running at once (a target's `max_concurrency`)."""
        lane = Lane(self, limit)
        with self._cond:
            self._open.append(lane)
            self._resize()
        return lane

    def shutdown(self) -> None:
        """Let the workers end once the calls running are done; items not started never run."""
        with self._cond:
            self._stopped = True
            for lane in self._waiting:
                lane.queue.clear()
            self._waiting.clear()
            self._cond.notify_all()

    def _resize(self) -> None:
        shared = max((lane.limit for lane in self._open), default=0) + max(0, len(self._open) - 1)
        self._size = min(sum(lane.limit for lane in self._open), max(self._most, shared))
        self._cond.notify_all()  # workers past the size end; the reservations changed

    def _close(self, lane: Lane) -> None:
        with self._cond:
            if lane in self._open:
                self._open.remove(lane)
                self._resize()

    def _submit(self, lane: Lane, batch: Batch[Any, Any]) -> None:
        with self._cond:
            if self._stopped:
                batch.remaining = 0
                batch.done.set()
                return
            lane.queue.append(batch)
            if lane not in self._waiting:
                self._waiting.append(lane)
            wanted = min(len(batch.items), lane.limit)
            self._cond.notify(min(wanted, self._idle))
            for _ in range(min(wanted - self._idle, self._size - self._workers)):
                self._workers += 1
                self._started += 1
                threading.Thread(target=self._work, name=f"{self._name}-{self._started}", daemon=True).start()

    def _cut(self, lane: Lane, batch: Batch[Any, Any]) -> list[object]:
        """The batch's results now: later ones are dropped, and items not started never start."""
        with self._cond:
            batch.cut = True
            if batch in lane.queue:
                lane.queue.remove(batch)
                if not lane.queue:
                    self._waiting.remove(lane)
            return list(batch.results)

    def _pick(self) -> Lane | None:
        """The waiting lane with the fewest calls running that may start one more; call with the lock held."""
        free = self._size - self._running
        owed = sum(1 for lane in self._open if lane.running == 0)
        best: Lane | None = None
        for lane in self._waiting:
            if lane.running >= lane.limit:
                continue
            if lane.running > 0 and free - 1 < owed:
                continue
            if best is None or lane.running < best.running:
                best = lane
        return best

    def _work(self) -> None:
        lane: Lane | None = None
        index = 0
        batch: Batch[Any, Any] | None = None
        outcome: object = None
        while True:
            with self._cond:
                if lane is not None and batch is not None:
                    lane.running -= 1
                    self._running -= 1
                    batch.settle(index, outcome)
                    lane = batch = None
                while (lane := self._pick()) is None:
                    if self._stopped or self._workers > self._size:
                        self._workers -= 1
                        return
                    self._idle += 1
                    self._cond.wait()
                    self._idle -= 1
                batch = lane.queue[0]
                index = batch.started
                batch.started += 1
                if batch.started == len(batch.items):
                    lane.queue.popleft()
                    if not lane.queue:
                        self._waiting.remove(lane)
                lane.running += 1
                self._running += 1
                if self._idle and self._waiting:
                    self._cond.notify()  # another lane (or more of this one) may start too
            try:
                outcome = batch.call(batch.items[index])
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller
                outcome = exc


class Lane:
    """One target's share of the pool: at most `limit` of its calls run at once."""

    def __init__(self, pool: DaemonPool, limit: int) -> None:
        self.limit = limit
        self.running = 0
        self.queue: deque[Batch[Any, Any]] = deque()
        self._pool = pool

    def run(self, items: Sequence[T], call: Callable[[T], R], timeout: float) -> list[R | BaseException]:
        """`call` on every item, concurrently; results in order, an exception in place of a failure, and a
        TimeoutError in place of a call that had not ended within `timeout` (those not started never start)."""
        batch = self.start(items, call)
        return batch.wait(timeout)

    def start(self, items: Sequence[T], call: Callable[[T], R]) -> Batch[T, R]:
        batch: Batch[T, R] = Batch(self._pool, self, items, call)
        if items:
            self._pool._submit(self, batch)
        return batch

    def close(self) -> None:
        """The target is gone: its share leaves the pool's size; calls of its still running end as they do."""
        self._pool._close(self)


class Batch(Generic[T, R]):
    """Items of one `Lane.run`: a counter of those started and a slot per result, settled under the pool's lock."""

    def __init__(self, pool: DaemonPool, lane: Lane, items: Sequence[T], call: Callable[[T], R]) -> None:
        self.items = items
        self.call = call
        self.started = 0
        self.remaining = len(items)
        self.results: list[object] = [_PENDING] * len(items)
        self.done = threading.Event()
        self.cut = False
        self._pool = pool
        self._lane = lane
        if not items:
            self.done.set()

    def settle(self, index: int, outcome: object) -> None:
        if not self.cut:
            self.results[index] = outcome
            self.remaining -= 1
            if self.remaining == 0:
                self.done.set()

    def wait(self, timeout: float) -> list[R | BaseException]:
        self.done.wait(timeout)
        results = self._pool._cut(self._lane, self)
        late = TimeoutError("no answer within the scrape budget")
        return [late if result is _PENDING else result for result in results]  # type: ignore[misc]
