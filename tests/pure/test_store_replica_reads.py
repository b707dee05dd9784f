"""Command records and the audit log read through one replica's store show what every
replica sharing the data dir wrote (the siblings' files, read-only). Alert history is
not merged: every replica evaluates every incident itself (ids differ), see docs/api.md."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from maestro.commands import COMMAND_MIGRATIONS, records
from maestro.commands.lifecycle import CommandState
from maestro.commands.records import CommandRecord
from maestro.store.audit import add_audit, list_audit
from maestro.store.core import Store
from maestro.store.replicas import schemas_with

MIGRATIONS = {"commands": COMMAND_MIGRATIONS}


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[tuple[Store, Store]]:
    folder = tmp_path / "maestro"
    folder.mkdir()
    a = Store.open(folder / "a.db", MIGRATIONS)
    b = Store.open(folder / "b.db", MIGRATIONS)
    yield a, b
    a.close()
    b.close()


def command(id_: str, created_at: float) -> CommandRecord:
    return CommandRecord(
        id=id_,
        agent="web-1",
        name="restart",
        args={},
        state=CommandState.QUEUED,
        actor="user:alice",
        job_id=None,
        timeout_s=30.0,
        created_at=created_at,
        expires_at=created_at + 30,
        updated_at=created_at,
    )


def write(store: Store, fn: Callable[[sqlite3.Connection], Any]) -> None:
    store.submit_write(fn).result(timeout=10)


def test_b_finds_and_lists_a_command_sent_by_a(stores: tuple[Store, Store]) -> None:
    a, b = stores
    write(a, partial(records.insert, record=command("cmd-a", 100.0), detail=""))
    write(b, partial(records.insert, record=command("cmd-b", 200.0), detail=""))

    got = b.read_now(
        lambda conn: records.get(conn, "cmd-a", schemas=schemas_with(conn, b.path, "commands"))
    )
    assert got is not None
    assert got.id == "cmd-a"
    listed = b.read_now(
        lambda conn: records.select(conn, schemas=schemas_with(conn, b.path, "commands"))
    )
    assert [r.id for r in listed] == ["cmd-b", "cmd-a"]
    page_two = b.read_now(
        lambda conn: records.select(
            conn, before="cmd-b", schemas=schemas_with(conn, b.path, "commands")
        )
    )
    assert [r.id for r in page_two] == ["cmd-a"]
    events = b.read_now(
        lambda conn: records.history(conn, "cmd-a", schemas=schemas_with(conn, b.path, "commands"))
    )
    assert [e.state for e in events] == [CommandState.QUEUED]
    # Without the siblings (the old read) b did not know it: the merge is what finds it.
    assert b.read_now(lambda conn: records.get(conn, "cmd-a")) is None


def test_audit_of_both_replicas_merged_newest_first_and_paged(
    stores: tuple[Store, Store],
) -> None:
    a, b = stores
    for store, ts, who in ((a, 10.0, "a1"), (b, 20.0, "b1"), (a, 30.0, "a2"), (b, 40.0, "b2")):
        write(store, partial(add_audit, ts=ts, actor=f"user:{who}", action="command.issue"))

    def page(before_ts: float | None = None, before_id: int | None = None) -> list[str]:
        entries = b.read_now(
            lambda conn: list_audit(
                conn,
                before_ts=before_ts,
                before_id=before_id,
                schemas=schemas_with(conn, b.path, "audit"),
            )
        )
        return [e.actor for e in entries]

    assert page() == ["user:b2", "user:a2", "user:b1", "user:a1"]
    first = b.read_now(
        lambda conn: list_audit(conn, limit=2, schemas=schemas_with(conn, b.path, "audit"))
    )
    assert [e.actor for e in first] == ["user:b2", "user:a2"]
    assert page(before_ts=first[-1].ts, before_id=first[-1].id) == ["user:b1", "user:a1"]
