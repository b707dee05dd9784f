"""A row the database refuses never stops the writer: the rest is stored, it is dropped.

One metrics message with ``seq`` 2**63 once made the writer retry the whole batch (the
whole fleet's samples) for ever. The contract now refuses such numbers at decode time;
the writer is the second line: it isolates the bad row, counts it, logs it once and
acknowledges its message. Receive times (``rx_ts``) are stored beside every row.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from maestro.store.core import Store
from maestro.store.db import connect, migrate
from maestro.store.rows import FIELDS, SampleRow
from maestro.store.samples import AGENTS_MIGRATIONS, SAMPLES_MIGRATIONS
from maestro.store.settings import StoreSettings

T0 = 1_764_000_000.0
FAST = StoreSettings(batch_max_delay_s=0.05)


def row(agent: str, seq: int, cpu: object = 10.0, ts: float | None = None) -> SampleRow:
    values: list[object] = [None] * len(FIELDS)
    values[FIELDS.index("cpu")] = cpu
    values[FIELDS.index("mem")] = 50.0
    return (agent, seq, T0 + seq % 1000 if ts is None else ts, 1, *values)


def stored(path: Path, agent: str) -> list[int]:
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        return [
            seq
            for (seq,) in conn.execute(
                "SELECT seq FROM samples JOIN agents ON agents.id = samples.agent_id"
                " WHERE agents.name = ? ORDER BY seq",
                (agent,),
            )
        ]


class Acks:
    def __init__(self, expected: int) -> None:
        self.count = 0
        self.expected = expected
        self.done = threading.Event()
        self.lock = threading.Lock()

    def __call__(self) -> None:
        with self.lock:
            self.count += 1
            if self.count >= self.expected:
                self.done.set()


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store.open(tmp_path / "maestro.db", settings=FAST)
    try:
        yield opened
    finally:
        opened.close()


def submit_together(store: Store, submissions: list[list[SampleRow]], acks: Acks) -> None:
    """Submit while the writer is busy, so every submission lands in ONE batch."""
    release = threading.Event()
    store.submit_write(lambda conn: release.wait(5))
    for rows in submissions:
        store.submit_samples(rows, acks)
    release.set()


@pytest.mark.parametrize(
    "bad",
    [
        row("evil", 2**63),  # OverflowError: SQLite integers are signed 64-bit
        row("evil", 5, cpu={"not": "a number"}),  # a type SQLite cannot bind
        ("evil", 6, T0, 1, *([object()] * len(FIELDS))),
    ],
    ids=["seq-2^63", "dict-value", "object-values"],
)
def test_one_refused_row_drops_alone_and_every_message_is_acknowledged(
    store: Store, bad: SampleRow
) -> None:
    acks = Acks(4)
    submit_together(
        store,
        [
            [row("a1", 1), row("a1", 2)],
            [row("evil", 1), bad, row("evil", 3)],  # one message: the good rows stay
            [row("a2", 1)],
            [row("a1", 3)],
        ],
        acks,
    )
    assert acks.done.wait(5), "every message is acknowledged, the poisoned one too"
    assert stored(store.path, "a1") == [1, 2, 3]
    assert stored(store.path, "a2") == [1]
    assert stored(store.path, "evil") == [1, 3]
    assert store.writer.rows_rejected == 1
    assert store.writer.rows_stored == 6
    assert store.writer.rows_duplicate == 0
    assert store.writer.write_errors == 0, "no retry: nothing was wrong with the disk"
    # The writer goes on: the attacked agent's later real samples are stored.
    later = Acks(1)
    store.submit_samples([row("evil", 4)], later)
    assert later.done.wait(5)
    assert stored(store.path, "evil") == [1, 3, 4]


def test_a_flood_of_refused_rows_is_logged_once_a_minute_per_agent(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="maestro.store")
    acks = Acks(51)
    submit_together(store, [[row("evil", 2**63 + n)] for n in range(50)] + [[row("a1", 1)]], acks)
    assert acks.done.wait(10)
    assert store.writer.rows_rejected == 50
    assert stored(store.path, "a1") == [1]
    lines = [r.getMessage() for r in caplog.records if "refused a sample row" in r.getMessage()]
    assert len(lines) == 1
    assert "agent=evil" in lines[0]
    assert "OverflowError" in lines[0]


class PickySpool:
    """A stager that refuses one agent's rows (a point the sink could never write)."""

    def __init__(self) -> None:
        self.staged: list[tuple[str, int]] = []

    def stage(self, conn: sqlite3.Connection, rows: Sequence[SampleRow]) -> None:
        if any(r[0] == "evil" and r[1] == 2 for r in rows):
            raise ValueError("cannot encode this point")
        self.staged += [(r[0], r[1]) for r in rows]


