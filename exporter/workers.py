"""A bounded pool of daemon threads for upstream calls.

Like ThreadPoolExecutor, but its threads are daemons: a call stuck on a hung upstream never holds the
process past SIGTERM (ThreadPoolExecutor joins its workers at interpreter exit).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
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


MALLOC_ARENAS = 2
_M_ARENA_MAX = -8  # glibc's mallopt parameter number


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Cap glibc's malloc arenas, as MALLOC_ARENA_MAX does; call before threads start.

    glibc gives threads arenas of their own (up to eight per core); upstream bodies read in the pool threads
    then leave every arena partly used, and the resident size keeps creeping up scrape after scrape. Two
    arenas keep it flat at no measurable CPU cost. False where there is no glibc (nothing changes there).
    """
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False  # the operator's own setting, already applied by glibc
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(_M_ARENA_MAX, arenas))
    except (OSError, AttributeError):
        return False
