"""Registry and audit tables: saved agent states, state changes, latest sample, audit log."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from maestro.errors import QueryError, StoreError
from maestro.store.audit import add_audit, list_audit
from maestro.store.core import Store
from maestro.store.registry import (
    AgentRecord,
    add_event,
    latest_sample,
    list_events,
    load_states,
    save_state,
)
from maestro.store.rows import FIELDS
from maestro.store.settings import StoreSettings

T0 = 1_700_000_000.0


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store.open(tmp_path / "maestro.db", settings=StoreSettings(batch_max_delay_s=0.01))
    try:
        yield opened
    finally:
        opened.close()


def record(name: str, state: str = "online", epoch: int = 1) -> AgentRecord:
    return AgentRecord(
        name=name,
        state=state,
        epoch=epoch,
        since=T0,
        last_seen=T0 + 5,
        status=b'{"schema":1,"state":"online"}',
        labels={"site": "lyon"},
        host=f"{name}.lan",
        version="0.1.0",
        heartbeat_s=10.0,
    )


def test_saved_agent_states_come_back_after_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    with Store.open(path) as store:
        store.submit_write(lambda conn: save_state(conn, record("b1"))).result(5)
        store.submit_write(lambda conn: save_state(conn, record("a1"))).result(5)
        store.submit_write(lambda conn: save_state(conn, record("a1", "offline", 2))).result(5)
    with Store.open(path) as store:
        states = store.read_now(load_states)
    assert [s.name for s in states] == ["a1", "b1"]
    assert states[0] == record("a1", "offline", 2)
    assert states[1] == record("b1")


def test_state_changes_list_newest_first_by_agent_and_time(store: Store) -> None:
    def changes(conn: sqlite3.Connection) -> None:
        add_event(conn, "a1", ts=T0, old=None, new="online", epoch=1)
        add_event(conn, "a2", ts=T0 + 1, old=None, new="online", epoch=1)
        add_event(conn, "a1", ts=T0 + 2, old="online", new="offline", epoch=1, reason="will")

    store.submit_write(changes).result(5)
    every = store.read_now(list_events)
    assert [(e.agent, e.new) for e in every] == [
        ("a1", "offline"),
        ("a2", "online"),
        ("a1", "online"),
    ]
    assert every[0].reason == "will"
    assert [e.ts for e in store.read_now(lambda c: list_events(c, agent="a1"))] == [T0 + 2, T0]
    assert [e.agent for e in store.read_now(lambda c: list_events(c, since=T0 + 1))] == ["a1", "a2"]
    assert len(store.read_now(lambda c: list_events(c, limit=1))) == 1
    assert store.read_now(lambda c: list_events(c, agent="nobody")) == []


def test_a_bad_limit_is_refused(store: Store) -> None:
    with pytest.raises(QueryError, match="limit"):
        store.read_now(lambda c: list_events(c, limit=0))
    with pytest.raises(QueryError, match="limit"):
        store.read_now(lambda c: list_audit(c, limit=100_000))


def test_latest_sample_is_the_newest_by_timestamp_even_after_an_older_replay(
    store: Store,
) -> None:
    def sample(seq: int, ts: float) -> tuple[object, ...]:
        values: list[float | None] = [None] * len(FIELDS)
        values[FIELDS.index("cpu")] = float(seq)
        return ("a1", seq, ts, 3, *values)

    done = threading.Event()
    store.submit_samples([sample(10, T0 + 10)])
    store.submit_samples([sample(5, T0 + 5)], done.set)  # replayed from the outbox later
    assert done.wait(5)
    assert store.read_now(lambda c: latest_sample(c, "a1")) == {
        "agent": "a1",
        "seq": 10,
        "ts": T0 + 10,
        "epoch": 3,
        "cpu": 10.0,
    }
    assert store.read_now(lambda c: latest_sample(c, "nobody")) is None


def test_registry_and_samples_share_agent_ids(store: Store) -> None:
    store.submit_write(lambda conn: save_state(conn, record("a1"))).result(5)
    done = threading.Event()
    store.submit_samples([("a1", 1, T0, 1, *([1.0] * len(FIELDS)))], done.set)
    assert done.wait(5)
    names = store.read_now(lambda c: c.execute("SELECT name FROM agents").fetchall())
    assert names == [("a1",)]
    assert store.read_now(lambda c: latest_sample(c, "a1")) is not None


def test_the_audit_log_pages_newest_first_and_filters(store: Store) -> None:
    def log(conn: sqlite3.Connection) -> None:
        issue, ack, add = "command.issue", "alert.ack", "agent.add"
        add_audit(conn, ts=T0, actor="alice", action=issue, target="a1", detail={"name": "reboot"})
        add_audit(conn, ts=T0 + 1, actor="bob", action=ack, target="a1", detail={"alert": "cpu"})
        add_audit(conn, ts=T0 + 2, actor="alice", action=add, target="a2")

    store.submit_write(log).result(5)
    every = store.read_now(list_audit)
    assert [e.action for e in every] == ["agent.add", "alert.ack", "command.issue"]
    assert every[2].detail == {"name": "reboot"}
    first_page = store.read_now(lambda c: list_audit(c, limit=2))
    next_page = store.read_now(lambda c: list_audit(c, limit=2, before_id=first_page[-1].id))
    assert [e.action for e in first_page + next_page] == [e.action for e in every]
    assert [e.actor for e in store.read_now(lambda c: list_audit(c, actor="alice"))] == [
        "alice",
        "alice",
    ]
    assert [e.action for e in store.read_now(lambda c: list_audit(c, target="a1"))] == [
        "alert.ack",
        "command.issue",
    ]
    assert len(store.read_now(lambda c: list_audit(c, since=T0 + 1))) == 2


def test_audit_detail_that_is_not_json_is_refused_and_nothing_is_written(store: Store) -> None:
    with pytest.raises(StoreError, match="not JSON"):
        store.submit_write(
            lambda c: add_audit(c, ts=T0, actor="alice", action="x", detail={"when": object()})
        ).result(5)
    with pytest.raises(StoreError, match="actor"):
        store.submit_write(lambda c: add_audit(c, ts=T0, actor="", action="x")).result(5)
    assert store.read_now(list_audit) == []
