"""The agent's durable state in one SQLite file (WAL): sequence, command ids, outbox.

Accessed from the agent's event-loop thread only; every operation is a single small
statement (well under a millisecond), so it is not pushed to a thread. A full disk or a
broken file raises :class:`StateError`, which callers count and survive.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from edge_agent.errors import StateError

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


class AgentState:
    """Durable counters, remembered command ids and the bounded metrics outbox."""

    def __init__(self, state_dir: Path, *, outbox_max: int) -> None:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = state_dir / "agent-state.db"
        self.outbox_max = outbox_max
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode survives a process crash (kill -9); only an OS crash can
            # lose the last transactions, and the agent has no fsync per sample.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise StateError(f"cannot open agent state {self.path}: {exc}") from exc
        self.path.chmod(0o600)
        self._seq = self._get("seq")
        self.dropped = self._get("dropped")
        self._outbox_len = self._scalar("SELECT COUNT(*) FROM outbox")

    def close(self) -> None:
        self._db.close()

    # -- counters --------------------------------------------------------------------
    def next_seq(self) -> int:
        """The next sample sequence number; contiguous across restarts."""
        self._seq += 1
        self._set("seq", self._seq)
        return self._seq

    @property
    def last_seq(self) -> int:
        return self._seq

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
        """Store samples; past the bound drop the OLDEST. Returns how many were dropped."""
        if not rows:
            return 0
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
                self.dropped += excess
                self._set("dropped", self.dropped)
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
            self._outbox_len = self._scalar("SELECT COUNT(*) FROM outbox")

    # -- helpers -----------------------------------------------------------------------
    def _get(self, key: str) -> int:
        return self._scalar("SELECT COALESCE(MAX(value), 0) FROM meta WHERE key = ?", key)

    def _set(self, key: str, value: int) -> None:
        with self._errors(f"store {key}"):
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
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:  # disk full, I/O error, corrupt file
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
