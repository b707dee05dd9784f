"""Where an agent's sample numbering continues after a stop or a crash, and what counts
as a full disk (pure functions of edge_agent.seq and edge_agent.state)."""

from __future__ import annotations

import errno
import sqlite3

from edge_agent.seq import SEQ_BLOCK, SeqBlock, resume_after
from edge_agent.state import is_disk_full


def test_after_a_clean_close_numbering_continues_exactly() -> None:
    assert resume_after(SeqBlock(limit=42), now_ms=10**12) == 42


def test_after_a_crash_numbering_continues_past_the_reserved_block() -> None:
    block = SeqBlock(limit=100 + SEQ_BLOCK, base=100, at_ms=1_000_000, interval_ms=1000)
    assert resume_after(block, now_ms=1_000_000 + 10_000) == 100 + SEQ_BLOCK


def test_after_a_crash_past_its_block_numbering_continues_past_what_time_allowed() -> None:
    # The block ran out while the disk was full: no new one could be stored.
    block = SeqBlock(limit=700, base=100, at_ms=1_000_000, interval_ms=500)
    assert resume_after(block, now_ms=1_000_000 + 1_000_000) == 100 + 2_000 + 2


def test_a_clock_that_went_back_keeps_the_block() -> None:
    block = SeqBlock(limit=700, base=100, at_ms=1_000_000, interval_ms=500)
    assert resume_after(block, now_ms=0) == 700


def test_full_disk_errors_are_told_from_other_failures() -> None:
    full = sqlite3.OperationalError("database or disk is full")
    assert is_disk_full(full)
    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert not is_disk_full(sqlite3.OperationalError("database is locked"))
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied"))
