"""The store's one writer thread: sample batches, write jobs and retention, in turn.

SQLite takes one writer at a time, so one thread owns the one write connection. It
loops over three kinds of work:

- sample submissions (from the MQTT network thread, via :meth:`SampleWriter.submit`),
  gathered into a batch until ``batch_max_rows`` or ``batch_max_delay_s``, then stored
  in ONE transaction, after which each submission's ``on_stored`` runs (the ingest
  acknowledges its MQTT messages there, so nothing acknowledged can be lost);
- jobs (``fn(conn)`` in a transaction, from ``Store.write``: registry, commands, alerts,
  audit), run as they come;
- retention, one chunk at a time between batches, every ``retention_every_s``.

A batch that cannot be written (disk full, I/O error, a damaged file: any error but
the row errors below) is rolled back, kept and retried with backoff; its ``on_stored``
callbacks wait. Nothing is dropped, the thread never dies on a database error.

A batch that fails with a *row error* (:data:`~maestro.store.isolate.ROW_ERRORS`: a
number SQLite cannot bind, a type it does not take, a NULL where a value belongs, a
stager refusing a value) holds a row the database refuses: one message must never stop
storage for the whole fleet, so the batch is written again one submission, then one
row, at a time, each in a savepoint (:mod:`maestro.store.isolate`). Every good row is
stored; each bad one is rolled back, counted (``rows_rejected``), logged (once a minute
per agent) and dropped, and its message is still acknowledged so the broker does not
deliver it again for ever.

Each row is stored with its receive time (``rx_ts``): the writer's clock at submit.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

from maestro.errors import StoreError
from maestro.store.db import connect, migrate
from maestro.store.isolate import ROW_ERRORS, RejectLog, store_isolated
from maestro.store.rollup import retention_steps
from maestro.store.rows import SampleRow
from maestro.store.samples import AgentIds, Stager, bind_agent_ids, check_rows, store_batch
from maestro.store.settings import StoreSettings

log = logging.getLogger(__name__)

T = TypeVar("T")
BACKOFF_FIRST_S: Final = 0.1
BACKOFF_MAX_S: Final = 5.0
WRITER_CACHE_KIB: Final = 32 * 1024  # the index pages of many agents stay in memory
IDLE_WAKE_S: Final = 1.0  # the loop looks at its clocks at least this often
FIRST_RETENTION_MAX_S: Final = 60.0  # a maestro restarted often still prunes


@dataclass(slots=True)
class _Submission:
    rows: Sequence[SampleRow]
    on_stored: Callable[[], None] | None
    at: float  # time.monotonic() of submit
    rx: float  # the writer's clock (unix seconds) at submit: the rows' receive time


@dataclass(slots=True)
class _Job:
    fn: Callable[[sqlite3.Connection], Any]
    future: Future[Any]


class SampleWriter:
    """Owns the writer thread and its connection; :meth:`start` it, :meth:`stop` it.

    Counters (read from any thread, for Prometheus): ``rows_submitted``,
    ``rows_stored`` (new rows), ``rows_duplicate``, ``rows_rejected`` (refused by the
    database and dropped), ``batches``, ``write_errors``, ``pending_rows``, ``lag_s``,
    ``last_batch_s``, ``retention_deleted``.
    """

    def __init__(
        self,
        path: Path,
        migrations: Sequence[tuple[str, Sequence[str]]],
        settings: StoreSettings | None = None,
        stagers: Sequence[Stager] = (),
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.settings = settings or StoreSettings()
        self._migrations = list(migrations)
        self._stagers: tuple[Stager, ...] = tuple(stagers)
        self._clock = clock
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._ready = threading.Event()
        # Wraps the on_stored callbacks of each batch (the maestro gathers their broker
        # acks into one write: maestro.pubacks); set before the first submit.
        self.around_callbacks: Callable[[], contextlib.AbstractContextManager[object]] = (
            contextlib.nullcontext
        )
        self._pending: deque[_Submission] = deque()
        self._jobs: deque[_Job] = deque()
        self._stopping = False
        self._stop_deadline = 0.0
        self._startup_error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="store-writer", daemon=True)
        # counters
        self.rows_submitted = 0
        self.rows_stored = 0
        self.rows_duplicate = 0
        self.rows_rejected = 0
        self.batches = 0
        self.write_errors = 0
        self.failing: str | None = None  # the last batch error while batches are refused
        self.last_batch_s = 0.0
        self.retention_deleted = 0
        self._pending_rows = 0

    # -- life cycle ----------------------------------------------------------------------
    def start(self) -> None:
        """Open the connection and migrate on the writer thread; raise StoreError if not."""
        self._thread.start()
        self._ready.wait()
        if self._startup_error is not None:
            self._thread.join()
            error = self._startup_error
            if isinstance(error, StoreError):
                raise error
            raise StoreError(f"cannot open the store {self.path}: {error}") from error

    def stop(self, timeout: float = 10.0) -> None:
        """Store what was submitted and run queued jobs, then end the thread.

        Waits at most ``timeout`` seconds; samples still unstored then (the disk is
        full) are given up: their ``on_stored`` never runs, so MQTT redelivers them.
        """
        with self._lock:
            if not self._stopping:
                self._stopping = True
                self._stop_deadline = time.monotonic() + timeout
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout + 1.0)

    @property
    def running(self) -> bool:
        return self._thread.is_alive() and not self._stopping

    def add_stager(self, stager: Stager) -> None:
        """Stage the new rows of every later batch with ``stager`` too."""
        with self._lock:
            self._stagers = (*self._stagers, stager)

    # -- producers (any thread) ----------------------------------------------------------
    def submit(
        self, rows: Sequence[SampleRow], on_stored: Callable[[], None] | None = None
    ) -> None:
        """Queue ``rows`` for storing; never blocks on the database.

        ``on_stored`` runs on the writer thread once every row is committed (or was
        already stored), and never if they could not be. Raises ValueError for a
        malformed row and StoreError once the writer is stopping.
        """
        check_rows(rows)
        submission = _Submission(rows, on_stored, time.monotonic(), self._clock())
        with self._lock:
            if self._stopping:
                raise StoreError("the store is closing; samples are no longer taken")
            first = not self._pending
            self._pending.append(submission)
            self._pending_rows += len(rows)
            self.rows_submitted += len(rows)
            full = self._pending_rows >= self.settings.batch_max_rows
        if (first or full) and not self._wake.is_set():
            self._wake.set()

    def submit_job(self, fn: Callable[[sqlite3.Connection], T]) -> Future[T]:
        """Run ``fn(conn)`` on the writer thread in one transaction (rolled back if it raises).

        A ``sqlite3.Error`` comes back as :class:`StoreError`; other exceptions as raised.
        """
        future: Future[T] = Future()
        with self._lock:
            if self._stopping or not self._thread.is_alive():
                raise StoreError("the store is closed")
            self._jobs.append(_Job(fn, future))
        self._wake.set()
        return future

    # -- counters ------------------------------------------------------------------------
    @property
    def pending_rows(self) -> int:
        return self._pending_rows

    @property
    def lag_s(self) -> float:
        """Age of the oldest submission not stored yet, 0 when all are."""
        with self._lock:
            oldest = self._pending[0].at if self._pending else None
        return 0.0 if oldest is None else max(0.0, time.monotonic() - oldest)

    # -- the thread ----------------------------------------------------------------------
    def _run(self) -> None:
        try:
            conn = connect(self.path)
        except BaseException as exc:  # noqa: BLE001 - handed to start()'s caller
            self._startup_error = exc
            self._ready.set()
            return
        try:
            conn.execute(f"PRAGMA cache_size = -{WRITER_CACHE_KIB}")
            for component, scripts in self._migrations:
                migrate(conn, component, scripts)
        except BaseException as exc:  # noqa: BLE001 - handed to start()'s caller
            conn.close()
            self._startup_error = exc
            self._ready.set()
            return
        agent_ids = bind_agent_ids(conn)
        self._ready.set()
        try:
            _Loop(self, conn, agent_ids).run()
        finally:
            conn.close()


class _Loop:
    """The writer thread's state: its connection, cache, backoff and retention pass."""

    def __init__(self, writer: SampleWriter, conn: sqlite3.Connection, ids: AgentIds) -> None:
        self.w = writer
        self.conn = conn
        self.ids = ids
        self.failures = 0
        self.retry_at = 0.0
        self.rejects = RejectLog()
        self.retention: Iterator[int] | None = None
        self.next_retention = time.monotonic() + min(
            writer.settings.retention_every_s, FIRST_RETENTION_MAX_S
        )

    def run(self) -> None:
        w = self.w
        settings = w.settings
        while True:
            w._wake.clear()
            while True:
                with w._lock:
                    job = w._jobs.popleft() if w._jobs else None
                if job is None:
                    break
                self.run_job(job)
            now = time.monotonic()
            with w._lock:
                stopping = w._stopping
                oldest = w._pending[0].at if w._pending else None
                full = w._pending_rows >= settings.batch_max_rows
            if stopping and now >= w._stop_deadline:
                self.give_up()
                return
            timeout = min(IDLE_WAKE_S, w._stop_deadline - now) if stopping else IDLE_WAKE_S
            if oldest is not None:
                due = oldest if (full or stopping) else oldest + settings.batch_max_delay_s
                due = max(due, self.retry_at)
                if now >= due:
                    self.write_batch()
                    continue
                timeout = min(timeout, due - now)
            elif stopping:
                self.retention = None
                return
            if self.retention is None and now >= self.next_retention:
                self.next_retention = now + settings.retention_every_s
                self.retention = retention_steps(self.conn, w._clock(), settings)
            if self.retention is not None:
                self.retention_step()
                continue
            timeout = min(timeout, self.next_retention - now)
            w._wake.wait(max(timeout, 0.0))

    # -- samples -------------------------------------------------------------------------
    def write_batch(self) -> None:
        w = self.w
        with w._lock:
            taken: list[_Submission] = []
            count = 0
            for submission in w._pending:
                if taken and count + len(submission.rows) > w.settings.batch_max_rows:
                    break
                taken.append(submission)
                count += len(submission.rows)
            stagers = w._stagers
        rows = [row for submission in taken for row in submission.rows]
        rx_ts = [submission.rx for submission in taken for _ in submission.rows]
        started = time.perf_counter()
        rejected = 0
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                inserted = store_batch(self.conn, self.ids, rows, stagers, rx_ts)
            except ROW_ERRORS:  # a row the database refuses: isolate it
                self.rollback()
                self.conn.execute("BEGIN IMMEDIATE")
                parts = [(sub.rows, sub.rx) for sub in taken]
                inserted, rejected = store_isolated(
                    self.conn, self.ids, parts, stagers, self.rejects
                )
            self.conn.execute("COMMIT")
        except Exception as exc:  # noqa: BLE001 - disk full, I/O: keep the batch, retry
            self.rollback()
            self.failed(exc, len(rows))
            return
        self.ids.commit()
        w.rows_rejected += rejected
        w.last_batch_s = time.perf_counter() - started
        if self.failures:
            log.warning("store writes recovered after failures=%d", self.failures)
            self.failures = 0
            self.retry_at = 0.0
            w.failing = None
        with w._lock:
            for _ in taken:
                w._pending.popleft()
            w._pending_rows -= len(rows)
        w.rows_stored += inserted
        w.rows_duplicate += len(rows) - inserted - rejected
        w.batches += 1
        try:
            with w.around_callbacks():
                for submission in taken:
                    if submission.on_stored is not None:
                        try:
                            submission.on_stored()
                        except Exception:  # a broken callback must not stop the writer
                            log.exception("store on_stored callback failed")
        except Exception:  # the same for the hook around them
            log.exception("store on_stored hook failed")

    def failed(self, exc: Exception, rows: int) -> None:
        self.w.write_errors += 1
        self.w.failing = str(exc)  # for the maestro's disk watch (maestro.diskstate)
        if self.failures == 0:
            # Once per failure streak: a full disk would otherwise log 10 lines a second.
            log.error(
                "store write failed rows=%d error=%s; retrying with backoff, nothing is"
                " acknowledged until it succeeds",
                rows,
                exc,
            )
        delay = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2**self.failures)
        self.failures += 1
        self.retry_at = time.monotonic() + delay

    def give_up(self) -> None:
        w = self.w
        with w._lock:
            unstored = w._pending_rows
        if unstored:
            log.error(
                "store closed with rows=%d unstored (not acknowledged: the broker resends)",
                unstored,
            )

    # -- jobs and retention --------------------------------------------------------------
    def run_job(self, job: _Job) -> None:
        if not job.future.set_running_or_notify_cancel():
            return
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            result = job.fn(self.conn)
            self.conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self.rollback()
            job.future.set_exception(StoreError(f"store write failed: {exc}"))
            return
        except Exception as exc:  # noqa: BLE001 - the caller's own error, handed back
            self.rollback()
            job.future.set_exception(exc)
            return
        self.ids.commit()
        job.future.set_result(result)

    def retention_step(self) -> None:
        assert self.retention is not None  # noqa: S101 - run() checks before calling
        try:
            self.w.retention_deleted += next(self.retention)
        except StopIteration:
            self.retention = None
        except Exception as exc:  # noqa: BLE001 - try again at the next period
            log.error(
                "store retention failed error=%s; next try in every_s=%s",
                exc,
                self.w.settings.retention_every_s,
            )
            self.retention = None

    def rollback(self) -> None:
        if self.conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self.conn.execute("ROLLBACK")
        self.ids.rollback()
