"""The agent's SQLite state: seq never reused, remembered ids, bounded outbox (real files)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from edge_agent.errors import StateError
from edge_agent.seq import SEQ_BLOCK
from edge_agent.state import (
    BALLAST_BYTES,
    JOURNAL_LIMIT_BYTES,
    AgentState,
    EpochCounter,
    OutboxRow,
)


def rows(*seqs: int) -> list[OutboxRow]:
    return [OutboxRow(seq, b'{"seq":%d}' % seq) for seq in seqs]


def test_seq_is_contiguous_across_restarts(tmp_path: Path) -> None:
    state = AgentState(tmp_path, outbox_max=100)
    assert [state.next_seq() for _ in range(3)] == [1, 2, 3]
    state.close()
    again = AgentState(tmp_path, outbox_max=100)
    assert again.next_seq() == 4


def test_command_ids_are_remembered_across_restarts(tmp_path: Path) -> None:
    state = AgentState(tmp_path, outbox_max=100)
    state.remember_command("c-1", expires_at=200.0, now=100.0)
    state.close()
    again = AgentState(tmp_path, outbox_max=100)
    assert again.seen_command("c-1")
    assert not again.seen_command("c-2")
    assert again.forget_commands_expired_before(300.0) == 1
    assert not again.seen_command("c-1")


def test_outbox_keeps_order_and_drops_the_oldest_past_its_bound(tmp_path: Path) -> None:
    state = AgentState(tmp_path, outbox_max=5)
    assert state.outbox_append(rows(1, 2, 3)) == 0
    assert state.outbox_append(rows(4, 5, 6, 7)) == 2
    assert state.dropped == 2
    assert [row.seq for row in state.outbox_batch(0, 100)] == [3, 4, 5, 6, 7]
    state.close()
    again = AgentState(tmp_path, outbox_max=5)
    assert again.dropped == 2, "the drop count survives a restart"
    assert again.outbox_len == 5


def test_outbox_batches_follow_a_cursor_and_deletes_forget(tmp_path: Path) -> None:
    state = AgentState(tmp_path, outbox_max=100)
    state.outbox_append(rows(*range(1, 11)))
    first = state.outbox_batch(0, 4)
    assert [row.seq for row in first] == [1, 2, 3, 4]
    assert [row.seq for row in state.outbox_batch(4, 4)] == [5, 6, 7, 8]
    state.outbox_delete([row.seq for row in first])
    assert state.outbox_len == 6
    assert state.outbox_batch(0, 1)[0].sample == b'{"seq":5}'


def test_unusable_state_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "agent-state.db").write_bytes(b"this is not a database" * 100)
    with pytest.raises(StateError, match="agent state"):
        AgentState(tmp_path, outbox_max=10)


def test_epoch_grows_at_every_connect_and_across_restarts(tmp_path: Path) -> None:
    epochs = EpochCounter(tmp_path)
    first = epochs.next(now_ms=1000)
    second = epochs.next(now_ms=1000)  # same millisecond: still grows
    assert second == first + 1
    assert EpochCounter(tmp_path).next(now_ms=5) == second + 1  # clock went back: still grows


def test_epoch_grows_even_if_its_file_is_lost(tmp_path: Path) -> None:
    first = EpochCounter(tmp_path).next(now_ms=2000)
    (tmp_path / "epoch").unlink()
    assert EpochCounter(tmp_path).next(now_ms=3000) > first


# -- seq numbering without a write per sample ------------------------------------------------
def meta_writes(state: AgentState) -> list[str]:
    seen: list[str] = []
    state._db.set_trace_callback(  # counting the statements run
        lambda sql: seen.append(sql) if sql.startswith("INSERT INTO meta") else None
    )
    return seen


def test_numbering_samples_writes_once_per_block_not_per_sample(tmp_path: Path) -> None:
    state = AgentState(tmp_path, outbox_max=100)
    writes = meta_writes(state)
    seqs = [state.next_seq() for _ in range(SEQ_BLOCK + 10)]
    assert seqs == list(range(1, SEQ_BLOCK + 11))
    # Two reservations (the first number, then past the block) of 4 meta rows each.
    assert len(writes) == 2 * 4, writes


def test_seq_is_never_reused_after_a_crash(tmp_path: Path) -> None:
    state = AgentState(tmp_path, outbox_max=100)
    used = [state.next_seq() for _ in range(25)]
    # No close(): a kill -9 stores nothing more than what was already committed.
    again = AgentState(tmp_path, outbox_max=100)
    first = again.next_seq()
    assert first > max(used)
    assert first <= max(used) + SEQ_BLOCK + 3, "the gap is at most one reserved block"


def test_seq_is_never_reused_after_a_crash_while_the_block_could_not_be_renewed(
    tmp_path: Path,
) -> None:
    now = [1_000.0]
    state = AgentState(tmp_path, outbox_max=100, interval_s=1.0, clock=lambda: now[0])
    state.next_seq()  # reserves 1..1+SEQ_BLOCK at t=1000
    now[0] += 5_000.0  # ran 5000 s past its block with a full disk, then was killed
    again = AgentState(tmp_path, outbox_max=100, clock=lambda: now[0])
    assert again.next_seq() > 1 + 5_000, "continues past what the elapsed time could number"


# -- caches follow commits; the journal stays small -------------------------------------------
class _FailingCommit:
    """The real connection, except that COMMIT fails as it does on a full disk."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def execute(self, sql: str, *args: Any) -> Any:
        if sql == "COMMIT":
            raise sqlite3.OperationalError("database or disk is full")
        return self.db.execute(sql, *args)

    def executemany(self, sql: str, rows: Any) -> Any:
        return self.db.executemany(sql, rows)

    @property
    def in_transaction(self) -> bool:
        return self.db.in_transaction


