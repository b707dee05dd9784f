"""History queries: raw or rollups as the window asks, empty buckets left out, bad asks refused."""

from __future__ import annotations

import asyncio
import math
import sqlite3
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import msgspec
import pytest

from maestro.errors import QueryError, StoreError
from maestro.store.core import BUILTIN_MIGRATIONS, Store
from maestro.store.db import migrate
from maestro.store.query import MAX_BUCKETS, History, query_history
from maestro.store.rows import FIELDS, SampleRow
from maestro.store.samples import AgentIds, store_batch
from maestro.store.settings import StoreSettings

T0 = 1_700_000_040.0  # a minute boundary
NOW = T0 + 3600
CPU = FIELDS.index("cpu")
MEM = FIELDS.index("mem")


def row(agent: str, seq: int, ts: float, cpu: float, mem: float = 50.0) -> SampleRow:
    values: list[float | None] = [None] * len(FIELDS)
    values[CPU] = cpu
    values[MEM] = mem
    return (agent, seq, ts, 1, *values)


def fill(conn: sqlite3.Connection, rows: Sequence[SampleRow]) -> None:
    ids = AgentIds(conn)
    for start in range(0, len(rows), 5000):
        conn.execute("BEGIN")
        store_batch(conn, ids, rows[start : start + 5000])
        conn.execute("COMMIT")


@pytest.fixture
def db() -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    for component, scripts in BUILTIN_MIGRATIONS.items():
        migrate(conn, component, scripts)
    try:
        yield conn
    finally:
        conn.close()


def history(
    conn: sqlite3.Connection,
    fields: list[str],
    start: float,
    end: float,
    step: float,
    *,
    agent: str = "a1",
    **kwargs: Any,
) -> History:
    return query_history(conn, agent, fields, start=start, end=end, step=step, now=NOW, **kwargs)


def numbers(values: list[float | None]) -> list[float]:
    assert None not in values
    return [v for v in values if v is not None]


def test_a_short_step_inside_raw_retention_reads_raw_samples(db: sqlite3.Connection) -> None:
    fill(db, [row("a1", i, T0 + i, cpu=i) for i in range(20)])
    result = history(db, ["cpu"], T0, T0 + 20, 5)
    assert result.source == "raw"
    assert result.ts == [T0, T0 + 5, T0 + 10, T0 + 15]
    assert result.series["cpu"] == {
        "min": [0, 5, 10, 15],
        "avg": [2, 7, 12, 17],
        "max": [4, 9, 14, 19],
    }


def test_buckets_without_samples_are_left_out(db: sqlite3.Connection) -> None:
    fill(db, [row("a1", 1, T0 + 1, 10), row("a1", 2, T0 + 31, 30)])
    result = history(db, ["cpu", "mem"], T0, T0 + 40, 10)
    assert result.ts == [T0, T0 + 30]
    assert result.series["cpu"]["avg"] == [10, 30]
    assert result.series["mem"]["max"] == [50, 50]


def test_buckets_are_aligned_to_the_step_and_the_window_is_half_open(
    db: sqlite3.Connection,
) -> None:
    fill(db, [row("a1", i, T0 + i, cpu=i) for i in range(30)])
    result = history(db, ["cpu"], T0 + 3, T0 + 25, 10)
    assert result.ts == [T0, T0 + 10, T0 + 20]
    assert result.series["cpu"]["min"] == [3, 10, 20]
    assert result.series["cpu"]["max"] == [9, 19, 24]


def test_a_step_of_a_minute_or_more_reads_the_rollups_in_whole_minutes(
    db: sqlite3.Connection,
) -> None:
    fill(db, [row("a1", i, T0 + i, cpu=i % 60) for i in range(600)])
    result = history(db, ["cpu"], T0, T0 + 600, 130)
    assert result.source == "rollup"
    assert result.step == 120
    assert len(result.ts) == 5
    assert all(ts % 120 == 0 for ts in result.ts)
    assert result.series["cpu"]["min"] == [0] * len(result.ts)
    assert result.series["cpu"]["max"] == [59] * len(result.ts)
    assert result.series["cpu"]["avg"] == pytest.approx([29.5] * len(result.ts))


def test_rollups_answer_like_raw_samples_for_whole_minutes(db: sqlite3.Connection) -> None:
    fill(db, [row("a1", i, T0 + i, cpu=(i * 37) % 100) for i in range(1800)])
    raw = history(db, ["cpu"], T0, T0 + 1800, 30)
    rolled = history(db, ["cpu"], T0, T0 + 1800, 60)
    assert (raw.source, rolled.source) == ("raw", "rollup")
    lows, highs = numbers(raw.series["cpu"]["min"]), numbers(raw.series["cpu"]["max"])
    raw_minutes = [(min(lows[i : i + 2]), max(highs[i : i + 2])) for i in range(0, len(raw.ts), 2)]
    assert list(zip(rolled.series["cpu"]["min"], rolled.series["cpu"]["max"], strict=True)) == (
        raw_minutes
    )


