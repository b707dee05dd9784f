"""Reading the sibling replicas' store files beside this one.

Replicas on one host share the data dir, each with its own ``maestro/<replica>.db``,
and each stores only its share of the metrics (MQTT shared subscriptions hand each
message to one of them). A history asked of any replica must show the whole series,
so its reader connections ATTACH the sibling files read-only and the query reads
every file (:func:`maestro.store.query.query_history` merges their buckets). Command
records and the audit log are read the same way (:func:`schemas_with`): a command another
replica sent, or the audit a failed replica wrote, stays visible. Alerts are not: every
replica evaluates every incident itself, so its own store already holds the whole history.

Siblings are found at each call (a replica started later is picked up; a file that is
gone is detached). A file that cannot be opened or has no sample tables is skipped,
never an error of the query. SQLite attaches at most 10 files by default: past that,
the other siblings are left out (and logged once).
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Final
from urllib.parse import quote

log = logging.getLogger(__name__)

PREFIX: Final = "replica_"
MAX_ATTACHED: Final = 9  # SQLite's default limit is 10 attached files
_warned: set[str] = set()


def sibling_files(own: Path) -> list[Path]:
    """The other ``*.db`` files in the directory of ``own`` (sorted: stable schema names)."""
    try:
        own_resolved = own.resolve()
        found = sorted(p.resolve() for p in own_resolved.parent.glob("*.db"))
    except OSError:
        return []
    return [path for path in found if path != own_resolved]


def attach_siblings(conn: sqlite3.Connection, own: Path) -> list[str]:
    """Attach every sibling file not attached yet; return the schemas to read, ``main`` first.

    Must be called outside a transaction (ATTACH and DETACH refuse to run inside one).
    """
    attached = {
        str(row[1]): str(row[2])
        for row in conn.execute("PRAGMA database_list")
        if str(row[1]).startswith(PREFIX)
    }
    files = sibling_files(own)
    wanted = {str(path) for path in files}
    for schema, file in attached.items():
        if file not in wanted:
            _quietly(conn, f"DETACH DATABASE {schema}")
    attached = {s: f for s, f in attached.items() if f in wanted}
    by_file = {file: schema for schema, file in attached.items()}
    taken = set(attached)
    for path in files:
        if str(path) in by_file:
            continue
        if len(taken) >= MAX_ATTACHED:
            if str(path) not in _warned:
                _warned.add(str(path))
                log.warning("history leaves out replica file=%s: too many replica files", path)
            continue
        schema = next(f"{PREFIX}{i}" for i in range(len(taken) + 1) if f"{PREFIX}{i}" not in taken)
        uri = f"file:{quote(str(path))}?mode=ro"
        if _quietly(conn, "ATTACH DATABASE ? AS " + schema, (uri,)):
            if _has_samples(conn, schema):
                taken.add(schema)
                by_file[str(path)] = schema
            else:
                _quietly(conn, f"DETACH DATABASE {schema}")
    return ["main", *sorted(by_file.values())]


def schemas_with(conn: sqlite3.Connection, own: Path, table: str) -> list[str]:
    """:func:`attach_siblings`, keeping only the schemas that hold ``table`` (``main`` first).

    Writes stay local: the siblings are attached read-only.
    """
    schemas = attach_siblings(conn, own)
    return [schema for schema in schemas if schema == "main" or _has_table(conn, schema, table)]


def _has_table(conn: sqlite3.Connection, schema: str, table: str) -> bool:
    sql = f"SELECT count(*) FROM {schema}.sqlite_master WHERE type = 'table' AND name = ?"  # noqa: S608
    try:
        return int(conn.execute(sql, (table,)).fetchone()[0]) == 1
    except sqlite3.Error:
        return False


def _has_samples(conn: sqlite3.Connection, schema: str) -> bool:
    sql = f"SELECT count(*) FROM {schema}.sqlite_master WHERE name IN ('agents', 'samples')"  # noqa: S608
    try:
        return int(conn.execute(sql).fetchone()[0]) == 2
    except sqlite3.Error:
        return False


def _quietly(conn: sqlite3.Connection, sql: str, params: tuple[str, ...] = ()) -> bool:
    try:
        conn.execute(sql, params)
    except sqlite3.Error as exc:
        log.debug("replica file statement failed sql=%s error=%s", sql[:60], exc)
        return False
    return True
