"""Minute rollups and retention: right min/avg/max, late samples, old rows pruned."""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maestro.store.core import BUILTIN_MIGRATIONS
from maestro.store.db import migrate
from maestro.store.rollup import apply_retention, retention_steps
from maestro.store.rows import FIELDS, SampleRow
from maestro.store.samples import AgentIds, store_batch
from maestro.store.settings import StoreSettings

T0 = 1_700_000_040.0  # a minute boundary
CPU = FIELDS.index("cpu")
GPU = FIELDS.index("gpu_util")


def row(agent: str, seq: int, ts: float, cpu: float, gpu: float | None = None) -> SampleRow:
    values: list[float | None] = [None] * len(FIELDS)
    values[CPU] = cpu
    values[GPU] = gpu
    return (agent, seq, ts, 1, *values)


def open_db() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    for component, scripts in BUILTIN_MIGRATIONS.items():
        migrate(conn, component, scripts)
    return conn


@pytest.fixture
def db() -> Iterator[sqlite3.Connection]:
    conn = open_db()
    try:
        yield conn
    finally:
        conn.close()


def store(conn: sqlite3.Connection, rows: Sequence[SampleRow], ids: AgentIds | None = None) -> int:
    conn.execute("BEGIN")
    inserted = store_batch(conn, ids or AgentIds(conn), rows)
    conn.execute("COMMIT")
    return inserted


def rollup(conn: sqlite3.Connection, agent: str, field: str) -> list[tuple[Any, ...]]:
    """(minute, n, min, avg, max) rows of one agent and field."""
    return conn.execute(
        f"SELECT minute, {field}_n, {field}_min, {field}_sum / {field}_n, {field}_max"  # noqa: S608 - test's own field names
        " FROM rollup_1m JOIN agents ON agents.id = rollup_1m.agent_id"
        " WHERE agents.name = ? ORDER BY minute",
        (agent,),
    ).fetchall()


def test_rollups_hold_min_avg_max_per_agent_and_minute(db: sqlite3.Connection) -> None:
    store(
        db,
        [
            row("a1", 1, T0 + 1, 10),
            row("a1", 2, T0 + 30, 20),
            row("a1", 3, T0 + 59.9, 60),
            row("a1", 4, T0 + 60, 5),
            row("a2", 1, T0 + 2, 99),
        ],
    )
    assert rollup(db, "a1", "cpu") == [(int(T0), 3, 10, 30, 60), (int(T0) + 60, 1, 5, 5, 5)]
    assert rollup(db, "a2", "cpu") == [(int(T0), 1, 99, 99, 99)]


def test_samples_that_arrive_after_their_minute_closed_merge_into_its_rollup(
    db: sqlite3.Connection,
) -> None:
    ids = AgentIds(db)
    store(db, [row("a1", 1, T0 + 1, 10), row("a1", 2, T0 + 2, 20)], ids)
    store(db, [row("a1", 100, T0 + 200, 1)], ids)  # later minutes go on
    store(db, [row("a1", 3, T0 + 3, 90), row("a1", 4, T0 + 4, 0)], ids)  # outbox replay
    assert rollup(db, "a1", "cpu")[0] == (int(T0), 4, 0, 30, 90)


def test_a_redelivered_sample_is_not_counted_twice_in_the_rollup(db: sqlite3.Connection) -> None:
    ids = AgentIds(db)
    store(db, [row("a1", 1, T0 + 1, 10), row("a1", 2, T0 + 2, 20)], ids)
    assert store(db, [row("a1", 2, T0 + 2, 20), row("a1", 1, T0 + 1, 10)], ids) == 0
    assert rollup(db, "a1", "cpu") == [(int(T0), 2, 10, 15, 20)]


