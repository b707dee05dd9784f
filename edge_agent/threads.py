"""Thread pools that can never hold up the agent: daemon threads, no join at shutdown.

A blocking call that never returns (an X server that accepts and never answers, a hung
NFS mount under a ``statvfs``) keeps its thread forever; Python cannot stop a thread.
The standard ``ThreadPoolExecutor`` would then fill up and be joined at exit, so one
stuck call could stop sampling for good and make SIGTERM hang until kill -9. Here each
job of the agent has its own pool (sampling has a thread of its own, no handler can take
it), threads are daemons, and ``shutdown`` never waits for them.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

_Job = tuple[Future[Any], Callable[..., Any], tuple[Any, ...], dict[str, Any]]


class DaemonPool(ThreadPoolExecutor):
    """Up to ``max_workers`` daemon threads, started on demand and kept while idle.

    A ``ThreadPoolExecutor`` by type only (asyncio's ``set_default_executor`` insists):
    ``submit`` and ``shutdown`` are its own, so none of the base class's threads start.
    """

    def __init__(self, max_workers: int, name: str) -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        super().__init__(max_workers=1, thread_name_prefix=name)
        self.name = name
        self._limit = max_workers
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._started = 0
        self._idle = 0  # threads waiting for a job that no submit has claimed yet
        self._busy = 0
        self._closed = False

    @property
    def busy(self) -> int:
        """Jobs running now (a blocked call counts until it returns, maybe never)."""
        return self._busy

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        future: Future[T] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError(f"thread pool {self.name} is shut down")
            if self._idle:
                self._idle -= 1
            elif self._started < self._limit:
                self._started += 1
                threading.Thread(
                    target=self._work, name=f"{self.name}-{self._started}", daemon=True
                ).start()
            self._jobs.put((future, fn, args, kwargs))
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop idle threads; never waits, whatever ``wait`` says (see the module doc)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            threads = self._started
        if cancel_futures:
            while True:
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if job is not None:
                    job[0].cancel()
        for _ in range(threads):
            self._jobs.put(None)

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            future, fn, args, kwargs = job
            if future.set_running_or_notify_cancel():
                with self._lock:
                    self._busy += 1
                try:
                    result = fn(*args, **kwargs)
                except BaseException as exc:  # noqa: BLE001 - handed to whoever awaits it
                    future.set_exception(exc)
                else:
                    future.set_result(result)
                finally:
                    with self._lock:
                        self._busy -= 1
            with self._lock:
                if self._closed:
                    return
                self._idle += 1
