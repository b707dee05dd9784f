"""The store's writer: samples stored once, acknowledged only after commit, never lost."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from maestro.errors import StoreError
from maestro.store.core import Store
from maestro.store.rows import FIELDS, SampleRow
from maestro.store.settings import StoreSettings
from tests.fixtures.procs import wait_for

T0 = 1_700_000_000.0
FAST = StoreSettings(batch_max_delay_s=0.01)


def row(agent: str, seq: int, ts: float | None = None, cpu: float = 10.0) -> SampleRow:
    values: list[float | None] = [None] * len(FIELDS)
    values[FIELDS.index("cpu")] = cpu
    values[FIELDS.index("mem")] = 50.0
    return (agent, seq, T0 + seq if ts is None else ts, 1, *values)


def stored_seqs(path: Path, agent: str) -> list[int]:
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        return [
            seq
            for (seq,) in conn.execute(
                "SELECT seq FROM samples JOIN agents ON agents.id = samples.agent_id"
                " WHERE agents.name = ? ORDER BY seq",
                (agent,),
            )
        ]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store.open(tmp_path / "maestro.db", settings=FAST)
    try:
        yield opened
    finally:
        opened.close()


class Acks:
    """Counts on_stored calls, like the ingest acknowledging MQTT messages."""

    def __init__(self) -> None:
        self.count = 0
        self.event = threading.Event()

    def __call__(self) -> None:
        self.count += 1
        self.event.set()


def test_a_sample_delivered_twice_is_stored_once_and_both_deliveries_are_acknowledged(
    store: Store,
) -> None:
    first, second = Acks(), Acks()
    store.submit_samples([row("a1", 1), row("a1", 2)], first)
    assert first.event.wait(5)
    # Redelivery after a crash: the same seq again, plus one new sample.
    store.submit_samples([row("a1", 2), row("a1", 3)], second)
    assert second.event.wait(5)
    assert stored_seqs(store.path, "a1") == [1, 2, 3]
    assert (first.count, second.count) == (1, 1)
    assert (store.writer.rows_stored, store.writer.rows_duplicate) == (3, 1)


def test_the_same_sample_twice_in_one_batch_is_stored_once(store: Store) -> None:
    acks = Acks()
    store.submit_samples([row("a1", 7)])
    store.submit_samples([row("a1", 7), row("a2", 7)], acks)
    assert acks.event.wait(5)
    assert stored_seqs(store.path, "a1") == [7]
    assert stored_seqs(store.path, "a2") == [7]


def test_on_stored_runs_only_once_the_rows_are_committed(store: Store) -> None:
    seen_at_ack: list[list[int]] = []
    done = threading.Event()

    def on_stored() -> None:
        # Another connection sees the rows: they are committed, not just inserted.
        seen_at_ack.append(stored_seqs(store.path, "a1"))
        done.set()

    store.submit_samples([row("a1", seq) for seq in range(100)], on_stored)
    assert done.wait(5)
    assert seen_at_ack == [list(range(100))]


def test_a_full_disk_loses_nothing_and_acknowledges_only_after_space_returns(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    pages = store.submit_write(lambda conn: conn.execute("PRAGMA page_count").fetchone()[0]).result(
        5
    )
    # The writer's connection may not grow the file any more: SQLITE_FULL on insert.
    store.submit_write(lambda conn: conn.execute(f"PRAGMA max_page_count = {pages}")).result(5)
    acks = Acks()
    rows = [row("full", seq) for seq in range(2000)]
    store.submit_samples(rows, acks)
    wait_for(lambda: store.writer.write_errors >= 2, 5, "the write to fail and be retried")
    assert acks.count == 0
    assert stored_seqs(store.path, "full") == []
    assert store.writer.pending_rows == 2000
    assert store.writer.lag_s > 0
    store.submit_write(lambda conn: conn.execute("PRAGMA max_page_count = 1073741823")).result(5)
    assert acks.event.wait(10)
    assert stored_seqs(store.path, "full") == list(range(2000))
    assert acks.count == 1
    assert store.writer.pending_rows == 0
    assert store.writer.lag_s == 0
    failures = [r for r in caplog.records if "store write failed" in r.getMessage()]
    assert len(failures) == 1, "one log line per failure streak"


def test_submit_never_waits_for_the_database(store: Store) -> None:
    release = threading.Event()
    busy = store.submit_write(lambda conn: release.wait(10))
    acks = Acks()
    started = time.perf_counter()
    for seq in range(5000):
        store.submit_samples([row("a1", seq)], acks if seq == 4999 else None)
    elapsed = time.perf_counter() - started
    assert elapsed < 1.0, f"5000 submits took {elapsed:.3f}s while the writer was busy"
    assert acks.count == 0
    assert store.writer.pending_rows == 5000
    release.set()
    busy.result(5)
    assert acks.event.wait(10)
    assert len(stored_seqs(store.path, "a1")) == 5000


def test_batches_are_capped_at_batch_max_rows(tmp_path: Path) -> None:
    settings = StoreSettings(batch_max_rows=100, batch_max_delay_s=0.01)
    with Store.open(tmp_path / "m.db", settings=settings) as store:
        release = threading.Event()
        store.submit_write(lambda conn: release.wait(10))
        acks = Acks()
        for start in range(0, 1000, 50):
            store.submit_samples([row("a1", s) for s in range(start, start + 50)], acks)
        release.set()
        wait_for(lambda: acks.count == 20, 5, "every submission acknowledged")
        assert store.writer.batches == 10
        assert store.writer.rows_submitted == store.writer.rows_stored == 1000


def test_close_stores_what_was_submitted(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    acks = Acks()
    store = Store.open(path, settings=StoreSettings(batch_max_delay_s=5))
    store.submit_samples([row("a1", seq) for seq in range(10)], acks)
    store.close()
    assert acks.count == 1
    assert stored_seqs(path, "a1") == list(range(10))
    with pytest.raises(StoreError, match="closing"):
        store.submit_samples([row("a1", 11)])


def test_a_malformed_row_is_refused_at_submit_and_does_not_jam_the_writer(store: Store) -> None:
    with pytest.raises(ValueError, match="not a sample row"):
        store.submit_samples([("a1", 1, T0)])
    with pytest.raises(ValueError, match="not a sample row"):
        store.submit_samples([("a1", "1", T0, 1, *([None] * len(FIELDS)))])
    acks = Acks()
    store.submit_samples([row("a1", 1)], acks)
    assert acks.event.wait(5)


def test_a_failing_callback_does_not_stop_later_acknowledgements(store: Store) -> None:
    def broken() -> None:
        raise RuntimeError("ack failed")

    acks = Acks()
    store.submit_samples([row("a1", 1)], broken)
    store.submit_samples([row("a1", 2)], acks)
    assert acks.event.wait(5)


class Spool:
    """A stager like the InfluxDB spool: its own table, the writer's transaction."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.staged: list[tuple[str, int]] = []

    def stage(self, conn: sqlite3.Connection, rows: Sequence[SampleRow]) -> None:
        conn.execute("CREATE TABLE IF NOT EXISTS spool (agent TEXT, seq INTEGER)")
        conn.executemany("INSERT INTO spool VALUES (?, ?)", [(r[0], r[1]) for r in rows])
        if self.fail:
            raise sqlite3.OperationalError("spool is broken")
        self.staged += [(r[0], r[1]) for r in rows]


