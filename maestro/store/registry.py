"""The registry at rest: each agent's last known state, and its state changes.

The liveness tracker keeps the live registry in memory and saves it here (through
``Store.write``) on every transition, so a restarted maestro starts from what it
knew. ``agent_events`` is the history of those transitions, for the UI and audits.

Agents are the small integers of the ``agents`` table, the same ids the samples use.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any, Final

from maestro.errors import StoreError
from maestro.store.query import check_limit
from maestro.store.rows import FIELDS, HEAD
from maestro.store.samples import agent_id, find_agent_id

# Component "registry" (after "agents", whose table it refers to).
REGISTRY_MIGRATIONS: Final[tuple[str, ...]] = (
    """
    CREATE TABLE agent_state (
        agent_id INTEGER PRIMARY KEY REFERENCES agents (id),
        state TEXT NOT NULL,
        epoch INTEGER NOT NULL,
        since REAL NOT NULL,
        last_seen REAL,
        status BLOB,
        labels TEXT NOT NULL DEFAULT '{}',
        host TEXT NOT NULL DEFAULT '',
        version TEXT NOT NULL DEFAULT '',
        heartbeat_s REAL
    );
    CREATE TABLE agent_events (
        id INTEGER PRIMARY KEY,
        agent_id INTEGER NOT NULL REFERENCES agents (id),
        ts REAL NOT NULL,
        old TEXT,
        new TEXT NOT NULL,
        epoch INTEGER NOT NULL,
        reason TEXT
    );
    CREATE INDEX agent_events_agent_ts ON agent_events (agent_id, ts);
    """,
)


@dataclass(slots=True)
class AgentRecord:
    """What the maestro last knew of one agent."""

    name: str
    state: str  # online | offline | stopping, or the liveness tracker's own states
    epoch: int
    since: float  # unix seconds the agent entered ``state``
    last_seen: float | None = None  # unix seconds of the last message from it
    status: bytes | None = None  # the last Status payload, as received
    labels: dict[str, str] = field(default_factory=dict)
    host: str = ""
    version: str = ""
    heartbeat_s: float | None = None


@dataclass(frozen=True, slots=True)
class AgentEvent:
    """One state change of one agent."""

    id: int
    agent: str
    ts: float
    old: str | None
    new: str
    epoch: int
    reason: str | None


def save_state(conn: sqlite3.Connection, record: AgentRecord) -> None:
    """Insert or replace the saved state of ``record.name`` (in a write transaction)."""
    try:
        labels = json.dumps(record.labels, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"labels of {record.name!r} are not JSON: {exc}") from exc
    conn.execute(
        "INSERT INTO agent_state (agent_id, state, epoch, since, last_seen, status, labels,"
        " host, version, heartbeat_s) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (agent_id) DO UPDATE SET state = excluded.state,"
        " epoch = excluded.epoch, since = excluded.since, last_seen = excluded.last_seen,"
        " status = excluded.status, labels = excluded.labels, host = excluded.host,"
        " version = excluded.version, heartbeat_s = excluded.heartbeat_s",
        (
            agent_id(conn, record.name),
            record.state,
            record.epoch,
            record.since,
            record.last_seen,
            record.status,
            labels,
            record.host,
            record.version,
            record.heartbeat_s,
        ),
    )


def forget_state(conn: sqlite3.Connection, name: str) -> None:
    """Drop the saved state of a removed agent (in a write transaction). Its samples and
    its state changes stay: they are history, pruned by retention."""
    found = find_agent_id(conn, name)
    if found is not None:
        conn.execute("DELETE FROM agent_state WHERE agent_id = ?", (found,))


def load_states(conn: sqlite3.Connection) -> list[AgentRecord]:
    """Every saved agent state, by agent name."""
    rows = conn.execute(
        "SELECT a.name, s.state, s.epoch, s.since, s.last_seen, s.status, s.labels, s.host,"
        " s.version, s.heartbeat_s FROM agent_state AS s JOIN agents AS a ON a.id = s.agent_id"
        " ORDER BY a.name"
    )
    return [
        AgentRecord(
            name=name,
            state=state,
            epoch=epoch,
            since=since,
            last_seen=last_seen,
            status=bytes(status) if status is not None else None,
            labels=json.loads(labels),
            host=host,
            version=version,
            heartbeat_s=heartbeat_s,
        )
        for (
            name,
            state,
            epoch,
            since,
            last_seen,
            status,
            labels,
            host,
            version,
            heartbeat_s,
        ) in rows
    ]


def add_event(
    conn: sqlite3.Connection,
    agent: str,
    *,
    ts: float,
    old: str | None,
    new: str,
    epoch: int,
    reason: str | None = None,
) -> int:
    """Record that ``agent`` went from ``old`` to ``new``; return the event's id."""
    cursor = conn.execute(
        "INSERT INTO agent_events (agent_id, ts, old, new, epoch, reason)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (agent_id(conn, agent), ts, old, new, epoch, reason),
    )
    assert cursor.lastrowid is not None  # noqa: S101 - an INSERT into a rowid table has one
    return cursor.lastrowid


def list_events(
    conn: sqlite3.Connection,
    agent: str | None = None,
    since: float | None = None,
    limit: int = 100,
) -> list[AgentEvent]:
    """State changes, newest first: of one agent or all, at or after ``since``."""
    check_limit(limit)
    where: list[str] = []
    params: list[Any] = []
    if agent is not None:
        found = find_agent_id(conn, agent)
        if found is None:
            return []
        where.append("e.agent_id = ?")
        params.append(found)
    if since is not None:
        where.append("e.ts >= ?")
        params.append(since)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    rows = conn.execute(
        "SELECT e.id, a.name, e.ts, e.old, e.new, e.epoch, e.reason FROM agent_events AS e"  # noqa: S608
        f" JOIN agents AS a ON a.id = e.agent_id {clause} ORDER BY e.ts DESC, e.id DESC"
        " LIMIT ?",
        (*params, limit),
    )
    return [AgentEvent(*row) for row in rows]


_LATEST: Final = (
    f"SELECT seq, ts, epoch, {', '.join(FIELDS)} FROM samples"  # noqa: S608 - constant columns
    " WHERE agent_id = ? ORDER BY ts DESC LIMIT 1"
)


def latest_sample(conn: sqlite3.Connection, agent: str) -> dict[str, Any] | None:
    """The newest stored sample of ``agent`` (by its own timestamp), None if none.

    ``{"agent", "seq", "ts", "epoch", <field>: value ...}`` without the fields the
    agent did not report.
    """
    found = find_agent_id(conn, agent)
    if found is None:
        return None
    row = conn.execute(_LATEST, (found,)).fetchone()
    if row is None:
        return None
    sample: dict[str, Any] = dict(zip(HEAD, (agent, *row[:3]), strict=True))
    sample.update(
        (name, value) for name, value in zip(FIELDS, row[3:], strict=True) if value is not None
    )
    return sample
