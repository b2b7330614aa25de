"""A bounded pool of daemon threads for upstream calls.

Like ThreadPoolExecutor, but its threads are daemons: a call stuck on a hung upstream never holds the
process past SIGTERM (ThreadPoolExecutor joins its workers at interpreter exit).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from queue import SimpleQueue
from typing import Any, TypeVar

T = TypeVar("T")


class DaemonPool:
    def __init__(self, size: int, name: str) -> None:
        self._queue: SimpleQueue[tuple[Future[Any], Callable[..., Any], tuple[Any, ...]] | None] = SimpleQueue()
        self._size = size
        for index in range(size):
            threading.Thread(target=self._work, name=f"{name}-{index}", daemon=True).start()

    def submit(self, call: Callable[..., T], *args: Any) -> Future[T]:
        future: Future[T] = Future()
        self._queue.put((future, call, args))
        return future

    def shutdown(self) -> None:
        """Let the workers end once the queued calls are done; pending futures are cancelled."""
        for _ in range(self._size):
            self._queue.put(None)

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            future, call, args = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(call(*args))
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller
                future.set_exception(exc)