def test_a_window_reaching_before_raw_retention_reads_the_rollups(
    db: sqlite3.Connection,
) -> None:
    old = NOW - 3 * 3600
    fill(db, [row("a1", i, old + i, cpu=50) for i in range(120)])
    result = history(db, ["cpu"], old, NOW, 10, raw_retention_s=3600)
    assert result.source == "rollup"
    assert result.step == 60
    assert result.series["cpu"]["avg"] == [50, 50]


def test_a_field_the_agent_did_not_report_gives_nulls(db: sqlite3.Connection) -> None:
    fill(db, [row("a1", 1, T0 + 1, 10)])
    for step in (10, 60):
        result = history(db, ["gpu_util"], T0, T0 + 60, step)
        assert result.series["gpu_util"] == {"min": [None], "avg": [None], "max": [None]}


def test_an_agent_without_samples_gets_an_empty_history(db: sqlite3.Connection) -> None:
    result = history(db, ["cpu"], T0, T0 + 60, 10, agent="nobody")
    assert (result.ts, result.series) == ([], {"cpu": {"min": [], "avg": [], "max": []}})


def test_the_answer_encodes_to_json(db: sqlite3.Connection) -> None:
    fill(db, [row("a1", 1, T0 + 1, 10)])
    decoded = msgspec.json.decode(msgspec.json.encode(history(db, ["cpu"], T0, T0 + 60, 10)))
    assert decoded["source"] == "raw"
    assert decoded["series"]["cpu"]["avg"] == [10]


@pytest.mark.parametrize(
    ("fields", "window", "step", "message"),
    [
        (["cpu", "bogus"], (T0, T0 + 60), 10, "unknown field.*'bogus'.*known fields: cpu"),
        (["cpu; DROP TABLE samples"], (T0, T0 + 60), 10, "unknown field"),
        ([], (T0, T0 + 60), 10, "no fields"),
        (["cpu"], (T0 + 60, T0), 10, "must be after start"),
        (["cpu"], (T0, T0), 10, "must be after start"),
        (["cpu"], (T0, T0 + 60), 0, "step must be positive"),
        (["cpu"], (T0, T0 + 60), -5, "step must be positive"),
        (["cpu"], (math.nan, T0 + 60), 10, "start must be finite"),
        (["cpu"], (T0, math.inf), 10, "end must be finite"),
        (["cpu"], (-10, T0), 10, "start must be unix seconds"),
        (["cpu"], (T0, T0 + 86_400), 1, "86400 buckets.*at most 10000"),
        (["cpu"], (0, T0), 3600, "buckets.*larger step"),
    ],
)
def test_bad_requests_are_refused_with_a_clear_reason(
    db: sqlite3.Connection,
    fields: list[str],
    window: tuple[float, float],
    step: float,
    message: str,
) -> None:
    with pytest.raises(QueryError, match=message):
        history(db, fields, *window, step)


def test_query_errors_are_store_errors() -> None:
    assert issubclass(QueryError, StoreError)


def test_the_largest_allowed_number_of_buckets_is_accepted(db: sqlite3.Connection) -> None:
    assert history(db, ["cpu"], T0, T0 + MAX_BUCKETS * 60, 60).ts == []


def test_a_day_of_one_agent_downsampled_to_a_thousand_buckets_is_fast(
    db: sqlite3.Connection,
) -> None:
    day = 86_400
    fill(db, [row("a1", i, T0 + i, cpu=i % 100) for i in range(day)])
    best = math.inf
    for _ in range(3):
        started = time.perf_counter()
        result = query_history(
            db, "a1", ["cpu", "mem"], start=T0, end=T0 + day, step=90, now=T0 + day
        )
        best = min(best, time.perf_counter() - started)
    assert len(result.ts) == 720
    assert best < 0.1, f"{best * 1000:.1f} ms"


def test_store_history_runs_the_query_on_a_reader(tmp_path: Path) -> None:
    settings = StoreSettings(raw_retention_h=1, batch_max_delay_s=0.01)
    with Store.open(tmp_path / "m.db", settings=settings, clock=lambda: NOW) as store:
        store.writer.submit([row("a1", i, T0 + i, cpu=i) for i in range(10)])
        deadline = time.monotonic() + 5
        while store.writer.pending_rows and time.monotonic() < deadline:
            time.sleep(0.01)

        async def ask() -> tuple[History, History]:
            return (
                await store.history("a1", ["cpu"], T0, T0 + 10, 5),
                await store.history("a1", ["cpu"], NOW - 7200, NOW, 5),
            )

        recent, old = asyncio.run(ask())
    assert recent.source == "raw"
    assert recent.series["cpu"]["max"] == [4, 9]
    assert old.source == "rollup", "the window reaches past the 1 h raw retention"
