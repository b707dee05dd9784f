"""The store facade: one writer thread, a pool of readers, per-component migrations.

SQLite allows one writer at a time, so every write of the maestro goes through one
thread (:class:`~maestro.store.writer.SampleWriter`: samples in batches, and the small
writes of the registry, commands, alerts, notifications and audit as jobs between
batches). Reads run on a few reader threads, each with its own read-only connection
that it opens and closes itself (connections stay on their thread). Nothing here
blocks the event loop: coroutines await futures.

The store's own components (agents, samples, registry, audit) are always migrated,
first; other components (commands, alerts, notifications, the InfluxDB spool) pass
their scripts in ``migrations``.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path
from types import TracebackType
from typing import Any, Final, TypeVar

from maestro.errors import StoreError
from maestro.store.audit import AUDIT_MIGRATIONS
from maestro.store.db import connect
from maestro.store.detail import DETAIL_MIGRATIONS, DetailStager
from maestro.store.query import History, query_history
from maestro.store.registry import REGISTRY_MIGRATIONS
from maestro.store.replicas import attach_siblings
from maestro.store.rows import SampleRow
from maestro.store.samples import AGENTS_MIGRATIONS, SAMPLES_MIGRATIONS, Stager
from maestro.store.settings import StoreSettings
from maestro.store.writer import SampleWriter

T = TypeVar("T")
READERS: Final = 4

BUILTIN_MIGRATIONS: Final[Mapping[str, Sequence[str]]] = {
    "agents": AGENTS_MIGRATIONS,
    "samples": SAMPLES_MIGRATIONS,
    "registry": REGISTRY_MIGRATIONS,
    "audit": AUDIT_MIGRATIONS,
    "detail": DETAIL_MIGRATIONS,
}
"""Migrated first, in this order (the later ones refer to ``agents``)."""


class Store:
    """Open with :meth:`open`; close with :meth:`close` (stores what was submitted).

    Opening migrates the file and closing flushes the writer: both block, so from the
    event loop call ``await asyncio.to_thread(Store.open, ...)`` and :meth:`aclose`.
    """

    def __init__(
        self,
        path: Path,
        migrations: Mapping[str, Sequence[str]] | None = None,
        *,
        settings: StoreSettings | None = None,
        stagers: Sequence[Stager] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self.settings = settings or StoreSettings()
        self._clock = clock
        self._closed = False
        # Per-core, per-mount, per-sensor, per-GPU readings: stored with their samples.
        self.details = DetailStager() if self.settings.detail else None
        own = (self.details,) if self.details is not None else ()
        self.writer = SampleWriter(
            self.path,
            _all_migrations(migrations or {}),
            self.settings,
            (*own, *stagers),
            clock=clock,
        )
        self.writer.start()
        self._readers = _ReaderPool(self.path, READERS)

    @classmethod
    def open(
        cls,
        path: Path,
        migrations: Mapping[str, Sequence[str]] | None = None,
        *,
        settings: StoreSettings | None = None,
        stagers: Sequence[Stager] = (),
        clock: Callable[[], float] = time.time,
    ) -> Store:
        return cls(path, migrations, settings=settings, stagers=stagers, clock=clock)

    def add_stager(self, stager: Stager) -> None:
        """Stage new samples with ``stager`` too, from the next batch on."""
        self.writer.add_stager(stager)

    # -- samples ---------------------------------------------------------------------
    def submit_samples(
        self, rows: Sequence[SampleRow], on_stored: Callable[[], None] | None = None
    ) -> None:
        """Queue sample rows (any thread, never blocks); see :meth:`SampleWriter.submit`."""
        self.writer.submit(rows, on_stored)

    async def history(
        self,
        agent: str,
        fields: Sequence[str],
        start: float,
        end: float,
        step: float,
    ) -> History:
        """Downsampled history of ``agent`` (raises QueryError for a bad request).

        Reads the sibling replicas' store files too (:mod:`maestro.store.replicas`).
        """
        now = self._clock()
        raw_retention_s = self.settings.raw_retention_s
        own = self.path

        def query(conn: sqlite3.Connection) -> History:
            return query_history(
                conn,
                agent,
                fields,
                start=start,
                end=end,
                step=step,
                now=now,
                raw_retention_s=raw_retention_s,
                schemas=attach_siblings(conn, own),
            )

        return await self.read(query)

    # -- writes ----------------------------------------------------------------------
    def submit_write(self, fn: Callable[[sqlite3.Connection], T]) -> Future[T]:
        """Run ``fn(conn)`` on the writer thread inside one transaction."""
        return self.writer.submit_job(fn)

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.wrap_future(self.submit_write(fn))

    # -- reads -----------------------------------------------------------------------
    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` on a reader thread with its own read-only connection."""
        return await asyncio.wrap_future(self._readers.submit(fn))

    def read_now(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Blocking read, for threads and CLI commands (never from the event loop)."""
        return self._readers.submit(fn).result()

    # -- closing ---------------------------------------------------------------------
    def close(self, timeout: float = 10.0) -> None:
        """Finish reads, store submitted samples and queued jobs, close every connection.

        Safe to call twice. Readers go first, so the writer's connection is the last one
        and SQLite folds the WAL back into the main file.
        """
        if self._closed:
            return
        self._closed = True
        self._readers.close()
        self.writer.stop(timeout)

    async def aclose(self, flush_timeout_s: float = 10.0) -> None:
        await asyncio.to_thread(self.close, flush_timeout_s)

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _all_migrations(extra: Mapping[str, Sequence[str]]) -> list[tuple[str, Sequence[str]]]:
    ordered: list[tuple[str, Sequence[str]]] = list(BUILTIN_MIGRATIONS.items())
    for component, scripts in extra.items():
        builtin = BUILTIN_MIGRATIONS.get(component)
        if builtin is None:
            ordered.append((component, scripts))
        elif list(builtin) != list(scripts):
            raise StoreError(f"component {component!r} belongs to the store itself")
    return ordered


class _ReaderPool:
    """A few threads, each with its own read-only connection, taking read jobs in turn.

    Each thread opens its connection at its first job and closes it when told to stop,
    so ``check_same_thread`` holds and :meth:`close` leaves no file open.
    """

    def __init__(self, path: Path, size: int) -> None:
        self._path = path
        self._jobs: queue.SimpleQueue[
            tuple[Callable[[sqlite3.Connection], Any], Future[Any]] | None
        ]
        self._jobs = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._serve, name=f"store-reader-{index}", daemon=True)
            for index in range(size)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable[[sqlite3.Connection], T]) -> Future[T]:
        future: Future[T] = Future()
        with self._lock:
            if self._closed:
                raise StoreError("the store is closed")
            self._jobs.put((fn, future))
        return future

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for _ in self._threads:
                self._jobs.put(None)
        for thread in self._threads:
            thread.join()

    def _serve(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            while (job := self._jobs.get()) is not None:
                fn, future = job
                if not future.set_running_or_notify_cancel():
                    continue
                try:
                    if conn is None:
                        conn = connect(self._path, readonly=True)
                    result = fn(conn)
                except sqlite3.Error as exc:
                    future.set_exception(StoreError(f"store read failed: {exc}"))
                except BaseException as exc:  # noqa: BLE001 - handed to the caller
                    future.set_exception(exc)
                else:
                    future.set_result(result)
        finally:
            if conn is not None:
                conn.close()
