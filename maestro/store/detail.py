"""Per-item readings ("detail"): their names, their tables, and how a batch stores them.

A sample carries more than the stored columns of :mod:`maestro.store.rows`: one value
per core, per mount, per sensor and per GPU, plus uptime, memory bytes, load 5/15 and
disk operations. Their names are flat keys (``cpu.3``, ``mount:/data``, ``temp:nvme``,
``gpu.0.util``; see :func:`detail_items`) and their number varies by machine, so they
are not columns: each new sample gets ONE row in ``detail`` whose ``data`` packs every
value of that sample (key ids as uint32, values as float32: 8 bytes a value). One row a
sample keeps the ingest cost near that of the sample itself: one more ``executemany``
per batch, no per-key row. Key names live once in ``detail_keys``.

The rows are written by :class:`DetailStager`, a store *stager*: the writer hands it
the NEW rows of each batch inside the batch's transaction, so a sample's detail is
stored exactly when the sample is, and a redelivered sample adds nothing. The ingest
:meth:`~DetailStager.hold` s each message's samples until its ``on_stored`` runs. A
machine sends the same keys every second, so their ids are packed once per key set
(:func:`~maestro.store.rows.detail_signature`) and only the values per sample.

Each (agent, minute) that got new rows is marked in ``detail_dirty`` with the rowid of
its first row not in the rollups yet (rowids grow with each insert): the fold
(:mod:`maestro.store.detail_rollup`) rolls up exactly those rows, a minute at a time.

Minute rollups and retention of these rows: :mod:`maestro.store.detail_rollup`.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Final

from arete.payloads import Sample
from maestro.store.detail_rollup import MINUTE
from maestro.store.packing import pack_ids, pack_values
from maestro.store.rows import SampleRow, detail_items, detail_numbers, detail_signature
from maestro.store.samples import agent_id

DETAIL_MIGRATIONS: Final[tuple[str, ...]] = (
    """
    CREATE TABLE detail_keys (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE
    );
    CREATE TABLE detail (
        agent_id INTEGER NOT NULL,
        ts REAL NOT NULL,
        data BLOB NOT NULL
    );
    CREATE INDEX detail_agent_ts ON detail (agent_id, ts);
    CREATE TABLE detail_1m (
        agent_id INTEGER NOT NULL,
        minute INTEGER NOT NULL,
        data BLOB NOT NULL
    );
    CREATE UNIQUE INDEX detail_1m_agent_minute ON detail_1m (agent_id, minute);
    CREATE TABLE detail_dirty (
        agent_id INTEGER NOT NULL,
        minute INTEGER NOT NULL,
        first INTEGER NOT NULL,
        PRIMARY KEY (agent_id, minute)
    ) WITHOUT ROWID;
    """,
    # 2: files made by a development build of 1 (with a fold watermark instead of marks).
    """
    CREATE TABLE IF NOT EXISTS detail_dirty (
        agent_id INTEGER NOT NULL,
        minute INTEGER NOT NULL,
        first INTEGER NOT NULL,
        PRIMARY KEY (agent_id, minute)
    ) WITHOUT ROWID;
    DROP TABLE IF EXISTS detail_fold;
    """,
)
"""Component "detail". ``detail_dirty.first``: the minute's first rowid not rolled up."""

SIGNATURES_MAX: Final = 100_000  # cached key sets; cleared past this (a flood of names)

# Every name detail_items() makes, and the prefix patterns a query may ask for.
_DETAIL_NAME: Final = re.compile(
    r"(cpu\.\d{1,5}|(mount|mount_used|mount_total|temp):.{1,256}"
    r"|gpu\.\d{1,5}\.(util|mem|temp|power)"
    r"|uptime_s|mem_used|mem_total|load5|load15|disk_read_iops|disk_write_iops)",
    re.DOTALL,
)
DETAIL_PATTERNS: Final = ("cpu.*", "mount:*", "mount_used:*", "mount_total:*", "temp:*", "gpu.*")
"""Patterns a history query may name for a whole family (plus ``*`` for everything)."""


def is_detail_name(name: str) -> bool:
    return _DETAIL_NAME.fullmatch(name) is not None


