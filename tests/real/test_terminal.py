"""Remote terminals end to end: a real agent's PTY, through Mosquitto, to the maestro's hub."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import Callable
from functools import partial

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect
from websockets.sync.connection import Connection
from websockets.typing import Origin

from arete.terminal import Exit, ExitReason, Output
from maestro.errors import CommandError
from maestro.store.audit import AuditEntry, list_audit
from maestro.terminal import Lost, TerminalSession
from tests.fixtures.agent import AgentProc
from tests.fixtures.api import ApiServer
from tests.fixtures.maestro import MaestroThread
from tests.fixtures.procs import wait_for
from web_api.auth.roles import Role

# /bin/sh rather than the login shell of whoever runs the tests: fast and predictable.
SHELL_ENV = {"ARETE_AGENT_TERMINAL__SHELL": "/bin/sh"}


async def read_until(session: TerminalSession, needle: bytes, timeout_s: float = 10.0) -> bytes:
    """Output of ``session`` up to and including ``needle``; fails on Exit or loss."""
    seen = b""
    async with asyncio.timeout(timeout_s):
        while needle not in seen:
            event = await session.next_event()
            assert not isinstance(event, Exit | Lost), (event, seen)
            seen += event.data
    return seen


async def prompt(session: TerminalSession, timeout_s: float = 10.0) -> None:
    """Wait for the shell's first output (its prompt): typeahead sent earlier may be
    swallowed by the user's startup files, as in any terminal."""
    async with asyncio.timeout(timeout_s):
        while not isinstance(await session.next_event(), Output):
            pass


async def until_exit(session: TerminalSession, timeout_s: float = 10.0) -> Exit:
    async with asyncio.timeout(timeout_s):
        while True:
            event = await session.next_event()
            if isinstance(event, Exit):
                return event


def audit_of(maestro: MaestroThread, agent_id: str) -> list[AuditEntry]:
    entries = maestro.call(maestro.app.store.read(partial(list_audit, target=agent_id)))
    return [e for e in reversed(entries) if e.action.startswith("terminal.")]


@pytest.fixture
def fleet(
    start_agent: Callable[..., AgentProc], maestro_thread: Callable[..., MaestroThread]
) -> Callable[..., tuple[AgentProc, MaestroThread]]:
    def start(env: dict[str, str] | None = None) -> tuple[AgentProc, MaestroThread]:
        agent = start_agent("a1", env=SHELL_ENV | (env or {}))
        maestro = maestro_thread()
        maestro.wait_state("a1", "online", timeout=10)
        return agent, maestro

    return start


def test_a_terminal_runs_a_command_resizes_and_ends_its_shell_when_closed(
    fleet: Callable[..., tuple[AgentProc, MaestroThread]],
) -> None:
    _, maestro = fleet()

    async def scenario() -> tuple[bytes, bytes, Exit, int]:
        hub = maestro.app.terminals
        session = await hub.open("a1", actor="alice", cols=100, rows=30)
        await prompt(session)
        await session.send_input("echo hello-$((6*7)); stty size\r")
        first = await read_until(session, b"30 100")
        await session.resize(120, 40)
        await session.send_input("stty size\r")
        second = await read_until(session, b"40 120")
        return first, second, await session.close(), session.pid

    first, second, exit_frame, pid = maestro.call(scenario())
    assert b"hello-42" in first  # the arithmetic ran on the agent, not just an echo
    assert b"40 120" in second
    assert exit_frame.reason is ExitReason.CLOSED
    wait_for(lambda: not _alive(pid), 5, "the shell is gone")
    wait_for(lambda: len(audit_of(maestro, "a1")) == 2, 5, "open and close audited")
    opened, closed = audit_of(maestro, "a1")
    assert (opened.action, opened.actor) == ("terminal.open", "alice")
    assert (closed.action, closed.actor) == ("terminal.close", "alice")
    assert closed.detail["session"] == opened.detail["session"]
    assert closed.detail["reason"] == "closed"
    assert maestro.sync(lambda m: len(m.terminals.sessions)) == 0


def test_exit_in_the_shell_ends_the_session_with_the_shells_status(
    fleet: Callable[..., tuple[AgentProc, MaestroThread]],
) -> None:
    _, maestro = fleet()

    async def scenario() -> Exit:
        session = await maestro.app.terminals.open("a1", actor="alice")
        await prompt(session)
        await session.send_input("exit 3\r")
        return await until_exit(session)

    exit_frame = maestro.call(scenario())
    assert (exit_frame.reason, exit_frame.code) == (ExitReason.EXITED, 3)


def test_a_terminal_is_refused_on_an_agent_whose_shell_is_disabled(
    fleet: Callable[..., tuple[AgentProc, MaestroThread]],
) -> None:
    _, maestro = fleet({"ARETE_AGENT_SHELL__ENABLED": "false"})
    with pytest.raises(CommandError) as refused:
        maestro.call(maestro.app.terminals.open("a1", actor="mallory"))
    assert refused.value.code == "not_allowed"
    assert "shell is disabled" in str(refused.value)
    entries = audit_of(maestro, "a1")
    assert [(e.action, e.actor, e.detail["code"]) for e in entries] == [
        ("terminal.refused", "mallory", "not_allowed")
    ]


