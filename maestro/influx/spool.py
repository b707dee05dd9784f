"""The durable spool between the store and the InfluxDB sink.

The store's writer thread calls :meth:`InfluxSpool.stage` inside the transaction that
stores a batch of samples, so a sample is in the store and in the spool, or in neither.
The sink (its own connection, its own thread) reads the oldest spool rows, writes them
and deletes them only once the server answered 2xx: a crash or an outage of any length
loses nothing, up to ``max_spool_rows`` lines; past that the OLDEST lines are dropped
(and counted) so the newest history survives.

Each spool row holds up to ``batch_lines`` lines joined by ``\\n``. Triggers keep the
pending totals in a one-row table, so neither side ever counts the spool by scanning it.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from maestro.influx.lineproto import LineEncoder
from maestro.influx.settings import InfluxSettings
from maestro.store.rows import SampleRow

log = logging.getLogger(__name__)

COMPONENT: Final = "influx"
MIGRATIONS: Final[list[str]] = [
    """
    CREATE TABLE influx_spool (
        id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: the sink deletes by range
        lines TEXT NOT NULL,
        n INTEGER NOT NULL
    );
    CREATE TABLE influx_spool_totals (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        row_count INTEGER NOT NULL,
        line_count INTEGER NOT NULL,
        dropped_lines INTEGER NOT NULL
    );
    INSERT INTO influx_spool_totals (id, row_count, line_count, dropped_lines) VALUES (1, 0, 0, 0);
    CREATE TRIGGER influx_spool_added AFTER INSERT ON influx_spool BEGIN
        UPDATE influx_spool_totals
        SET row_count = row_count + 1, line_count = line_count + NEW.n WHERE id = 1;
    END;
    CREATE TRIGGER influx_spool_removed AFTER DELETE ON influx_spool BEGIN
        UPDATE influx_spool_totals
        SET row_count = row_count - 1, line_count = line_count - OLD.n WHERE id = 1;
    END;
    """,
]
DROP_LOG_EVERY_S: Final = 60.0


@dataclass(frozen=True, slots=True)
class SpoolTotals:
    rows: int
    lines: int
    dropped_lines: int


@dataclass(frozen=True, slots=True)
class SpoolBatch:
    """The oldest pending spool rows ``first_id..last_id``, as one write body."""

    first_id: int
    last_id: int
    rows: int
    lines: int
    body: str


def read_totals(conn: sqlite3.Connection) -> SpoolTotals:
    row = conn.execute(
        "SELECT row_count, line_count, dropped_lines FROM influx_spool_totals"
    ).fetchone()
    return SpoolTotals(int(row[0]), int(row[1]), int(row[2])) if row else SpoolTotals(0, 0, 0)


def oldest_batch(conn: sqlite3.Connection, max_lines: int) -> SpoolBatch | None:
    """The oldest spool rows holding at most ``max_lines`` lines (at least one row)."""
    parts: list[str] = []
    first_id = last_id = 0
    total = 0
    # Every spool row holds at least one line, so max_lines rows always suffice.
    cursor = conn.execute(
        "SELECT id, lines, n FROM influx_spool ORDER BY id LIMIT ?", (max(1, max_lines),)
    )
    for spool_id, lines, count in cursor:
        if parts and total + count > max_lines:
            break
        if not parts:
            first_id = spool_id
        parts.append(lines)
        last_id = spool_id
        total += count
    cursor.close()
    if not parts:
        return None
    return SpoolBatch(first_id, last_id, len(parts), total, "\n".join(parts))


def delete_batch(conn: sqlite3.Connection, first_id: int, last_id: int) -> None:
    """Remove a written batch (ids are never reused, so the range holds only its rows)."""
    conn.execute("DELETE FROM influx_spool WHERE id BETWEEN ? AND ?", (first_id, last_id))


class InfluxSpool:
    """The store's stager for the sink: ``stage(conn, rows)`` in the writer's transaction."""

    def __init__(self, settings: InfluxSettings) -> None:
        self.batch_lines = settings.batch_lines
        self.max_lines = settings.max_spool_rows
        self._encoder = LineEncoder(settings.measurement)
        self._dropped_since_log = 0
        self._last_drop_log = -DROP_LOG_EVERY_S

    def stage(self, conn: sqlite3.Connection, rows: Sequence[SampleRow]) -> None:
        """Spool the lines of ``rows`` (newly stored) inside the caller's transaction."""
        lines = self._encoder.lines(rows)
        if not lines:
            return
        step = self.batch_lines
        chunks = [lines[start : start + step] for start in range(0, len(lines), step)]
        conn.executemany(
            "INSERT INTO influx_spool (lines, n) VALUES (?, ?)",
            [("\n".join(chunk), len(chunk)) for chunk in chunks],
        )
        pending = conn.execute("SELECT line_count FROM influx_spool_totals").fetchone()[0]
        if pending > self.max_lines:
            self._drop_oldest(conn, pending - self.max_lines)

    def _drop_oldest(self, conn: sqlite3.Connection, excess: int) -> None:
        dropped = 0
        last_id: int | None = None
        cursor = conn.execute("SELECT id, n FROM influx_spool ORDER BY id")
        for spool_id, count in cursor:
            dropped += count
            last_id = spool_id
            if dropped >= excess:
                break
        cursor.close()
        if last_id is None:
            return
        conn.execute("DELETE FROM influx_spool WHERE id <= ?", (last_id,))
        conn.execute(
            "UPDATE influx_spool_totals SET dropped_lines = dropped_lines + ? WHERE id = 1",
            (dropped,),
        )
        self._dropped_since_log += dropped
        now = time.monotonic()
        if now - self._last_drop_log >= DROP_LOG_EVERY_S:
            log.warning(
                "influx spool full: dropped the oldest lines to keep the newest",
                extra={
                    "kv": {
                        "dropped_lines": self._dropped_since_log,
                        "max_spool_rows": self.max_lines,
                    }
                },
            )
            self._dropped_since_log = 0
            self._last_drop_log = now
