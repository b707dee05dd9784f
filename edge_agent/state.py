"""The agent's durable state in one SQLite file (WAL): sequence, command ids, outbox.

Accessed from the agent's event-loop thread only; every operation is a single small
statement (well under a millisecond), so it is not pushed to a thread. A full disk or a
broken file raises :class:`StateError`, which callers count and survive.

A full disk never stops numbering samples (see :class:`SeqBlock`): sequence numbers are
reserved a block at a time, so a sample costs no write. The journal stays bounded
(``wal_autocheckpoint`` and ``journal_size_limit``), and a small ballast file is kept
beside the database: when a write fails for lack of space the ballast is given up, so the
deletes that make room again (acknowledged outbox rows) can still be written. The state
then says :attr:`AgentState.disk_full` until :meth:`AgentState.try_recover` has handed
the space back and remade the ballast.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from edge_agent.errors import StateError
from edge_agent.seq import SEQ_BLOCK, SeqBlock, resume_after

BALLAST_BYTES: Final = 256 * 1024  # room kept for the deletes that free a full disk
RECOVER_FREE_BYTES: Final = 2 * BALLAST_BYTES  # free room that ends a full-disk episode
JOURNAL_LIMIT_BYTES: Final = 256 * 1024  # the WAL is cut back to this after a checkpoint
VACUUM_INCREMENTAL: Final = 2  # PRAGMA auto_vacuum's value for INCREMENTAL
AUTOCHECKPOINT_PAGES: Final = 32  # checkpoint every 32 pages (128 KiB) of WAL

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS command_ids (
    id TEXT PRIMARY KEY, expires_at REAL NOT NULL, received_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY, sample BLOB NOT NULL);
"""


@dataclass(frozen=True, slots=True)
class OutboxRow:
    seq: int
    sample: bytes  # the sample's JSON, exactly as it will be sent


def is_disk_full(exc: BaseException) -> bool:
    if isinstance(exc, sqlite3.Error):
        return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or (
            "disk is full" in str(exc)
        )
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


