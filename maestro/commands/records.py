"""Command records in SQLite: the ``commands`` component's tables and plain DAO functions.

Every function takes a ``sqlite3.Connection`` and runs where the caller runs it: the
service passes writes to ``Store.write`` (the writer thread, inside a transaction) and
reads to ``Store.read``. Results are kept as JSON blobs, whole (a screenshot's base64 PNG
can be several MiB): listings leave them out unless asked.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

import msgspec

from maestro.commands.lifecycle import (
    NOT_DELIVERED,
    OPEN_STATES,
    CommandState,
    Transition,
)

COMPONENT: Final = "commands"

COMMAND_MIGRATIONS: Final = [
    """
    CREATE TABLE commands (
        id            TEXT PRIMARY KEY,
        agent         TEXT NOT NULL,
        name          TEXT NOT NULL,
        args          TEXT NOT NULL,  -- JSON object, as sent
        state         TEXT NOT NULL,
        actor         TEXT NOT NULL,  -- who sent it (user, API key, job), for the audit
        job_id        TEXT,
        timeout_s     REAL NOT NULL,
        created_at    REAL NOT NULL,  -- = the command's issued_at
        expires_at    REAL NOT NULL,
        updated_at    REAL NOT NULL,
        sent_at       REAL,
        accepted_at   REAL,
        finished_at   REAL,
        result        BLOB,           -- JSON; may be MiBs (screenshots)
        error_code    TEXT,
        error_message TEXT
    );
    CREATE INDEX commands_agent_created ON commands (agent, created_at);
    CREATE INDEX commands_created ON commands (created_at);
    CREATE INDEX commands_job ON commands (job_id) WHERE job_id IS NOT NULL;
    CREATE INDEX commands_state ON commands (state);
    CREATE INDEX commands_finished ON commands (finished_at) WHERE finished_at IS NOT NULL;
    CREATE TABLE command_events (
        command_id TEXT NOT NULL REFERENCES commands (id) ON DELETE CASCADE,
        ts         REAL NOT NULL,
        state      TEXT NOT NULL,
        detail     TEXT NOT NULL
    );
    CREATE INDEX command_events_command ON command_events (command_id, ts);
    """,
]
"""Migrations of the ``commands`` component, for ``Store.open(..., {COMPONENT: ...})``."""

MAX_LIST: Final = 1000

_encode_json = msgspec.json.Encoder().encode
_decode_json = msgspec.json.Decoder().decode


@dataclass(frozen=True, slots=True)
class CommandRecord:
    """One command and where it stands. Times are Unix seconds of the maestro's clock."""

    id: str
    agent: str
    name: str
    args: dict[str, Any]
    state: CommandState
    actor: str
    job_id: str | None
    timeout_s: float
    created_at: float
    expires_at: float
    updated_at: float
    sent_at: float | None = None
    accepted_at: float | None = None
    finished_at: float | None = None
    result: Any = None
    has_result: bool = False  # True while ``result`` was left out of a listing too
    error_code: str | None = None
    error_message: str | None = None

    @property
    def is_final(self) -> bool:
        return self.state.is_final

    def advanced(self, change: Transition, now: float, result: Any = None) -> CommandRecord:
        """This record after ``change`` at ``now`` (``result`` from a final reply)."""
        state = change.state
        reached_agent = state not in (CommandState.QUEUED, CommandState.TIMED_OUT) and (
            change.error_code != NOT_DELIVERED
        )
        return replace(
            self,
            state=state,
            updated_at=now,
            sent_at=self.sent_at if self.sent_at is not None or not reached_agent else now,
            accepted_at=(
                now
                if self.accepted_at is None
                and state in (CommandState.ACCEPTED, CommandState.RUNNING)
                else self.accepted_at
            ),
            finished_at=now if state.is_final else None,
            result=result if state.is_final else self.result,
            has_result=result is not None if state.is_final else self.has_result,
            error_code=change.error_code,
            error_message=change.error_message,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (the EventBus and the web API use this)."""
        return {
            "id": self.id,
            "agent": self.agent,
            "name": self.name,
            "args": self.args,
            "state": self.state.value,
            "actor": self.actor,
            "job_id": self.job_id,
            "timeout_s": self.timeout_s,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "updated_at": self.updated_at,
            "sent_at": self.sent_at,
            "accepted_at": self.accepted_at,
            "finished_at": self.finished_at,
            "result": self.result,
            "has_result": self.has_result,
            "error_code": self.error_code,
            "error_message": self.error_message,
        }


@dataclass(frozen=True, slots=True)
class CommandEvent:
    """One line of a command's history: a state change, or a note (a re-publish)."""

    command_id: str
    ts: float
    state: CommandState
    detail: str


# -- writes ------------------------------------------------------------------------------
def insert(conn: sqlite3.Connection, record: CommandRecord, detail: str) -> None:
    conn.execute(
        "INSERT INTO commands (id, agent, name, args, state, actor, job_id, timeout_s,"
        " created_at, expires_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            record.id,
            record.agent,
            record.name,
            _encode_json(record.args).decode(),
            record.state.value,
            record.actor,
            record.job_id,
            record.timeout_s,
            record.created_at,
            record.expires_at,
            record.updated_at,
        ),
    )
    add_event(conn, record.id, record.updated_at, record.state, detail)


