"""The InfluxDB sink against real servers: VictoriaMetrics (v2 write API) and a scripted one.

Rows are staged the way the store's writer does it (``InfluxSpool.stage`` inside a
transaction on a real SQLite file); the sink runs as a real task with influxdb-client.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import maestro.influx.spool as spool_module
from maestro.influx import COMPONENT, MIGRATIONS, InfluxSettings, InfluxSink, InfluxSpool
from maestro.influx.spool import SpoolTotals, read_totals
from maestro.store.db import connect, migrate
from maestro.store.rows import FIELDS, SampleRow
from tests.fixtures.victoria import Victoria

BASE_TS = time.time() - 3 * 3600  # inside VictoriaMetrics' 1 day retention, clear of "now"
FAST = {"flush_s": 0.05, "retry_min_s": 0.05, "retry_max_s": 0.3, "timeout_s": 3.0}


def fast(url: str, **overrides: object) -> InfluxSettings:
    """Settings with short waits, so outages and retries take a test a second or two."""
    return InfluxSettings.model_validate({"url": url, **FAST, **overrides})


def sample_rows(agent: str, first_seq: int, count: int) -> list[SampleRow]:
    """Rows with cpu and mem set (distinct per seq), every other field None."""
    values = dict.fromkeys(FIELDS)
    rows = []
    for seq in range(first_seq, first_seq + count):
        values["cpu"] = (seq % 1000) / 10
        values["mem"] = 20 + (seq % 500) / 4
        rows.append((agent, seq, BASE_TS + seq + 0.125, 1, *values.values()))
    return rows


def expected(rows: Sequence[SampleRow], field_name: str) -> list[tuple[int, float]]:
    index = 4 + FIELDS.index(field_name)
    return sorted((round(row[2] * 1000), row[index]) for row in rows)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "maestro.db"
    conn = connect(path)
    migrate(conn, COMPONENT, MIGRATIONS)
    conn.close()
    return path


def stage(db: Path, settings: InfluxSettings, rows: Sequence[SampleRow], chunk: int = 300) -> None:
    """Stage like the store's writer: one transaction per ingest batch."""
    spool = InfluxSpool(settings)
    conn = connect(db)
    try:
        for start in range(0, len(rows), chunk):
            conn.execute("BEGIN IMMEDIATE")
            spool.stage(conn, rows[start : start + chunk])
            conn.execute("COMMIT")
    finally:
        conn.close()


def totals(db: Path) -> SpoolTotals:
    conn = connect(db)
    try:
        return read_totals(conn)
    finally:
        conn.close()


async def until(predicate: Callable[[], bool], within_s: float, what: str) -> None:
    deadline = time.monotonic() + within_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {within_s}s waiting for {what}")
        await asyncio.sleep(0.05)


