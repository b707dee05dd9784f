"""The audit log: who did what to which target, and when.

Every action a person or a script takes through the maestro (issuing a command,
acknowledging or silencing an alert, adding an agent) is appended here. Entries are
never changed; the log is read newest first, a page at a time (``before_id``).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from maestro.errors import StoreError
from maestro.store.query import check_limit

# Component "audit".
AUDIT_MIGRATIONS: Final[tuple[str, ...]] = (
    """
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        ts REAL NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL DEFAULT '',
        detail TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX audit_actor ON audit (actor, id);
    CREATE INDEX audit_target ON audit (target, id);
    CREATE INDEX audit_ts ON audit (ts);
    """,
)

MAX_DETAIL_BYTES: Final = 64 * 1024


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    ts: float
    actor: str  # user name, "api-token:<name>", or "maestro" for its own actions
    action: str  # e.g. "command.issue", "alert.ack", "agent.add"
    target: str  # e.g. an agent id, an alert id
    detail: dict[str, Any]


def add_audit(
    conn: sqlite3.Connection,
    *,
    ts: float,
    actor: str,
    action: str,
    target: str = "",
    detail: dict[str, Any] | None = None,
) -> int:
    """Append one entry (in a write transaction); return its id.

    ``detail`` must be JSON-ready and must not carry secrets (tokens, passwords): the
    audit log is shown to every operator.
    """
    if not actor or not action:
        raise StoreError("an audit entry needs an actor and an action")
    try:
        text = json.dumps(detail or {}, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"audit detail of {action!r} is not JSON: {exc}") from exc
    if len(text) > MAX_DETAIL_BYTES:
        raise StoreError(
            f"audit detail of {action!r} is {len(text)} bytes, over {MAX_DETAIL_BYTES}"
        )
    cursor = conn.execute(
        "INSERT INTO audit (ts, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)",
        (ts, actor, action, target, text),
    )
    assert cursor.lastrowid is not None  # noqa: S101 - an INSERT into a rowid table has one
    return cursor.lastrowid


def list_audit(
    conn: sqlite3.Connection,
    *,
    actor: str | None = None,
    target: str | None = None,
    since: float | None = None,
    limit: int = 100,
    before_id: int | None = None,
    before_ts: float | None = None,
    schemas: Sequence[str] = ("main",),
) -> list[AuditEntry]:
    """Entries newest first (by time, then id), from every one of ``schemas`` (own store
    and the sibling replicas' files, merged).

    The next page is ``before_ts=<ts>&before_id=<id>`` of the last entry of this page (ids
    are per store file, so over several files the time is the cursor); ``before_id``
    alone pages by id in each file, as one store alone did.
    """
    check_limit(limit)
    where: list[str] = []
    params: list[Any] = []
    for column, value in (("actor", actor), ("target", target)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if since is not None:
        where.append("ts >= ?")
        params.append(since)
    if before_ts is not None:
        where.append("(ts, id) < (?, ?)")
        params.extend((before_ts, before_id if before_id is not None else 2**63 - 1))
    elif before_id is not None:
        where.append("id < ?")
        params.append(before_id)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    found: list[AuditEntry] = []
    for schema in schemas:
        rows = conn.execute(
            f"SELECT id, ts, actor, action, target, detail FROM {schema}.audit {clause}"  # noqa: S608 - fixed clauses
            " ORDER BY ts DESC, id DESC LIMIT ?",
            (*params, limit),
        )
        found.extend(
            AuditEntry(id=id_, ts=ts, actor=who, action=what, target=on, detail=json.loads(text))
            for (id_, ts, who, what, on, text) in rows
        )
    found.sort(key=lambda e: (e.ts, e.id), reverse=True)
    return found[:limit]
