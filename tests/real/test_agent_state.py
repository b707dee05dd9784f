"""The agent's SQLite state: contiguous seq, remembered ids, bounded outbox (real files)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.errors import StateError
from edge_agent.state import AgentState, EpochCounter, OutboxRow


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