def test_a_failed_commit_leaves_the_outbox_length_and_drop_count_true(tmp_path: Path) -> None:
    state = AgentState(tmp_path, outbox_max=3)
    state.outbox_append(rows(1, 2, 3))
    real = state._db  # injecting a failing COMMIT
    state._db = _FailingCommit(real)  # type: ignore[assignment]
    with pytest.raises(StateError, match="disk is full"):
        state.outbox_delete([1, 2, 3])
    assert state.outbox_len == 3, "the rows are still there: the cache must say so"
    with pytest.raises(StateError):
        state.outbox_append(rows(4, 5))
    assert (state.outbox_len, state.dropped) == (3, 0)
    state._db = real
    assert len(state.outbox_batch(0, 10)) == 3
    assert state.disk_full, "a full disk is reported"


def test_the_journal_stays_bounded_under_steady_sampling(tmp_path: Path) -> None:
    state = AgentState(tmp_path, outbox_max=100_000)
    biggest = 0
    for seq in range(1, 1_501):
        state.outbox_append([OutboxRow(state.next_seq(), b"x" * 1_500)])
        if seq % 3 == 0:
            state.outbox_delete([seq - 2, seq - 1, seq])
        biggest = max(biggest, state.journal_bytes())
    assert biggest <= JOURNAL_LIMIT_BYTES + 64 * 1024, biggest


def test_counted_drops_survive_a_restart(tmp_path: Path) -> None:
    state = AgentState(tmp_path, outbox_max=10)
    state.count_dropped(7)
    state.close()
    assert AgentState(tmp_path, outbox_max=10).dropped == 7


def test_a_full_disk_episode_hands_the_outbox_space_back_to_the_disk(tmp_path: Path) -> None:
    # A file made before incremental vacuum (auto_vacuum NONE) keeps freed pages inside.
    old = sqlite3.connect(tmp_path / "agent-state.db")
    old.execute("PRAGMA journal_mode=WAL")
    old.execute("CREATE TABLE outbox (seq INTEGER PRIMARY KEY, sample BLOB NOT NULL)")
    old.close()
    state = AgentState(tmp_path, outbox_max=100_000)
    state.outbox_append([OutboxRow(seq, b"x" * 2_000) for seq in range(1, 1_001)])
    state.outbox_delete(list(range(1, 1_001)))
    full_size = (tmp_path / "agent-state.db").stat().st_size
    assert full_size > 1_000_000
    state.disk_full = True  # as a failed write leaves it
    assert state.try_recover(), "room again: the episode ends"
    assert not state.disk_full
    assert (tmp_path / "agent-state.db").stat().st_size < full_size // 10
    assert (tmp_path / "agent-state.reserve").stat().st_size == BALLAST_BYTES
    state.outbox_append(rows(1_001))
    assert state.outbox_len == 1
