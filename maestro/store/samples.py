"""Raw samples: their tables, agent name -> id resolution, and one batch's insert.

Samples are the one hot table of the store (tens of thousands of rows a second), so
the layout is lean: agents are small integers (``agents``), a sample is one row of
REALs, ``UNIQUE(agent_id, seq)`` makes a redelivered sample a no-op, and
``(agent_id, ts)`` serves history queries and retention. Beside the agent's own ``ts``
each row keeps ``rx_ts``, the maestro's clock when the sample arrived (NULL for rows
stored before it existed): the agent's clock may be off, its offset is ``rx_ts - ts``.

Everything here runs inside a transaction the caller opened (the writer thread).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from typing import Any, Final, Protocol

from maestro.store.rollup import update_rollups
from maestro.store.rows import FIELDS, HEAD, SampleRow

ROW_LEN: Final = len(HEAD) + len(FIELDS)

# Component "agents": the name -> id table every other table refers to.
AGENTS_MIGRATIONS: Final[tuple[str, ...]] = (
    """
    CREATE TABLE agents (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE
    );
    """,
)

# Component "samples". Migrations are frozen once released: a new field in rows.FIELDS
# needs a new entry here (ALTER TABLE ... ADD COLUMN), and a test checks they agree.
# No foreign key on samples.agent_id: the check would cost a lookup per inserted row,
# and the writer resolves ids from the agents table itself.
SAMPLES_MIGRATIONS: Final[tuple[str, ...]] = (
    """
    CREATE TABLE samples (
        agent_id INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        ts REAL NOT NULL,
        epoch INTEGER NOT NULL,
        cpu REAL, mem REAL, swap REAL, disk REAL, load1 REAL,
        net_rx_bps REAL, net_tx_bps REAL, disk_read_bps REAL, disk_write_bps REAL,
        procs REAL, gpu_util REAL, temp_max REAL
    );
    CREATE UNIQUE INDEX samples_agent_seq ON samples (agent_id, seq);
    CREATE INDEX samples_agent_ts ON samples (agent_id, ts);
    CREATE TABLE rollup_1m (
        agent_id INTEGER NOT NULL,
        minute INTEGER NOT NULL,
        n INTEGER NOT NULL,
        cpu_n INTEGER NOT NULL, cpu_min REAL, cpu_sum REAL NOT NULL, cpu_max REAL,
        mem_n INTEGER NOT NULL, mem_min REAL, mem_sum REAL NOT NULL, mem_max REAL,
        swap_n INTEGER NOT NULL, swap_min REAL, swap_sum REAL NOT NULL, swap_max REAL,
        disk_n INTEGER NOT NULL, disk_min REAL, disk_sum REAL NOT NULL, disk_max REAL,
        load1_n INTEGER NOT NULL, load1_min REAL, load1_sum REAL NOT NULL, load1_max REAL,
        net_rx_bps_n INTEGER NOT NULL, net_rx_bps_min REAL, net_rx_bps_sum REAL NOT NULL,
        net_rx_bps_max REAL,
        net_tx_bps_n INTEGER NOT NULL, net_tx_bps_min REAL, net_tx_bps_sum REAL NOT NULL,
        net_tx_bps_max REAL,
        disk_read_bps_n INTEGER NOT NULL, disk_read_bps_min REAL,
        disk_read_bps_sum REAL NOT NULL, disk_read_bps_max REAL,
        disk_write_bps_n INTEGER NOT NULL, disk_write_bps_min REAL,
        disk_write_bps_sum REAL NOT NULL, disk_write_bps_max REAL,
        procs_n INTEGER NOT NULL, procs_min REAL, procs_sum REAL NOT NULL, procs_max REAL,
        gpu_util_n INTEGER NOT NULL, gpu_util_min REAL, gpu_util_sum REAL NOT NULL,
        gpu_util_max REAL,
        temp_max_n INTEGER NOT NULL, temp_max_min REAL, temp_max_sum REAL NOT NULL,
        temp_max_max REAL,
        PRIMARY KEY (minute, agent_id)
    ) WITHOUT ROWID;
    CREATE INDEX rollup_1m_agent ON rollup_1m (agent_id, minute);
    """,
    # 2: the maestro's receive time beside the agent's own ts (agents' clocks may be
    # wrong), and away with rows stamped more than a day ahead, which older builds
    # took (a forged year-2100 sample outlived retention and stayed "latest").
    """
    ALTER TABLE samples ADD COLUMN rx_ts REAL;
    DELETE FROM samples WHERE ts > CAST(strftime('%s', 'now') AS REAL) + 86400;
    DELETE FROM rollup_1m WHERE minute > CAST(strftime('%s', 'now') AS INTEGER) + 86400;
    """,
)

INSERT_SAMPLES: Final = (
    f"INSERT OR IGNORE INTO samples (agent_id, seq, ts, epoch, {', '.join(FIELDS)}, rx_ts)"  # noqa: S608
    f" VALUES ({', '.join('?' * (ROW_LEN + 1))})"
)


class Stager(Protocol):
    """Something that must hold every new sample in the same transaction as the store.

    The InfluxDB spool is one: it writes the rows to its own table with ``conn``, so a
    sample is in the store and the spool, or in neither. It is called with the NEW rows
    of a batch only (a redelivered sample is not staged twice). Raising rolls the whole
    batch back; the writer retries it.
    """

    def stage(self, conn: sqlite3.Connection, rows: Sequence[SampleRow]) -> None: ...


# -- agent ids ---------------------------------------------------------------------------
class AgentIds:
    """The writer thread's cache of ``agents``: name -> id, without a query per row.

    Ids created in a transaction that is rolled back do not exist afterwards, so the
    writer calls :meth:`rollback` after a failed transaction and :meth:`commit` after a
    good one.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self._ids: dict[str, int] = {}
        self._uncommitted: list[str] = []

    def resolve(self, name: str) -> int:
        found = self._ids.get(name)
        if found is not None:
            return found
        agent_id, created = _select_or_insert(self.conn, name)
        self._ids[name] = agent_id
        if created:
            self._uncommitted.append(name)
        return agent_id

    def ids(self) -> dict[str, int]:
        """The cache itself, for the hot loop (read it; resolve misses with resolve())."""
        return self._ids

    def commit(self) -> None:
        self._uncommitted.clear()

    def rollback(self) -> None:
        for name in self._uncommitted:
            self._ids.pop(name, None)
        self._uncommitted.clear()


