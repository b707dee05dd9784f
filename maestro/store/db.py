"""Opening the SQLite file and migrating each component's tables.

Every component (samples, registry, commands, alerts, notifications, the InfluxDB
spool, audit) owns its tables and lists its migrations as plain SQL scripts; the
``schema_versions`` table records how far each component got, so components evolve
independently and a new build upgrades an old file in place.

Connections are used by one thread each (the writer thread, a reader pool, a
component's own worker): ``check_same_thread`` stays on, so a mistake shows at once.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

from maestro.errors import StoreError

BUSY_TIMEOUT_MS = 10_000


def connect(path: Path | str, *, readonly: bool = False) -> sqlite3.Connection:
    """A connection to ``path`` in WAL mode, with the pragmas every component expects.

    ``synchronous=NORMAL`` in WAL mode keeps every committed transaction across a crash
    of the process (only a power loss can lose the last ones), at a fraction of FULL's
    cost. ``isolation_level=None`` leaves transactions to the caller (``BEGIN``/``COMMIT``).
    """
    target = Path(path)
    try:
        if readonly:
            conn = sqlite3.connect(
                f"file:{quote(str(target))}?mode=ro", uri=True, isolation_level=None, timeout=10
            )
        else:
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not target.exists():  # command results and the audit log: owner only
                target.touch(mode=0o600)
            conn = sqlite3.connect(target, isolation_level=None, timeout=10)
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        if not readonly:
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open the store {target}: {exc}") from exc
    return conn


def migrate(conn: sqlite3.Connection, component: str, migrations: Sequence[str]) -> int:
    """Apply ``migrations[version:]`` of ``component``; return the version reached.

    Each entry is one SQL script run in its own transaction together with the version
    bump, so a crash mid-way leaves the file at the previous version, never between.
    A file written by a newer build (more versions than this build knows) is refused.
    """
    try:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_versions ("
            " component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
        )
        row = conn.execute(
            "SELECT version FROM schema_versions WHERE component = ?", (component,)
        ).fetchone()
        current = int(row[0]) if row else 0
        if current > len(migrations):
            raise StoreError(
                f"the store's {component!r} tables are at version {current}, newer than "
                f"this build knows ({len(migrations)}); upgrade Areté or use another data dir"
            )
        for version in range(current, len(migrations)):
            script = migrations[version]
            # executescript() commits first, so run the statements one by one instead.
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in _statements(script):
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_versions (component, version) VALUES (?, ?)"
                    " ON CONFLICT(component) DO UPDATE SET version = excluded.version",
                    (component, version + 1),
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return len(migrations)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot migrate the store's {component!r} tables: {exc}") from exc


def _statements(script: str) -> list[str]:
    """Split a migration script into statements (``sqlite3.complete_statement`` aware)."""
    statements: list[str] = []
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        raise StoreError(f"incomplete SQL statement in a migration: {buffer.strip()[:80]!r}")
    return statements
