"""The alert tables (store component ``alerts``) and the functions that read and write them.

Everything here runs on the store's threads (``store.write`` / ``store.read``).
"""

from __future__ import annotations

import logging
import sqlite3
from typing import Any, Final

from arete.payloads import AlertPhase, AlertSeverity
from maestro.alerts.model import AlertRecord, SilenceRecord, Told
from maestro.errors import AlertError
from maestro.store.audit import add_audit

log = logging.getLogger(__name__)

ALERT_MIGRATIONS: Final = [
    """
    CREATE TABLE alerts (
        id TEXT PRIMARY KEY,
        rule TEXT NOT NULL,
        agent TEXT NOT NULL,
        severity TEXT NOT NULL,
        phase TEXT NOT NULL CHECK (phase IN ('pending', 'firing', 'resolved')),
        started_at REAL NOT NULL,
        since REAL NOT NULL,
        summary TEXT NOT NULL,
        value REAL,
        fired_at REAL,
        resolved_at REAL,
        acked_by TEXT,
        acked_at REAL,
        told TEXT NOT NULL DEFAULT 'none',
        told_at REAL,
        flaps INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX alerts_open ON alerts (phase) WHERE phase != 'resolved';
    CREATE INDEX alerts_agent ON alerts (agent, started_at);
    CREATE INDEX alerts_started ON alerts (started_at);
    CREATE TABLE alert_silences (
        id TEXT PRIMARY KEY,
        agent TEXT,
        rule TEXT,
        starts_at REAL NOT NULL,
        ends_at REAL NOT NULL,
        created_by TEXT NOT NULL,
        created_at REAL NOT NULL,
        reason TEXT NOT NULL DEFAULT '',
        ended_by TEXT,
        ended_at REAL
    );
    CREATE INDEX alert_silences_ends ON alert_silences (ends_at);
    """,
]

_ALERT_COLUMNS: Final = (
    "id, rule, agent, severity, phase, started_at, since, summary, value, fired_at,"
    " resolved_at, acked_by, acked_at, told, told_at, flaps"
)
_SILENCE_COLUMNS: Final = (
    "id, agent, rule, starts_at, ends_at, created_by, created_at, reason, ended_by, ended_at"
)
MAX_LIMIT: Final = 10_000


def save_alert(conn: sqlite3.Connection, alert: AlertRecord) -> None:
    conn.execute(
        f"INSERT OR REPLACE INTO alerts ({_ALERT_COLUMNS})"  # noqa: S608 - constant columns
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            alert.id,
            alert.rule,
            alert.agent,
            str(alert.severity),
            str(alert.phase),
            alert.started_at,
            alert.since,
            alert.summary,
            alert.value,
            alert.fired_at,
            alert.resolved_at,
            alert.acked_by,
            alert.acked_at,
            str(alert.told),
            alert.told_at,
            alert.flaps,
        ),
    )


def forget_alert(conn: sqlite3.Connection, alert_id: str) -> None:
    """Drop an incident that never fired (pending, then cleared): it is no history."""
    conn.execute("DELETE FROM alerts WHERE id = ?", (alert_id,))


def _alert(row: Any) -> AlertRecord:
    (id_, rule, agent, severity, phase, started, since, summary, value, fired, resolved,
     acked_by, acked_at, told, told_at, flaps) = row  # fmt: skip
    return AlertRecord(
        id=id_,
        rule=rule,
        agent=agent,
        severity=AlertSeverity(severity),
        phase=AlertPhase(phase),
        started_at=started,
        since=since,
        summary=summary,
        value=value,
        fired_at=fired,
        resolved_at=resolved,
        acked_by=acked_by,
        acked_at=acked_at,
        told=Told(told),
        told_at=told_at,
        flaps=flaps,
    )


def load_current(conn: sqlite3.Connection, resolved_since: float) -> list[AlertRecord]:
    """Open alerts, and those resolved after ``resolved_since`` (they may reopen)."""
    rows = conn.execute(
        f"SELECT {_ALERT_COLUMNS} FROM alerts"  # noqa: S608 - constant columns
        " WHERE phase != 'resolved' OR resolved_at >= ? ORDER BY started_at",
        (resolved_since,),
    )
    return [_alert(row) for row in rows]


def get_alert(conn: sqlite3.Connection, alert_id: str) -> AlertRecord | None:
    row = conn.execute(
        f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE id = ?",  # noqa: S608 - constant columns
        (alert_id,),
    ).fetchone()
    return None if row is None else _alert(row)


def list_alerts(
    conn: sqlite3.Connection,
    *,
    phase: AlertPhase | None = None,
    agent: str | None = None,
    limit: int = 100,
) -> list[AlertRecord]:
    """Newest first. Incidents that never fired (pending, then cleared) are not listed:
    they are no history (a store written before they were dropped may still hold some)."""
    if not 1 <= limit <= MAX_LIMIT:
        raise AlertError(f"limit must be between 1 and {MAX_LIMIT}")
    where: list[str] = ["(phase != 'resolved' OR fired_at IS NOT NULL)"]
    params: list[Any] = []
    if phase is not None:
        where.append("phase = ?")
        params.append(str(phase))
    if agent is not None:
        where.append("agent = ?")
        params.append(agent)
    clause = f" WHERE {' AND '.join(where)}"
    rows = conn.execute(
        f"SELECT {_ALERT_COLUMNS} FROM alerts{clause}"  # noqa: S608 - constant columns
        " ORDER BY started_at DESC, id LIMIT ?",
        (*params, limit),
    )
    return [_alert(row) for row in rows]


def prune_resolved(conn: sqlite3.Connection, before: float) -> int:
    cursor = conn.execute(
        "DELETE FROM alerts WHERE phase = 'resolved' AND (resolved_at < ? OR fired_at IS NULL)",
        (before,),
    )
    conn.execute("DELETE FROM alert_silences WHERE ends_at < ?", (before,))
    return cursor.rowcount


def save_silence(conn: sqlite3.Connection, silence: SilenceRecord) -> None:
    conn.execute(
        f"INSERT OR REPLACE INTO alert_silences ({_SILENCE_COLUMNS})"  # noqa: S608
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            silence.id,
            silence.agent,
            silence.rule,
            silence.starts_at,
            silence.ends_at,
            silence.created_by,
            silence.created_at,
            silence.reason,
            silence.ended_by,
            silence.ended_at,
        ),
    )


def load_active_silences(conn: sqlite3.Connection, now: float) -> list[SilenceRecord]:
    rows = conn.execute(
        f"SELECT {_SILENCE_COLUMNS} FROM alert_silences"  # noqa: S608 - constant columns
        " WHERE ended_at IS NULL AND ends_at > ? ORDER BY starts_at",
        (now,),
    )
    return [SilenceRecord(*row) for row in rows]


def audit(
    conn: sqlite3.Connection,
    *,
    ts: float,
    actor: str,
    action: str,
    target: str,
    detail: dict[str, Any],
) -> None:
    """The one place alert actions reach the audit log (same transaction as the change)."""
    add_audit(conn, ts=ts, actor=actor, action=action, target=target, detail=detail)