def test_a_field_some_samples_lack_averages_over_the_samples_that_have_it(
    db: sqlite3.Connection,
) -> None:
    ids = AgentIds(db)
    store(db, [row("a1", 1, T0 + 1, 10, gpu=None), row("a1", 2, T0 + 2, 20, gpu=40)], ids)
    store(db, [row("a1", 3, T0 + 3, 30, gpu=None)], ids)
    store(db, [row("a1", 4, T0 + 4, 40, gpu=80)], ids)
    assert rollup(db, "a1", "gpu_util") == [(int(T0), 2, 40, 60, 80)]
    assert rollup(db, "a1", "temp_max") == [(int(T0), 0, None, None, None)]


@settings(max_examples=40, deadline=None)
@given(
    samples=st.lists(
        st.tuples(
            st.integers(0, 50),  # seq
            st.floats(0, 240, allow_nan=False),  # seconds after T0
            st.floats(0, 100, allow_nan=False),  # cpu
        ),
        min_size=1,
        max_size=60,
    ),
    cuts=st.lists(st.integers(0, 60), max_size=5),
)
def test_rollups_equal_a_direct_aggregate_however_samples_are_batched_and_repeated(
    samples: list[tuple[int, float, float]], cuts: list[int]
) -> None:
    conn = open_db()
    try:
        ids = AgentIds(conn)
        rows = [row("a1", seq, T0 + offset, cpu) for seq, offset, cpu in samples]
        bounds = [0, *sorted(cuts), len(rows)]
        for low, high in itertools.pairwise(bounds):
            if low < high:
                store(conn, rows[low:high], ids)
        store(conn, rows, ids)  # a full redelivery changes nothing
        first: dict[int, SampleRow] = {}
        for r in rows:
            first.setdefault(r[1], r)
        expected: dict[int, list[float]] = {}
        for r in first.values():
            expected.setdefault(int(r[2] // 60) * 60, []).append(r[4 + CPU])
        got = rollup(conn, "a1", "cpu")
        assert [g[0] for g in got] == sorted(expected)
        for minute, n, lowest, avg, highest in got:
            values = expected[minute]
            assert (n, lowest, highest) == (len(values), min(values), max(values))
            assert avg == pytest.approx(sum(values) / len(values))
    finally:
        conn.close()


# -- retention ---------------------------------------------------------------------------
RETAIN = StoreSettings(raw_retention_h=1, rollup_retention_d=1)


def count(conn: sqlite3.Connection, table: str) -> int:
    return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # noqa: S608


def test_retention_deletes_old_raw_samples_but_keeps_their_rollups(db: sqlite3.Connection) -> None:
    now = T0 + 10 * 3600
    old = [row("a1", seq, now - 2 * 3600 + seq, 10) for seq in range(100)]
    fresh = [row("a1", 1000 + seq, now - 600 + seq, 20) for seq in range(100)]
    store(db, old + fresh)
    minutes_before = count(db, "rollup_1m")
    deleted = apply_retention(db, now, RETAIN)
    assert deleted == 100
    assert db.execute("SELECT min(seq) FROM samples").fetchone()[0] == 1000
    assert count(db, "rollup_1m") == minutes_before


def test_retention_deletes_rollups_older_than_their_window(db: sqlite3.Connection) -> None:
    now = T0 + 5 * 86_400
    store(db, [row("a1", 1, now - 2 * 86_400, 10), row("a1", 2, now - 3600, 20)])
    apply_retention(db, now, StoreSettings(raw_retention_h=24 * 30, rollup_retention_d=1))
    assert count(db, "samples") == 2
    assert [m for (m, *_rest) in rollup(db, "a1", "cpu")] == [int((now - 3600) // 60) * 60]


def test_retention_works_in_chunks_each_committed_on_its_own(db: sqlite3.Connection) -> None:
    now = T0 + 10 * 3600
    store(db, [row(agent, seq, T0 + seq, 1) for agent in ("a1", "a2") for seq in range(250)])
    steps = retention_steps(db, now, RETAIN, chunk=100)
    assert next(steps) == 100
    assert not db.in_transaction, "a chunk is committed before the next one starts"
    assert count(db, "samples") == 400
    assert sum(steps) == 400
    assert count(db, "samples") == 0