class KeyIds:
    """``detail_keys`` name -> id, cached.

    The writer does not tell a stager whether its transaction committed, so the ids
    made by one call are checked at the start of the next (:meth:`check`): one that a
    rollback undid is forgotten, never reused for another name's values.
    """

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}
        self._uncommitted: list[str] = []

    def resolve(self, conn: sqlite3.Connection, name: str) -> int:
        found = self._ids.get(name)
        if found is not None:
            return found
        row = conn.execute("SELECT id FROM detail_keys WHERE name = ?", (name,)).fetchone()
        if row is None:
            cursor = conn.execute("INSERT INTO detail_keys (name) VALUES (?)", (name,))
            assert cursor.lastrowid is not None  # noqa: S101 - a rowid table's INSERT has one
            self._uncommitted.append(name)
            key_id = cursor.lastrowid
        else:
            key_id = int(row[0])
        self._ids[name] = key_id
        return key_id

    def check(self, conn: sqlite3.Connection) -> bool:
        """Forget the ids made last time that are not in the file (rolled back); say if any."""
        forgot = False
        for name in self._uncommitted:
            row = conn.execute("SELECT id FROM detail_keys WHERE name = ?", (name,)).fetchone()
            if row is None or int(row[0]) != self._ids.get(name):
                self._ids.pop(name, None)
                forgot = True
        self._uncommitted.clear()
        return forgot


def key_names(conn: sqlite3.Connection, schema: str = "main") -> dict[int, str]:
    """Every key id of one store file and its name (for readers)."""
    sql = f"SELECT id, name FROM {schema}.detail_keys"  # noqa: S608 - schema from PRAGMA
    return {int(key_id): str(name) for key_id, name in conn.execute(sql)}


class DetailStager:
    """Stores the detail of each NEW sample, in the transaction that stores the sample.

    The ingest calls :meth:`hold` with a message's samples before submitting its rows
    and :meth:`release` once they are stored (``on_stored``); the writer calls
    :meth:`stage` with the new rows of each batch. A row without held samples (a
    client that submits rows itself) simply has no detail.
    """

    def __init__(self) -> None:
        self._held: dict[tuple[str, int], Sample] = {}
        self._keys = KeyIds()
        self._packed_ids: dict[tuple[object, ...], bytes] = {}
        self.rows_staged = 0

    def hold(self, agent: str, samples: Iterable[Sample]) -> None:
        """Keep ``samples`` of ``agent`` until :meth:`release` (any thread)."""
        held = self._held
        for sample in samples:
            held[(agent, sample.seq)] = sample

    def release(self, agent: str, seqs: Iterable[int]) -> None:
        held = self._held
        for seq in seqs:
            held.pop((agent, seq), None)

    @property
    def held(self) -> int:
        return len(self._held)

    def stage(self, conn: sqlite3.Connection, rows: Sequence[SampleRow]) -> None:
        held = self._held
        packed_ids = self._packed_ids
        if self._keys.check(conn) or len(packed_ids) > SIGNATURES_MAX:
            packed_ids.clear()  # an id was rolled back: pack every key set afresh
        data: list[tuple[int, float, bytes]] = []
        agent_ids: dict[str, int] = {}
        for row in rows:
            sample = held.get((row[0], row[1]))
            if sample is None:
                continue
            signature = detail_signature(sample)
            ids = packed_ids.get(signature)
            if ids is None:
                ids = packed_ids[signature] = self._pack_names(conn, sample)
            agent = agent_ids.get(row[0])
            if agent is None:  # the writer's cached id (the sample row was just stored)
                agent = agent_ids[row[0]] = agent_id(conn, row[0])
            data.append((agent, row[2], ids + pack_values(detail_numbers(sample))))
        if not data:
            return
        before = conn.execute("SELECT coalesce(max(rowid), 0) FROM detail").fetchone()[0]
        conn.executemany("INSERT INTO detail (agent_id, ts, data) VALUES (?, ?, ?)", data)
        # A transaction's inserts get the rowids after the largest one, in order.
        dirty: dict[tuple[int, int], int] = {}
        for offset, (agent, ts, _) in enumerate(data, start=before + 1):
            dirty.setdefault((agent, int(ts / MINUTE) * MINUTE), offset)
        conn.executemany(
            "INSERT OR IGNORE INTO detail_dirty (agent_id, minute, first) VALUES (?, ?, ?)",
            [(agent, minute, first) for (agent, minute), first in dirty.items()],
        )
        self.rows_staged += len(data)

    def _pack_names(self, conn: sqlite3.Connection, sample: Sample) -> bytes:
        return pack_ids([self._keys.resolve(conn, name) for name, _ in detail_items(sample)])