async def drained(db: Path, within_s: float = 20.0) -> None:
    deadline = time.monotonic() + within_s
    while (await asyncio.to_thread(totals, db)).lines:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the spool still holds {totals(db).lines} lines")
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def running(sink: InfluxSink) -> Any:
    task = asyncio.create_task(sink.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def test_every_staged_sample_reaches_victoria_metrics_exactly(victoria: Victoria, db: Path) -> None:
    settings = fast(victoria.url, batch_lines=500)
    rows = sample_rows("a1", 0, 1200) + sample_rows("web.2", 0, 1200)
    stage(db, settings, rows)
    assert totals(db).lines == 2400

    async def scenario() -> InfluxSink:
        sink = InfluxSink(settings, db)
        async with running(sink):
            await drained(db)
        return sink

    sink = asyncio.run(scenario())
    a1, web2 = rows[:1200], rows[1200:]
    assert victoria.export("arete_cpu", "a1") == expected(a1, "cpu")
    assert victoria.export("arete_mem", "a1") == expected(a1, "mem")
    assert victoria.export("arete_cpu", "web.2") == expected(web2, "cpu")
    assert victoria.export("arete_gpu_util", "a1") == [], "None fields are not written"
    assert sink.stats.lines_written == 2400
    assert sink.stats.write_errors == 0
    assert (sink.stats.spool_lines, totals(db).rows) == (0, 0)


def test_points_staged_while_victoria_metrics_is_down_all_arrive_once_it_is_back(
    victoria: Victoria, db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="maestro.influx")
    settings = fast(victoria.url)
    before, during = sample_rows("a1", 0, 100), sample_rows("a1", 100, 250)

    async def scenario() -> InfluxSink:
        sink = InfluxSink(settings, db)
        async with running(sink):
            await asyncio.to_thread(stage, db, settings, before)
            await drained(db)
            await asyncio.to_thread(victoria.stop)
            for start in range(0, len(during), 50):  # ingest goes on during the outage
                await asyncio.to_thread(stage, db, settings, during[start : start + 50])
                await asyncio.sleep(0.3)
            await until(lambda: sink.stats.write_errors >= 3, 10, "the sink to keep retrying")
            assert not sink.stats.up
            assert totals(db).lines == 250, "nothing leaves the spool while the server is down"
            await asyncio.to_thread(victoria.start)
            await drained(db)
        return sink

    sink = asyncio.run(scenario())
    assert victoria.export("arete_cpu", "a1") == expected(before + during, "cpu")
    assert sink.stats.up
    assert sink.stats.lines_written == 350
    assert caplog.text.count("influx sink cannot write") == 1, "one line per outage"
    assert "influx sink back after" in caplog.text
    assert "250 lines pending" in caplog.text


def test_a_new_sink_after_a_crash_sends_what_the_old_one_left_in_the_spool(
    victoria: Victoria, db: Path
) -> None:
    settings = fast(victoria.url)
    rows = sample_rows("a1", 0, 300)
    stage(db, settings, rows)
    victoria.stop()

    async def crashed_sink() -> int:
        sink = InfluxSink(settings, db)
        async with running(sink):  # cancelled mid-outage, as a killed maestro would stop
            await until(lambda: sink.stats.write_errors >= 2, 10, "failed writes")
        return sink.stats.lines_written

    assert asyncio.run(crashed_sink()) == 0
    assert totals(db).lines == 300
    victoria.start()

    async def next_sink() -> None:
        async with running(InfluxSink(settings, db)):
            await drained(db)

    asyncio.run(next_sink())
    assert victoria.export("arete_cpu", "a1") == expected(rows, "cpu")


def test_a_busy_store_delays_the_sink_but_loses_and_repeats_nothing(
    victoria: Victoria, db: Path
) -> None:
    settings = fast(victoria.url)
    rows = sample_rows("a1", 0, 200)

    async def scenario() -> None:
        async with running(InfluxSink(settings, db)):
            await asyncio.to_thread(stage, db, settings, rows[:100])
            await drained(db)
            blocker = connect(db)
            try:
                await asyncio.to_thread(stage, db, settings, rows[100:])
                blocker.execute("BEGIN IMMEDIATE")  # another writer holds the lock
                await asyncio.sleep(1.5)
                blocker.execute("COMMIT")
            finally:
                blocker.close()
            await drained(db)

    asyncio.run(scenario())
    assert victoria.export("arete_cpu", "a1") == expected(rows, "cpu")


# -- a scripted server for the answers VictoriaMetrics never gives -------------------------
@dataclass
class Request:
    at: float
    authorization: str | None
    body: bytes


@dataclass
class ScriptedInflux:
    """``answer(request_number, request) -> (status, headers, body)``; records requests."""

    answer: Callable[[int, Request], tuple[int, dict[str, str], bytes]]
    requests: list[Request] = field(default_factory=list)
    url: str = ""


@pytest.fixture
def scripted() -> Iterator[Callable[..., ScriptedInflux]]:
    servers: list[http.server.ThreadingHTTPServer] = []

    def start(
        answer: Callable[[int, Request], tuple[int, dict[str, str], bytes]],
    ) -> ScriptedInflux:
        state = ScriptedInflux(answer)
        lock = threading.Lock()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                request = Request(
                    time.monotonic(), self.headers.get("Authorization"), self.rfile.read(length)
                )
                with lock:
                    state.requests.append(request)
                    status, headers, body = answer(len(state.requests), request)
                self.send_response(status)
                for name, value in {**headers, "Content-Length": str(len(body))}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        servers.append(server)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        state.url = f"http://127.0.0.1:{server.server_address[1]}"
        return state

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_a_429_then_204_delivers_every_line_exactly_once_after_the_asked_delay(
    scripted: Callable[..., ScriptedInflux], db: Path
) -> None:
    server = scripted(
        lambda number, _: (
            (429, {"Retry-After": "1"}, b'{"message":"slow down"}')
            if number == 1
            else (204, {}, b"")
        )
    )
    settings = fast(server.url)
    stage(db, settings, sample_rows("a1", 0, 10))

    async def scenario() -> InfluxSink:
        sink = InfluxSink(settings, db)
        async with running(sink):
            await drained(db)
        return sink

    sink = asyncio.run(scenario())
    first, second = server.requests  # exactly two: refused, then taken
    assert first.body == second.body
    assert len(second.body.splitlines()) == 10
    assert second.at - first.at >= 0.95, "Retry-After: 1 was honoured"
    assert sink.stats.lines_written == 10
    assert sink.stats.last_error == "HTTP 429: slow down"


def test_a_refused_token_keeps_the_lines_until_the_config_is_fixed(
    scripted: Callable[..., ScriptedInflux], db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="maestro.influx")

    def answer(_: int, request: Request) -> tuple[int, dict[str, str], bytes]:
        if request.authorization == "Token right-token-123":
            return 204, {}, b""
        return (
            401,
            {"Content-Type": "application/json"},
            (b'{"code":"unauthorized","message":"unauthorized access"}'),
        )

    server = scripted(answer)
    wrong = fast(server.url, token="wrong-token-456")
    stage(db, wrong, sample_rows("a1", 0, 20))

    async def with_wrong_token() -> InfluxSink:
        sink = InfluxSink(wrong, db)
        async with running(sink):
            await until(lambda: len(server.requests) >= 3, 10, "retries with the wrong token")
        return sink

    refused = asyncio.run(with_wrong_token())
    assert refused.stats.lines_written == 0
    assert refused.stats.last_error == "HTTP 401: unauthorized access"
    assert totals(db).lines == 20
    assert caplog.text.count("check the token, org and bucket") == 1
    assert "wrong-token-456" not in caplog.text

    fixed = fast(server.url, token="right-token-123")

    async def with_fixed_token() -> None:
        async with running(InfluxSink(fixed, db)):
            await drained(db)

    asyncio.run(with_fixed_token())
    taken = [r for r in server.requests if r.authorization == "Token right-token-123"]
    assert len(taken) == 1
    assert len(taken[0].body.splitlines()) == 20


def flaky(real: Callable[..., Any], failures: int) -> Callable[..., Any]:
    """``real`` that raises "database is locked" on its first ``failures`` calls."""
    calls = 0

    def call(*args: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls <= failures:
            raise sqlite3.OperationalError("database is locked")
        return real(*args)

    return call


def test_store_errors_are_retried_and_a_batch_is_never_sent_twice(
    scripted: Callable[..., ScriptedInflux],
    db: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="maestro.influx")
    server = scripted(lambda _number, _request: (204, {}, b""))
    settings = fast(server.url)
    stage(db, settings, sample_rows("a1", 0, 30))
    # The store is locked for longer than the busy timeout: first when reading the
    # spool, then when deleting a batch the server already took.
    monkeypatch.setattr("maestro.influx.sink.oldest_batch", flaky(spool_module.oldest_batch, 2))
    monkeypatch.setattr("maestro.influx.sink.delete_batch", flaky(spool_module.delete_batch, 3))
    monkeypatch.setattr("maestro.influx.sink.STORE_RETRY_S", 0.05)

    async def scenario() -> InfluxSink:
        sink = InfluxSink(settings, db)
        async with running(sink):
            await drained(db)
            # The all-clear is logged just after the delete that drained the spool commits.
            for _ in range(100):
                if caplog.text.count("influx sink can use the store again") >= 2:
                    break
                await asyncio.sleep(0.05)
        return sink

    sink = asyncio.run(scenario())
    assert len(server.requests) == 1, "the batch went once although its delete failed"
    assert sink.stats.lines_written == 30
    # Two episodes (reading, then deleting), one warning and one all-clear each.
    assert caplog.text.count("influx sink cannot use the store") == 2
    assert caplog.text.count("influx sink can use the store again") == 2


# -- a bad point never blocks the spool -------------------------------------------------------
def refuse_garbage(_: int, request: Request) -> tuple[int, dict[str, str], bytes]:
    """Like InfluxDB: a body with an unparsable line is refused whole with a 400."""
    if any(line.startswith(b"garbage") for line in request.body.splitlines()):
        message = b'{"code":"invalid","message":"unable to parse \'garbage\': missing fields"}'
        return 400, {"Content-Type": "application/json"}, message
    return 204, {}, b""


def spool_raw(db: Path, lines: list[str]) -> None:
    conn = connect(db)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "INSERT INTO influx_spool (lines, n) VALUES (?, ?)", ("\n".join(lines), len(lines))
        )
        conn.execute("COMMIT")
    finally:
        conn.close()


def test_one_point_the_server_refuses_is_dropped_alone_and_the_spool_goes_on(
    scripted: Callable[..., ScriptedInflux], db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="maestro.influx")
    server = scripted(refuse_garbage)
    settings = fast(server.url, batch_lines=100)
    stage(db, settings, sample_rows("a1", 0, 20), chunk=20)
    spool_raw(db, ["garbage"])
    stage(db, settings, sample_rows("a2", 0, 20), chunk=20)

    async def scenario() -> InfluxSink:
        sink = InfluxSink(settings, db)
        async with running(sink):
            await drained(db, within_s=10)
        return sink

    sink = asyncio.run(scenario())
    taken = [
        line
        for request in server.requests
        if not any(line.startswith(b"garbage") for line in request.body.splitlines())
        for line in request.body.splitlines()
    ]
    assert len(taken) == 40, "every good line written"
    assert len(set(taken)) == 40, "and none twice"
    assert sink.stats.rejected_lines == 1
    assert sink.stats.lines_written == 40
    assert sink.stats.up
    assert caplog.text.count("influx server refused points") == 1


def test_a_server_that_refuses_every_line_keeps_them_all(
    scripted: Callable[..., ScriptedInflux], db: Path
) -> None:
    server = scripted(refuse_garbage)
    settings = fast(server.url, batch_lines=100)
    spool_raw(db, ["garbage 1", "garbage 2", "garbage 3"])

    async def scenario() -> InfluxSink:
        sink = InfluxSink(settings, db)
        async with running(sink):
            await until(lambda: sink.stats.write_errors >= 2, 10, "two refused attempts")
        return sink

    sink = asyncio.run(scenario())
    assert sink.stats.rejected_lines == 0, "nothing is dropped when nothing is writable"
    assert totals(db).lines == 3
    assert not sink.stats.up
