"""The InfluxDB sink: drains the spool into an InfluxDB v2 write API, losing nothing.

influxdb-client's batching writer drops a batch once its retries run out, so the sink
uses the client in SYNCHRONOUS mode and keeps its own durable queue (the spool): the
oldest spool rows are written as one request and deleted only after a 2xx. Until then:

- server down, 5xx, timeout: the rows stay; retry with jittered exponential backoff
  (``retry_min_s`` .. ``retry_max_s``); one log line when the outage starts, one when
  it ends ("influx sink back after N s, M lines pending");
- 429 (and 503 with Retry-After): wait as long as the server asks;
- any other 4xx (bad token, unknown bucket or org): logged as an error naming the likely
  fix, the rows stay and the sink retries slowly, so fixing the config loses nothing;
- a 400 or 422 that names a bad point (unparsable, out of the bucket's retention, a
  field type conflict): one point must never block the spool, so the batch is written
  again in halves, down to single lines; the lines the server still refuses alone are
  dropped, counted (``rejected_lines``) and logged once a minute. If it refuses every
  line of the batch the fault is not in the points: the rows stay, as for any 4xx.

Delivery is at least once: if the process dies between a 2xx and the delete, that batch
is sent again at the next start (InfluxDB overwrites identical points).

All SQLite and HTTP work runs on one worker thread of the sink (its connection is used
there only); the event loop only awaits it. influxdb-client is imported on first use,
so a maestro without the sink never loads it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import sqlite3
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

from arete.backoff import Backoff
from maestro.errors import ConfigError, StoreError
from maestro.influx.failures import (
    PointsRefusedError,
    WriteFailure,
    classify_failure,
    is_point_fault,
    retry_delay,
)
from maestro.influx.settings import InfluxSettings
from maestro.influx.spool import (
    COMPONENT,
    MIGRATIONS,
    SpoolBatch,
    SpoolTotals,
    delete_batch,
    oldest_batch,
    read_totals,
)
from maestro.store.db import connect, migrate

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric

log = logging.getLogger(__name__)
T = TypeVar("T")

REMIND_EVERY_S: Final = 600.0  # a long outage is logged again this often, not at every retry
STORE_RETRY_S: Final = 1.0
REJECT_LOG_EVERY_S: Final = 60.0


@dataclass(frozen=True, slots=True)
class SinkStats:
    """Counters of the sink since it started, and what the spool holds."""

    lines_written: int = 0
    write_errors: int = 0
    spool_rows: int = 0
    spool_lines: int = 0
    dropped_lines: int = 0  # dropped (oldest first) from the full spool, all time
    rejected_lines: int = 0  # refused alone by the server (a bad point) and dropped
    last_error: str | None = None
    up: bool = True  # False from a failed write until the next 2xx


@dataclass(frozen=True, slots=True)
class FlushResult:
    """What one :meth:`InfluxSink.flush_once` did and how long to wait before the next."""

    lines_written: int
    pending_lines: int
    wait_s: float
    failure: WriteFailure | None = None


class InfluxSink:
    """Run :meth:`run` as a long-lived task (cancel it to stop)."""

    def __init__(
        self,
        settings: InfluxSettings,
        db_path: Path,
        metrics: CollectorRegistry | None = None,
        *,
        rand: Callable[[], float] = random.random,
    ) -> None:
        if settings.url is None:
            raise ConfigError("the influx sink needs influx.url")
        self.settings = settings
        self.url: str = settings.url
        self.db_path = db_path
        self.stats = SinkStats()
        self._backoff = Backoff(settings.retry_min_s, settings.retry_max_s, rand=rand)
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="influx-sink")
        self._conn: sqlite3.Connection | None = None  # used on the worker thread only
        self._write_api: Any = None  # influxdb-client objects, made on first write
        self._client: Any = None
        self._written: SpoolBatch | None = None  # written (2xx) but not yet deleted
        self._down_since: float | None = None
        self._last_told: tuple[str, int | None, float] | None = None
        self._store_failing = False
        self._rejected_logged = -REJECT_LOG_EVERY_S
        self._rejected_since_log = 0
        self._closed = False
        if metrics is not None:
            _register_collector(metrics, self)

    # -- the loop ----------------------------------------------------------------------
    async def run(self) -> None:
        log.info(
            "influx sink started",
            extra={"kv": {"url": self.url, "bucket": self.settings.bucket}},
        )
        try:
            while True:
                result = await self.flush_once()
                if result.wait_s > 0:
                    await asyncio.sleep(result.wait_s)
        finally:
            self._close_soon()

    async def flush_once(self) -> FlushResult:
        """Write the oldest spooled batch, if any; never raises for server or store trouble."""
        flush_s = self.settings.flush_s
        try:
            if self._written is not None:
                await self._in_worker(self._forget_written)
            batch, totals = await self._in_worker(self._read_oldest)
        except (sqlite3.Error, StoreError) as exc:
            self._store_trouble(exc)
            return FlushResult(0, self.stats.spool_lines, STORE_RETRY_S)
        self._store_back()
        self._take_totals(totals)
        if batch is None:
            return FlushResult(0, 0, flush_s)
        rejected = 0
        try:
            try:
                await self._in_worker(self._write, batch)
            except Exception as exc:
                if not is_point_fault(classify_failure(exc)):
                    raise
                rejected = await self._in_worker(self._write_isolating, batch)
        except Exception as exc:  # noqa: BLE001 - every failure keeps the rows and retries
            failure = exc.failure if isinstance(exc, PointsRefusedError) else classify_failure(exc)
            wait_s = retry_delay(failure, self._backoff, self.settings.retry_max_s)
            self._failed(failure, totals, wait_s)
            return FlushResult(0, totals.lines, wait_s, failure)
        self._recovered(totals)
        self._backoff.reset()
        self.stats = replace(
            self.stats,
            lines_written=self.stats.lines_written + batch.lines - rejected,
            rejected_lines=self.stats.rejected_lines + rejected,
        )
        try:
            await self._in_worker(self._forget_written)
        except (sqlite3.Error, StoreError) as exc:  # deleted at the next flush, not re-sent
            self._store_trouble(exc)
        pending = max(0, totals.lines - batch.lines)
        self.stats = replace(
            self.stats, spool_lines=pending, spool_rows=max(0, totals.rows - batch.rows)
        )
        # A full batch means more may be waiting: go on at once; otherwise let lines gather.
        full = batch.lines >= self.settings.batch_lines
        return FlushResult(batch.lines, pending, 0.0 if full and pending else flush_s)

    async def close(self) -> None:
        """Release the connection and the HTTP client (``run`` does it when cancelled)."""
        if not self._closed:
            self._closed = True
            await self._in_worker(self._close_in_worker)
            self._worker.shutdown(wait=False)

    # -- worker thread -----------------------------------------------------------------
    async def _in_worker(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._worker, fn, *args)

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = connect(self.db_path)
            try:
                migrate(conn, COMPONENT, MIGRATIONS)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _read_oldest(self) -> tuple[SpoolBatch | None, SpoolTotals]:
        conn = self._db()
        conn.execute("BEGIN")  # one snapshot for the batch and the totals
        try:
            return oldest_batch(conn, self.settings.batch_lines), read_totals(conn)
        finally:
            conn.execute("COMMIT")

    def _forget_written(self) -> None:
        batch = self._written
        if batch is None:
            return
        conn = self._db()
        conn.execute("BEGIN IMMEDIATE")
        try:
            delete_batch(conn, batch.first_id, batch.last_id)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        self._written = None

    def _write(self, batch: SpoolBatch) -> None:
        self._post(batch.body)
        # Marked here, not on the event loop: a task cancelled during the write still
        # gets the batch deleted by _close_in_worker, which runs after this on the thread.
        self._written = batch

    def _write_isolating(self, batch: SpoolBatch) -> int:
        """Write ``batch`` in halves down to single lines; return how many were refused.

        Raises what is not a point fault (the batch stays), and :class:`PointsRefusedError`
        when every line is refused alone.
        """
        lines = batch.body.split("\n")
        refused: list[tuple[str, WriteFailure]] = []
        middle = len(lines) // 2
        for half in (lines[:middle], lines[middle:]):
            self._bisect(half, refused)
        if len(refused) == len(lines):
            raise PointsRefusedError(refused[-1][1])
        self._written = batch
        self._log_rejected(refused)
        return len(refused)

    def _bisect(self, lines: list[str], refused: list[tuple[str, WriteFailure]]) -> None:
        if not lines:
            return
        try:
            self._post("\n".join(lines))
        except Exception as exc:
            failure = classify_failure(exc)
            if not is_point_fault(failure):
                raise
            if len(lines) == 1:
                refused.append((lines[0], failure))
                return
            middle = len(lines) // 2
            self._bisect(lines[:middle], refused)
            self._bisect(lines[middle:], refused)

    def _log_rejected(self, refused: list[tuple[str, WriteFailure]]) -> None:
        self._rejected_since_log += len(refused)
        now = time.monotonic()
        if refused and now - self._rejected_logged >= REJECT_LOG_EVERY_S:
            line, failure = refused[0]
            log.error(
                "influx server refused points; dropped them, the rest of the batch is written",
                extra={
                    "kv": {
                        "rejected_lines": self._rejected_since_log,
                        "error": failure.text,
                        "line": line[:200],
                    }
                },
            )
            self._rejected_logged = now
            self._rejected_since_log = 0

    def _post(self, body: str) -> None:
        from influxdb_client.domain.write_precision import WritePrecision

        if self._write_api is None:
            from influxdb_client.client.influxdb_client import InfluxDBClient
            from influxdb_client.client.write_api import SYNCHRONOUS

            self._client = InfluxDBClient(
                url=self.url,
                token=self.settings.token_value() or "",  # "": no Authorization header
                org=self.settings.org,
                timeout=round(self.settings.timeout_s * 1000),
            )
            self._write_api = self._client.write_api(write_options=SYNCHRONOUS)
        self._write_api.write(
            bucket=self.settings.bucket,
            org=self.settings.org,
            record=body,
            write_precision=WritePrecision.MS,
        )

    def _close_in_worker(self) -> None:
        with contextlib.suppress(sqlite3.Error, StoreError):  # else sent again next start
            self._forget_written()
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
            self._client = self._write_api = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _close_soon(self) -> None:
        # Cancelled: do not wait for a write in flight; the worker closes after it.
        if not self._closed:
            self._closed = True
            self._worker.submit(self._close_in_worker)
            self._worker.shutdown(wait=False)

    # -- bookkeeping and logs ------------------------------------------------------------
    def _take_totals(self, totals: SpoolTotals) -> None:
        if totals.dropped_lines > self.stats.dropped_lines:
            log.warning(
                "influx spool was full: oldest lines dropped",
                extra={
                    "kv": {
                        "dropped_lines": totals.dropped_lines - self.stats.dropped_lines,
                        "dropped_total": totals.dropped_lines,
                    }
                },
            )
        self.stats = replace(
            self.stats,
            spool_rows=totals.rows,
            spool_lines=totals.lines,
            dropped_lines=totals.dropped_lines,
        )

    def _failed(self, failure: WriteFailure, totals: SpoolTotals, wait_s: float) -> None:
        now = time.monotonic()
        if self._down_since is None:
            self._down_since = now
        self.stats = replace(
            self.stats, write_errors=self.stats.write_errors + 1, last_error=failure.text, up=False
        )
        told = self._last_told
        if (
            told is None
            or told[:2] != (failure.kind, failure.status)
            or now - told[2] > REMIND_EVERY_S
        ):
            self._last_told = (failure.kind, failure.status, now)
            kv = {
                "url": self.url,
                "error": failure.text,
                "pending_lines": totals.lines,
                "retry_in_s": round(wait_s, 2),
            }
            if failure.kind == "rejected":
                log.error(
                    "influx server refused the write; check the token, org and bucket "
                    "(the lines stay in the spool and are retried)",
                    extra={"kv": {**kv, "status": failure.status}},
                )
            else:
                log.warning(
                    "influx sink cannot write; keeping lines in the spool", extra={"kv": kv}
                )

    def _recovered(self, totals: SpoolTotals) -> None:
        if self._down_since is not None:
            log.info(
                f"influx sink back after {time.monotonic() - self._down_since:.1f} s, "
                f"{totals.lines} lines pending",
                extra={"kv": {"url": self.url, "pending_lines": totals.lines}},
            )
        self._down_since = None
        self._last_told = None
        self.stats = replace(self.stats, up=True)

    def _store_trouble(self, exc: Exception) -> None:
        if not self._store_failing:
            log.warning(
                "influx sink cannot use the store; retrying",
                extra={"kv": {"error": str(exc), "db": str(self.db_path)}},
            )
        self._store_failing = True

    def _store_back(self) -> None:
        if self._store_failing:
            log.info("influx sink can use the store again", extra={"kv": {}})
        self._store_failing = False


_EXPOSED: Final = (
    ("lines_written", "counter", "Lines the InfluxDB server took (2xx)."),
    ("write_errors", "counter", "Failed write attempts to the InfluxDB server."),
    ("dropped_lines", "counter", "Lines dropped, oldest first, from the full spool."),
    ("rejected_lines", "counter", "Lines the server refused alone (bad points), dropped."),
    ("spool_lines", "gauge", "Lines waiting in the spool."),
    ("spool_rows", "gauge", "Spool rows (batches) waiting."),
    ("up", "gauge", "1 while the last write to the InfluxDB server succeeded."),
)


def _register_collector(registry: CollectorRegistry, sink: InfluxSink) -> None:
    """Expose :attr:`InfluxSink.stats` as ``arete_influx_*`` metrics in ``registry``."""
    from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily

    class SinkCollector:
        def collect(self) -> Iterator[Metric]:
            stats = sink.stats
            for name, kind, text in _EXPOSED:
                family = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
                yield family(f"arete_influx_{name}", text, float(getattr(stats, name)))

    registry.register(SinkCollector())