def update(conn: sqlite3.Connection, record: CommandRecord, detail: str) -> None:
    """Store ``record``'s state and times (and result once final), and log the change."""
    result = _encode_json(record.result) if record.result is not None else None
    conn.execute(
        "UPDATE commands SET state = ?, updated_at = ?, sent_at = ?, accepted_at = ?,"
        " finished_at = ?, result = ?, error_code = ?, error_message = ? WHERE id = ?",
        (
            record.state.value,
            record.updated_at,
            record.sent_at,
            record.accepted_at,
            record.finished_at,
            result,
            record.error_code,
            record.error_message,
            record.id,
        ),
    )
    add_event(conn, record.id, record.updated_at, record.state, detail)


def add_event(
    conn: sqlite3.Connection, command_id: str, ts: float, state: CommandState, detail: str
) -> None:
    conn.execute(
        "INSERT INTO command_events (command_id, ts, state, detail) VALUES (?, ?, ?, ?)",
        (command_id, ts, state.value, detail),
    )


def purge(conn: sqlite3.Connection, finished_before: float) -> int:
    """Delete finished commands (and their history) older than ``finished_before``."""
    cursor = conn.execute(
        "DELETE FROM commands WHERE finished_at IS NOT NULL AND finished_at < ?",
        (finished_before,),
    )
    return cursor.rowcount


# -- reads -------------------------------------------------------------------------------
_COLUMNS: Final = (
    "id, agent, name, args, state, actor, job_id, timeout_s, created_at, expires_at,"
    " updated_at, sent_at, accepted_at, finished_at, error_code, error_message,"
    " result IS NOT NULL"
)


def get(
    conn: sqlite3.Connection,
    command_id: str,
    *,
    include_result: bool = True,
    schemas: Sequence[str] = ("main",),
) -> CommandRecord | None:
    """The record from the first of ``schemas`` holding it (own store first)."""
    result_column = ", result" if include_result else ""
    for schema in schemas:
        row = conn.execute(
            f"SELECT {_COLUMNS}{result_column} FROM {schema}.commands WHERE id = ?",  # noqa: S608 - constants
            (command_id,),
        ).fetchone()
        if row is not None:
            return _record(row)
    return None


def select(
    conn: sqlite3.Connection,
    *,
    agent: str | None = None,
    state: CommandState | None = None,
    job_id: str | None = None,
    limit: int = 100,
    before: str | None = None,
    include_result: bool = False,
    schemas: Sequence[str] = ("main",),
) -> list[CommandRecord]:
    """Newest first; ``before`` is the id of the last record of the previous page.

    Reads every one of ``schemas`` (own store and sibling replicas' files) and merges
    them by creation time; a record found twice is shown once (own store's copy).
    """
    where: list[str] = []
    params: list[Any] = []
    if agent is not None:
        where.append("agent = ?")
        params.append(agent)
    if state is not None:
        where.append("state = ?")
        params.append(CommandState(state).value)
    if job_id is not None:
        where.append("job_id = ?")
        params.append(job_id)
    if before is not None:
        cursor = get(conn, before, include_result=False, schemas=schemas)
        if cursor is None:
            return []
        where.append("(created_at, id) < (?, ?)")
        params.extend((cursor.created_at, cursor.id))
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    result_column = ", result" if include_result else ""
    params.append(max(1, min(limit, MAX_LIST)))
    merged: dict[str, CommandRecord] = {}
    for schema in schemas:
        rows = conn.execute(
            f"SELECT {_COLUMNS}{result_column} FROM {schema}.commands{clause}"  # noqa: S608 - constants
            " ORDER BY created_at DESC, id DESC LIMIT ?",
            params,
        ).fetchall()
        for row in rows:
            merged.setdefault(row[0], _record(row))
    newest = sorted(merged.values(), key=lambda r: (r.created_at, r.id), reverse=True)
    return newest[: params[-1]]


def select_open(conn: sqlite3.Connection) -> list[CommandRecord]:
    """Every command not in a final state, oldest first (for a restarted service)."""
    marks = ", ".join("?" for _ in OPEN_STATES)
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM commands WHERE state IN ({marks})"  # noqa: S608 - constants
        " ORDER BY created_at, id",
        [state.value for state in OPEN_STATES],
    ).fetchall()
    return [_record(row) for row in rows]


def history(
    conn: sqlite3.Connection, command_id: str, *, schemas: Sequence[str] = ("main",)
) -> list[CommandEvent]:
    """The events from the first of ``schemas`` holding any (the replica that sent it)."""
    for schema in schemas:
        rows = conn.execute(
            f"SELECT command_id, ts, state, detail FROM {schema}.command_events"  # noqa: S608 - constants
            " WHERE command_id = ? ORDER BY ts, rowid",
            (command_id,),
        ).fetchall()
        if rows:
            return [CommandEvent(row[0], row[1], CommandState(row[2]), row[3]) for row in rows]
    return []


def job_counts(conn: sqlite3.Connection, job_id: str) -> dict[CommandState, int]:
    """How many of a job's commands are in each state."""
    rows = conn.execute(
        "SELECT state, count(*) FROM commands WHERE job_id = ? GROUP BY state", (job_id,)
    ).fetchall()
    return {CommandState(state): count for state, count in rows}


def _record(row: tuple[Any, ...]) -> CommandRecord:
    has_result = bool(row[16])
    result = _decode_json(row[17]) if len(row) > 17 and row[17] is not None else None
    return CommandRecord(
        id=row[0],
        agent=row[1],
        name=row[2],
        args=_decode_json(row[3]),
        state=CommandState(row[4]),
        actor=row[5],
        job_id=row[6],
        timeout_s=row[7],
        created_at=row[8],
        expires_at=row[9],
        updated_at=row[10],
        sent_at=row[11],
        accepted_at=row[12],
        finished_at=row[13],
        error_code=row[14],
        error_message=row[15],
        result=result,
        has_result=has_result,
    )