def test_stagers_get_only_the_new_rows_of_a_batch(tmp_path: Path) -> None:
    spool = Spool()
    with Store.open(tmp_path / "m.db", settings=FAST, stagers=[spool]) as store:
        acks = Acks()
        store.submit_samples([row("a1", 1), row("a1", 2)])
        store.submit_samples([row("a1", 2), row("a2", 1), row("a1", 2)], acks)
        wait_for(lambda: acks.count == 1, 5, "acknowledgement")
    assert sorted(spool.staged) == [("a1", 1), ("a1", 2), ("a2", 1)]


def test_a_failing_stager_keeps_the_sample_out_of_the_store_too(tmp_path: Path) -> None:
    spool = Spool(fail=True)
    path = tmp_path / "m.db"
    with Store.open(path, settings=FAST) as store:
        store.add_stager(spool)
        acks = Acks()
        store.submit_samples([row("a1", 1)], acks)
        wait_for(lambda: store.writer.write_errors >= 1, 5, "the failed batch")
        assert stored_seqs(path, "a1") == []
        spool.fail = False
        assert acks.event.wait(5)
    assert stored_seqs(path, "a1") == [1]
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        assert conn.execute("SELECT agent, seq FROM spool").fetchall() == [("a1", 1)]


def test_a_write_job_that_fails_is_rolled_back_and_reported(store: Store) -> None:
    def half_done(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO agents (name) VALUES ('ghost')")
        conn.execute("INSERT INTO no_such_table VALUES (1)")

    with pytest.raises(StoreError, match="no_such_table"):
        store.submit_write(half_done).result(5)
    names = store.read_now(lambda conn: conn.execute("SELECT name FROM agents").fetchall())
    assert names == []


def test_an_agent_created_in_a_failed_batch_does_not_lend_its_id_to_another(
    tmp_path: Path,
) -> None:
    from maestro.store.samples import agent_id

    spool = Spool(fail=True)
    path = tmp_path / "m.db"
    with Store.open(path, settings=FAST, stagers=[spool]) as store:
        acks = Acks()
        store.submit_samples([row("first", 1)], acks)
        wait_for(lambda: store.writer.write_errors >= 1, 5, "the failed batch")
        # The rolled-back id of "first" is free again; another agent takes it now.
        store.submit_write(lambda conn: agent_id(conn, "second")).result(5)
        spool.fail = False
        assert acks.event.wait(5)
    assert stored_seqs(path, "first") == [1]
    assert stored_seqs(path, "second") == []