class AgentState:
    """Durable counters, remembered command ids and the bounded metrics outbox."""

    def __init__(
        self,
        state_dir: Path,
        *,
        outbox_max: int,
        interval_s: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = state_dir / "agent-state.db"
        self.ballast = state_dir / "agent-state.reserve"
        self.outbox_max = outbox_max
        self.disk_full = False
        self._interval_ms = max(1, round(interval_s * 1000))
        self._clock = clock
        try:
            self._db = self._open()
        except sqlite3.Error as first:
            # A disk already full at start: SQLite needs a little room to open (its
            # shared-memory index, recovering a journal). The ballast is that room.
            if not self.ballast.exists():
                raise StateError(f"cannot open agent state {self.path}: {first}") from first
            self.ballast.unlink()
            self.disk_full = True
            try:
                self._db = self._open()
            except sqlite3.Error as exc:
                raise StateError(f"cannot open agent state {self.path}: {exc}") from exc
        self.path.chmod(0o600)
        block = SeqBlock(
            limit=self._get("seq"),
            base=self._get("seq_base"),
            at_ms=self._get("seq_at_ms"),
            interval_ms=self._get("seq_interval_ms") or 1000,
        )
        self._seq = resume_after(block, self._now_ms())
        self._seq_limit = self._seq  # nothing reserved yet: the first sample reserves
        self.dropped = self._get("dropped")
        self._dropped_stored = self.dropped
        self._outbox_len = self._scalar("SELECT COUNT(*) FROM outbox")
        self._make_ballast()

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None)
        try:
            # Incremental: pages freed by deleted outbox rows can be handed back to a
            # full disk (only takes effect on a new file; older files keep their mode).
            db.execute("PRAGMA auto_vacuum=INCREMENTAL")
            db.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode survives a process crash (kill -9); only an OS crash can
            # lose the last transactions, and the agent has no fsync per sample.
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(f"PRAGMA wal_autocheckpoint={AUTOCHECKPOINT_PAGES}")
            db.execute(f"PRAGMA journal_size_limit={JOURNAL_LIMIT_BYTES}")
            db.executescript(_SCHEMA)
        except sqlite3.Error:
            db.close()
            raise
        return db

    def close(self) -> None:
        """Store the exact last seq (a clean restart continues without a gap) and close."""
        with suppress(StateError):
            self._store_seq(SeqBlock(limit=self._seq))
        self._db.close()

    # -- counters --------------------------------------------------------------------
    def next_seq(self) -> int:
        """The next sample sequence number. Never fails, never reused (see SeqBlock).

        A write happens once per :data:`SEQ_BLOCK` numbers; if it fails (full disk) the
        number is handed out all the same, and the reservation is tried again next time.
        """
        self._seq += 1
        if self._seq > self._seq_limit:
            with suppress(StateError):
                self._reserve()
        return self._seq

    @property
    def last_seq(self) -> int:
        return self._seq

    def count_dropped(self, amount: int) -> None:
        """Samples that could not be kept: counted now, stored when possible.

        While the disk is full the count is stored at the end of the episode (or at the
        next block reservation, or at close), not with every lost sample: the room left
        is for the deletes that free the disk.
        """
        self.dropped += amount
        if not self.disk_full:
            with suppress(StateError):
                self._flush_dropped()

    # -- command ids (at-most-once execution) ---------------------------------------------
    def seen_command(self, command_id: str) -> bool:
        return self._scalar("SELECT COUNT(*) FROM command_ids WHERE id = ?", command_id) > 0

    def remember_command(self, command_id: str, expires_at: float, now: float) -> None:
        """Record an id before the command runs, so a redelivery never runs it again."""
        with self._errors("remember command id"):
            self._db.execute(
                "INSERT OR IGNORE INTO command_ids (id, expires_at, received_at) VALUES (?, ?, ?)",
                (command_id, expires_at, now),
            )

    def forget_commands_expired_before(self, cutoff: float) -> int:
        with self._errors("prune command ids"):
            cur = self._db.execute("DELETE FROM command_ids WHERE expires_at < ?", (cutoff,))
        return cur.rowcount

    # -- outbox ------------------------------------------------------------------------
    @property
    def outbox_len(self) -> int:
        return self._outbox_len

    def outbox_append(self, rows: list[OutboxRow]) -> int:
        """Store samples; past the bound drop the OLDEST. Returns how many were dropped.

        While the disk is full nothing is appended (:class:`StateError`): the room left
        is kept for the deletes that free it.
        """
        if not rows:
            return 0
        if self.disk_full:
            raise StateError("agent state: cannot append to outbox: the disk is full")
        with self._errors("append to outbox"), self._transaction():
            self._db.executemany(
                "INSERT OR REPLACE INTO outbox (seq, sample) VALUES (?, ?)",
                [(row.seq, row.sample) for row in rows],
            )
            count = self._scalar("SELECT COUNT(*) FROM outbox")
            excess = max(0, count - self.outbox_max)
            if excess:
                self._db.execute(
                    "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox ORDER BY seq LIMIT ?)",
                    (excess,),
                )
            dropped = self.dropped + excess
            if dropped != self._dropped_stored:
                self._set("dropped", dropped)
        # Committed: only now do the cached figures change.
        self.dropped = self._dropped_stored = dropped
        self._outbox_len = count - excess
        return excess

    def outbox_batch(self, after_seq: int, limit: int) -> list[OutboxRow]:
        """The oldest stored samples with ``seq > after_seq``, in order."""
        with self._errors("read outbox"):
            cur = self._db.execute(
                "SELECT seq, sample FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
                (after_seq, limit),
            )
            return [OutboxRow(seq, bytes(sample)) for seq, sample in cur.fetchall()]

    def outbox_delete(self, seqs: list[int]) -> None:
        """Forget samples the broker has acknowledged."""
        if not seqs:
            return
        with self._errors("delete from outbox"), self._transaction():
            self._db.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in seqs])
            count = self._scalar("SELECT COUNT(*) FROM outbox")
        self._outbox_len = count  # after COMMIT: a failed commit leaves the cache right

    def outbox_delete_ranges(self, ranges: list[tuple[int, int]]) -> None:
        """Forget samples the maestro confirmed stored: ``(first, last)`` seq ranges."""
        if not ranges or not self._outbox_len:
            return
        with self._errors("delete from outbox"), self._transaction():
            self._db.executemany("DELETE FROM outbox WHERE seq BETWEEN ? AND ?", ranges)
            count = self._scalar("SELECT COUNT(*) FROM outbox")
        self._outbox_len = count

    # -- full disk ---------------------------------------------------------------------
    def try_recover(self) -> bool:
        """After a full disk: hand freed pages back, remake the ballast. True when done.

        Called now and then (not per sample) while :attr:`disk_full` holds; the flag
        clears only once there is room for the ballast and as much again for the outbox
        (else giving up the ballast and taking it back would go round every few seconds).
        """
        if not self.disk_full:
            return True
        try:
            with self._errors("checkpoint"):
                if (
                    self._outbox_len == 0
                    and self._scalar("PRAGMA auto_vacuum") != VACUUM_INCREMENTAL
                ):
                    # A file made before incremental vacuum: with the outbox empty it is
                    # small, so rewrite it once in the mode that can hand pages back.
                    self._db.execute("PRAGMA auto_vacuum=INCREMENTAL")
                    self._db.execute("VACUUM")
                self._db.execute("PRAGMA incremental_vacuum")
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._flush_dropped()
            if self._seq > self._seq_limit:
                self._reserve()
        except StateError:
            return False
        if self._free_bytes() < RECOVER_FREE_BYTES:
            return False
        self.disk_full = False
        if not self._make_ballast():
            self.disk_full = True
        return not self.disk_full

    def _free_bytes(self) -> int:
        try:
            st = os.statvfs(self.path.parent)
        except OSError:
            return 0
        return st.f_bavail * st.f_frsize

    def journal_bytes(self) -> int:
        try:
            return self.path.with_name(self.path.name + "-wal").stat().st_size
        except FileNotFoundError:
            return 0

    # -- helpers -----------------------------------------------------------------------
    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _reserve(self) -> None:
        """Store a block of numbers after the current one (one write per block)."""
        block = SeqBlock(
            limit=self._seq + SEQ_BLOCK,
            base=self._seq,
            at_ms=self._now_ms(),
            interval_ms=self._interval_ms,
        )
        self._store_seq(block)
        self._seq_limit = block.limit

    def _store_seq(self, block: SeqBlock) -> None:
        with self._errors("store seq"), self._transaction():
            self._set("seq", block.limit)
            self._set("seq_base", block.base)
            self._set("seq_at_ms", block.at_ms)
            self._set("seq_interval_ms", block.interval_ms)
            if self.dropped != self._dropped_stored:
                self._set("dropped", self.dropped)
        self._dropped_stored = self.dropped

    def _flush_dropped(self) -> None:
        if self.dropped != self._dropped_stored:
            dropped = self.dropped
            with self._errors("store dropped"):
                self._set("dropped", dropped)
            self._dropped_stored = dropped

    def _make_ballast(self) -> bool:
        """Write the ballast file if it is missing; False when there is no room for it."""
        try:
            if self.ballast.exists() and self.ballast.stat().st_size >= BALLAST_BYTES:
                return True
            with self.ballast.open("wb") as out:
                out.write(b"\0" * BALLAST_BYTES)
            self.ballast.chmod(0o600)
        except OSError as exc:
            with suppress(OSError):
                self.ballast.unlink()
            if is_disk_full(exc):
                self.disk_full = True
            return False
        return True

    def _on_disk_full(self) -> None:
        self.disk_full = True
        with suppress(OSError):
            self.ballast.unlink()  # the room the freeing deletes need

    def _get(self, key: str) -> int:
        return self._scalar("SELECT COALESCE(MAX(value), 0) FROM meta WHERE key = ?", key)

    def _set(self, key: str, value: int) -> None:
        self._db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def _scalar(self, sql: str, *params: object) -> int:
        with self._errors("query state"):
            row = self._db.execute(sql, params).fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
        try:
            self._db.execute("COMMIT")
        except sqlite3.Error:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:  # disk full, I/O error, corrupt file
            if is_disk_full(exc):
                self._on_disk_full()
            raise StateError(f"agent state: cannot {what}: {exc}") from exc


class EpochCounter:
    """The connection epoch, persisted in its own small file.

    Used from the MQTT network thread at every connect. The next epoch is
    ``max(previous + 1, now in ms)``: it grows even if the file is lost, as long as
    the clock does not go back.
    """

    def __init__(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = state_dir / "epoch"
        try:
            self._last = int(self.path.read_text().strip() or 0)
        except (FileNotFoundError, ValueError):
            self._last = 0

    @property
    def current(self) -> int:
        return self._last

    def next(self, now_ms: int) -> int:
        self._last = max(self._last + 1, now_ms)
        tmp = self.path.with_suffix(".tmp")
        try:
            tmp.write_text(str(self._last))
            tmp.replace(self.path)
        except OSError:
            # A full disk must not keep the agent offline: the clock part keeps epochs
            # growing; the file catches up at the next successful write.
            pass
        return self._last