_bound = threading.local()


def bind_agent_ids(conn: sqlite3.Connection) -> AgentIds:
    """Make this thread's :func:`agent_id` calls on ``conn`` share one cache."""
    cache = AgentIds(conn)
    _bound.cache = cache
    return cache


def agent_id(conn: sqlite3.Connection, name: str) -> int:
    """The id of agent ``name``, created if new. Call inside a write transaction.

    On the writer thread this goes through the writer's cache, so the registry and the
    sample batches agree on ids and rolled-back ids are forgotten by both.
    """
    cache: AgentIds | None = getattr(_bound, "cache", None)
    if cache is not None and cache.conn is conn:
        return cache.resolve(name)
    return _select_or_insert(conn, name)[0]


def find_agent_id(conn: sqlite3.Connection, name: str) -> int | None:
    """The id of agent ``name``, or None when it never sent anything (for readers)."""
    row = conn.execute("SELECT id FROM agents WHERE name = ?", (name,)).fetchone()
    return int(row[0]) if row else None


def _select_or_insert(conn: sqlite3.Connection, name: str) -> tuple[int, bool]:
    row = conn.execute("SELECT id FROM agents WHERE name = ?", (name,)).fetchone()
    if row is not None:
        return int(row[0]), False
    cursor = conn.execute("INSERT INTO agents (name) VALUES (?)", (name,))
    assert cursor.lastrowid is not None  # noqa: S101 - an INSERT into a rowid table has one
    return cursor.lastrowid, True


# -- one batch ---------------------------------------------------------------------------
def check_rows(rows: Sequence[SampleRow]) -> None:
    """Refuse a malformed row at submit time: inside a batch it would fail for ever."""
    for row in rows:
        if (
            len(row) != ROW_LEN
            or not isinstance(row[0], str)
            or type(row[1]) is not int
            or type(row[3]) is not int
            or not isinstance(row[2], int | float)
        ):
            raise ValueError(
                f"not a sample row (agent, seq, ts, epoch, {len(FIELDS)} values): {row!r:.200}"
            )


def store_batch(
    conn: sqlite3.Connection,
    agent_ids: AgentIds,
    rows: Sequence[SampleRow],
    stagers: Sequence[Stager] = (),
    rx_ts: Sequence[float | None] | None = None,
) -> int:
    """Insert ``rows`` (once each), fold the new ones into the rollups, stage them.

    ``rx_ts`` holds the maestro's receive time of each row (NULL where None). Returns
    how many rows were new. Runs inside the caller's transaction. The rows a
    transaction inserts into a rowid table all get rowids above the largest one before
    it, which is how the new rows are told from the ignored duplicates.
    """
    if not rows:
        return 0
    before: int = conn.execute("SELECT coalesce(max(rowid), 0) FROM samples").fetchone()[0]
    known = agent_ids.ids()
    resolve = agent_ids.resolve
    received = rx_ts if rx_ts is not None else [None] * len(rows)
    data = [
        (known[row[0]] if row[0] in known else resolve(row[0]), *row[1:], rx)
        for row, rx in zip(rows, received, strict=True)
    ]
    changes = conn.total_changes
    conn.executemany(INSERT_SAMPLES, data)
    inserted = conn.total_changes - changes
    if inserted == 0:
        return 0
    update_rollups(conn, before)
    if stagers:
        new_rows = rows if inserted == len(rows) else _new_rows(conn, before, rows, data)
        for stager in stagers:
            stager.stage(conn, new_rows)
    return inserted


def _new_rows(
    conn: sqlite3.Connection,
    before: int,
    rows: Sequence[SampleRow],
    data: Sequence[tuple[Any, ...]],
) -> list[SampleRow]:
    """The rows of this batch that were inserted (first of in-batch duplicates)."""
    inserted = set(
        conn.execute("SELECT agent_id, seq FROM samples NOT INDEXED WHERE rowid > ?", (before,))
    )
    new_rows: list[SampleRow] = []
    for row, stored in zip(rows, data, strict=True):
        key = (stored[0], stored[1])
        if key in inserted:
            inserted.discard(key)
            new_rows.append(row)
    return new_rows