def test_an_idle_session_ends_and_stopping_the_agent_ends_the_others(
    fleet: Callable[..., tuple[AgentProc, MaestroThread]],
) -> None:
    agent, maestro = fleet()

    async def idle() -> tuple[Exit, float]:
        session = await maestro.app.terminals.open("a1", actor="alice", idle_timeout_s=1.0)
        loop = asyncio.get_running_loop()
        began = loop.time()
        return await until_exit(session), loop.time() - began

    exit_frame, waited = maestro.call(idle())
    assert exit_frame.reason is ExitReason.IDLE
    assert 0.8 <= waited < 5.0

    session = maestro.call(maestro.app.terminals.open("a1", actor="alice"))
    agent.signal(signal.SIGTERM)
    exit_frame = maestro.call(until_exit(session))
    assert exit_frame.reason is ExitReason.AGENT_STOPPING
    assert not _alive(session.pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers signal 0 until the agent reaps it.
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


# -- through the web API's websocket relay --------------------------------------------------
def test_the_websocket_relay_gives_an_admin_a_shell_and_refuses_others(
    start_agent: Callable[..., AgentProc], api_server: Callable[..., ApiServer]
) -> None:
    start_agent("a1", env=SHELL_ENV)
    api = api_server()
    admin = api.client(Role.ADMIN)
    wait_for(lambda: admin.get("/agents/a1").status_code == 200, 10, "a1 known to the API")
    url = f"{api.ws_url}/agents/a1/terminal"

    with connect(f"{url}?token={api.tokens[Role.ADMIN]}&cols=90&rows=20") as ws:
        ready = json.loads(ws.recv(timeout=20))
        assert (ready["type"], ready["cols"], ready["rows"]) == ("ready", 90, 20)
        assert json.loads(ws.recv(timeout=10))["type"] == "output"  # the prompt
        ws.send(json.dumps({"type": "input", "data": "echo hello-$((6*7)); stty size\r"}))
        assert "hello-42" in _ws_output_until(ws, "20 90")
        ws.send(json.dumps({"type": "resize", "cols": 0, "rows": 5}))
        error = json.loads(ws.recv(timeout=5))
        assert (error["type"], error["code"]) == ("error", "bad_message")
        ws.send(json.dumps({"type": "close"}))
        messages = [json.loads(ws.recv(timeout=10))]
        while messages[-1]["type"] != "exit":
            messages.append(json.loads(ws.recv(timeout=10)))
        assert messages[-1]["reason"] == "closed"

    for refused in (
        {"uri": f"{url}?token={api.tokens[Role.OPERATOR]}"},  # below admin
        {"uri": url},  # no credential
        {"uri": f"{url}?token={api.tokens[Role.ADMIN]}", "origin": Origin("http://evil.test")},
    ):
        with pytest.raises(InvalidStatus) as caught, connect(**refused):  # type: ignore[arg-type]
            pass
        assert caught.value.response.status_code == 403

    audit = admin.get("/audit", params={"target": "a1"}).json()
    actions = [(e["action"], e["actor"]) for e in audit if e["action"].startswith("terminal.")]
    assert ("terminal.open", "user:admin") in actions
    wait_for(
        lambda: any(
            e["action"] == "terminal.close"
            for e in admin.get("/audit", params={"target": "a1"}).json()
        ),
        5,
        "the close audited",
    )


def _read_until_closed(ws: Connection) -> None:
    while True:
        ws.recv(timeout=5)  # output until the server closes (a silent 5 s fails the test)


def _ws_output_until(ws: Connection, needle: str) -> str:
    seen = ""
    while needle not in seen:
        try:
            message = json.loads(ws.recv(timeout=10))
        except TimeoutError:
            raise AssertionError(repr(seen)) from None
        assert message["type"] == "output", message
        seen += message["data"]
    return seen


def test_revoking_the_admins_token_hangs_up_an_open_terminal(
    start_agent: Callable[..., AgentProc], api_server: Callable[..., ApiServer]
) -> None:
    start_agent("a1", env=SHELL_ENV)
    api = api_server(ws_recheck_s=0.2)
    admin = api.client(Role.ADMIN)
    wait_for(lambda: admin.get("/agents/a1").status_code == 200, 10, "a1 known to the API")
    made = admin.post("/users/admin/tokens", json={"label": "laptop"}).json()
    url = f"{api.ws_url}/agents/a1/terminal?token={made['token']}"

    with connect(url) as ws:
        assert json.loads(ws.recv(timeout=20))["type"] == "ready"
        assert admin.delete(f"/users/admin/tokens/{made['id']}").status_code == 204
        with pytest.raises(ConnectionClosed):
            _read_until_closed(ws)
        assert ws.close_code == 4401

    wait_for(
        lambda: any(
            e["action"] == "terminal.close"
            for e in admin.get("/audit", params={"target": "a1"}).json()
        ),
        10,
        "the shell hung up and the close audited",
    )
