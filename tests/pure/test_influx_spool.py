"""The durable spool: what is staged with the store's transaction, and drop-oldest when full."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from maestro.influx.settings import InfluxSettings
from maestro.influx.spool import (
    COMPONENT,
    MIGRATIONS,
    InfluxSpool,
    delete_batch,
    oldest_batch,
    read_totals,
)
from maestro.store.db import connect, migrate
from maestro.store.rows import FIELDS, SampleRow


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    connection = connect(tmp_path / "maestro.db")
    migrate(connection, COMPONENT, MIGRATIONS)
    yield connection
    connection.close()


def rows(first_seq: int, count: int, agent: str = "a1") -> list[SampleRow]:
    return [
        (agent, seq, 1_700_000_000 + seq, 1, float(seq), *([None] * (len(FIELDS) - 1)))
        for seq in range(first_seq, first_seq + count)
    ]


def spool_for(batch_lines: int = 5000, max_spool_rows: int = 5_000_000) -> InfluxSpool:
    return InfluxSpool(
        InfluxSettings(
            url="http://127.0.0.1:8428", batch_lines=batch_lines, max_spool_rows=max_spool_rows
        )
    )


def stage(conn: sqlite3.Connection, spool: InfluxSpool, staged: Sequence[SampleRow]) -> None:
    conn.execute("BEGIN IMMEDIATE")
    spool.stage(conn, staged)
    conn.execute("COMMIT")


def spooled_seqs(conn: sqlite3.Connection) -> list[int]:
    """The seq of every spooled line (the cpu value is the seq in these rows)."""
    seqs = []
    for (lines,) in conn.execute("SELECT lines FROM influx_spool ORDER BY id"):
        for line in lines.split("\n"):
            seqs.append(int(float(line.split(" ")[1].removeprefix("cpu="))))
    return seqs


def test_staged_rows_are_spooled_in_chunks_of_at_most_batch_lines(
    conn: sqlite3.Connection,
) -> None:
    stage(conn, spool_for(batch_lines=4), rows(0, 10))
    counts = [n for (n,) in conn.execute("SELECT n FROM influx_spool ORDER BY id")]
    assert counts == [4, 4, 2]
    assert spooled_seqs(conn) == list(range(10))
    totals = read_totals(conn)
    assert (totals.rows, totals.lines, totals.dropped_lines) == (3, 10, 0)


def test_rows_without_fields_spool_nothing(conn: sqlite3.Connection) -> None:
    empty = [("a1", 1, 1_700_000_000.0, 1, *([None] * len(FIELDS)))]
    stage(conn, spool_for(), empty)
    assert read_totals(conn).rows == 0


def test_a_rolled_back_store_transaction_leaves_nothing_in_the_spool(
    conn: sqlite3.Connection,
) -> None:
    spool = spool_for()
    conn.execute("BEGIN IMMEDIATE")
    spool.stage(conn, rows(0, 5))
    conn.execute("ROLLBACK")  # the samples were not stored, so they must not be sent
    assert read_totals(conn).lines == 0
    assert conn.execute("SELECT COUNT(*) FROM influx_spool").fetchone()[0] == 0


def test_a_full_spool_drops_the_oldest_lines_and_counts_them(
    conn: sqlite3.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    spool = spool_for(batch_lines=2, max_spool_rows=10)
    caplog.set_level(logging.WARNING, logger="maestro.influx.spool")
    for first in range(0, 12, 4):
        stage(conn, spool, rows(first, 4))
    assert spooled_seqs(conn) == list(range(2, 12)), "the newest lines are kept"
    totals = read_totals(conn)
    assert (totals.lines, totals.dropped_lines) == (10, 2)
    assert "dropped the oldest lines" in caplog.text
    stage(conn, spool, rows(12, 6))
    assert spooled_seqs(conn) == list(range(8, 18))
    assert read_totals(conn).dropped_lines == 8


def test_the_oldest_batch_holds_at_most_the_line_budget_but_at_least_one_row(
    conn: sqlite3.Connection,
) -> None:
    spool = spool_for(batch_lines=3)
    stage(conn, spool, rows(0, 3))
    stage(conn, spool, rows(3, 2))
    stage(conn, spool, rows(5, 3))
    batch = oldest_batch(conn, 5)
    assert batch is not None
    assert batch.lines == 5
    assert [line.split(" ")[1] for line in batch.body.split("\n")] == [
        f"cpu={seq}.0" for seq in range(5)
    ]
    small = oldest_batch(conn, 1)  # smaller than one spool row: that row still goes
    assert small is not None
    assert (small.first_id, small.last_id, small.lines) == (batch.first_id, batch.first_id, 3)


def test_deleting_a_written_batch_keeps_the_rest(conn: sqlite3.Connection) -> None:
    spool = spool_for(batch_lines=2)
    stage(conn, spool, rows(0, 6))
    batch = oldest_batch(conn, 4)
    assert batch is not None
    conn.execute("BEGIN IMMEDIATE")
    delete_batch(conn, batch.first_id, batch.last_id)
    conn.execute("COMMIT")
    assert spooled_seqs(conn) == [4, 5]
    assert read_totals(conn).lines == 2
    assert oldest_batch(conn, 4) is not None
    conn.execute("DELETE FROM influx_spool")
    assert oldest_batch(conn, 4) is None
    assert read_totals(conn).rows == 0


def test_spool_ids_are_never_reused_after_the_spool_empties(conn: sqlite3.Connection) -> None:
    spool = spool_for()
    stage(conn, spool, rows(0, 1))
    first = oldest_batch(conn, 10)
    conn.execute("DELETE FROM influx_spool")
    stage(conn, spool, rows(1, 1))
    second = oldest_batch(conn, 10)
    assert first is not None
    assert second is not None
    assert second.first_id > first.last_id


def test_migrating_twice_changes_nothing(conn: sqlite3.Connection) -> None:
    stage(conn, spool_for(), rows(0, 3))
    assert migrate(conn, COMPONENT, MIGRATIONS) == len(MIGRATIONS)
    assert read_totals(conn).lines == 3