def test_a_row_its_stager_refuses_is_dropped_and_the_rest_is_stored_and_staged(
    tmp_path: Path,
) -> None:
    spool = PickySpool()
    path = tmp_path / "m.db"
    with Store.open(path, settings=FAST, stagers=[spool]) as store:
        acks = Acks(2)
        submit_together(store, [[row("a1", 1)], [row("evil", 1), row("evil", 2)]], acks)
        assert acks.done.wait(5)
        assert store.writer.rows_rejected == 1
    assert stored(path, "a1") == [1]
    assert stored(path, "evil") == [1]
    assert sorted(spool.staged) == [("a1", 1), ("evil", 1)]


def test_each_row_keeps_the_maestros_receive_time_beside_the_agents_ts(tmp_path: Path) -> None:
    clock = Clock(T0 + 7200)  # the agent's clock is two hours behind the maestro's
    path = tmp_path / "m.db"
    with Store.open(path, settings=FAST, clock=clock) as store:
        acks = Acks(1)
        store.submit_samples([row("a1", 1, ts=T0)], acks)
        assert acks.done.wait(5)
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        assert conn.execute("SELECT ts, rx_ts FROM samples").fetchall() == [(T0, T0 + 7200)]


def test_an_old_store_gets_rx_ts_and_loses_rows_stamped_far_in_the_future(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    conn = connect(path)
    migrate(conn, "agents", AGENTS_MIGRATIONS)
    migrate(conn, "samples", SAMPLES_MIGRATIONS[:1])  # a file of the previous build
    conn.execute("INSERT INTO agents (id, name) VALUES (1, 'a1')")
    cols = ", ".join(FIELDS)
    marks = ", ".join("?" * len(FIELDS))
    now = time.time()
    for seq, ts in ((1, now - 60), (2**62, 4_102_444_900.0)):  # the year-2100 poison
        conn.execute(
            f"INSERT INTO samples (agent_id, seq, ts, epoch, {cols}) VALUES (1, ?, ?, 1, {marks})",  # noqa: S608
            (seq, ts, *([1.0] * len(FIELDS))),
        )
    rollup_cols = ", ".join(f"{name}_n, {name}_sum" for name in FIELDS)
    rollup_values = ", ".join("1, 1.0" for _ in FIELDS)
    conn.execute(
        f"INSERT INTO rollup_1m (agent_id, minute, n, {rollup_cols})"  # noqa: S608 - constants
        f" VALUES (1, 4102444860, 1, {rollup_values})"
    )
    conn.close()
    with Store.open(path, settings=FAST) as store:
        acks = Acks(1)
        store.submit_samples([row("a1", 3, ts=now)], acks)
        assert acks.done.wait(5)
    assert stored(path, "a1") == [1, 3]
    with contextlib.closing(sqlite3.connect(path)) as check, check:
        assert (
            check.execute("SELECT count(*) FROM rollup_1m WHERE minute > ?", (now,)).fetchone()[0]
            == 0
        )
        rx = dict(check.execute("SELECT seq, rx_ts FROM samples"))
    assert rx[1] is None, "rows stored before the column existed have no receive time"
    assert rx[3] is not None


class DamagedSpool:
    """A stager whose database fails as a whole (not a row's fault) a few times."""

    def __init__(self, failures: int) -> None:
        self.failures = failures

    def stage(self, conn: sqlite3.Connection, rows: Sequence[SampleRow]) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise sqlite3.DatabaseError("database disk image is malformed")


def test_an_error_of_the_database_itself_drops_nothing_and_is_retried(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    with Store.open(path, settings=FAST, stagers=[DamagedSpool(failures=2)]) as store:
        acks = Acks(2)
        submit_together(store, [[row("a1", 1)], [row("evil", 2**63)]], acks)
        assert acks.done.wait(10)
        assert store.writer.write_errors == 2, "retried as a whole while the database failed"
        assert store.writer.rows_rejected == 1, "then only the row SQLite cannot hold"
    assert stored(path, "a1") == [1]
