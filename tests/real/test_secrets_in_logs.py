"""A full session against real processes — ``arete web run`` (API + maestro), ``arete
broker run``, an agent — then every log is searched for every secret; and what a viewer
reads of the admin's shell commands and terminal, everywhere it could read them."""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
import time
from collections.abc import Callable
from typing import Any

import httpx
import websockets

from tests.fixtures.agent import AgentProc
from tests.fixtures.broker import Broker
from tests.fixtures.procs import ARETE, Proc, free_port, wait_for
from web_api.auth.users import UserStore

SHELL_SECRET = "shell-output-" + secrets.token_hex(8)


def make_users(broker: Broker, admin_password: str) -> tuple[str, str]:
    """An admin with a password and a token, and a viewer with a token (tokens returned)."""
    store = UserStore(broker.data_dir / "web" / "users.db")
    try:
        store.add_user("boss", "admin", admin_password)
        store.add_user("watcher", "viewer")
        return store.create_token("boss"), store.create_token("watcher")
    finally:
        store.close()


def start_web(procs: Callable[..., Proc], broker: Broker, port: int) -> Proc:
    web = procs(
        [*ARETE, "web", "run", "--data-dir", str(broker.data_dir), "--port", str(port)],
        f"web-{port}",
    )

    def ready() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(ready, 30, "arete web run ready")
    return web


async def run_session(
    base: str, ws_base: str, admin_token: str, viewer_token: str
) -> dict[str, Any]:
    """The websocket half: a viewer watching events while the admin uses a terminal."""
    seen_by_viewer: list[str] = []
    async with websockets.connect(f"{ws_base}/ws?token={viewer_token}") as viewer_ws:
        assert json.loads(await viewer_ws.recv())["kind"] == "hello"
        async with websockets.connect(f"{ws_base}/ws?token={admin_token}") as admin_ws:
            assert json.loads(await admin_ws.recv())["kind"] == "hello"
            async with httpx.AsyncClient(
                base_url=base, headers={"Authorization": f"Bearer {admin_token}"}, timeout=30
            ) as admin:
                shell = await admin.post(
                    "/agents/a1/command",
                    params={"wait": True},
                    json={"name": "shell", "args": {"argv": ["echo", SHELL_SECRET]}},
                )
                assert shell.json()["state"] == "ok", shell.text
                assert SHELL_SECRET in json.dumps(shell.json()["result"])
            # The admin's own event stream shows the output; the viewer's must not.
            async with asyncio.timeout(15):
                while True:
                    frame = await admin_ws.recv()
                    if SHELL_SECRET in str(frame) and '"ok"' in str(frame):
                        break
        terminal_url = f"{ws_base}/agents/a1/terminal?token={admin_token}&cols=80&rows=24"
        async with websockets.connect(terminal_url) as term:
            async with asyncio.timeout(20):
                while json.loads(await term.recv())["type"] != "ready":
                    pass
                await term.send(json.dumps({"type": "input", "data": "echo term-$((6*7))\n"}))
                output = ""
                while "term-42" not in output:
                    frame = json.loads(await term.recv())
                    output += frame.get("data", "") if frame["type"] == "output" else ""
                await term.send(json.dumps({"type": "close"}))
        deadline = time.monotonic() + 3  # what the viewer got meanwhile, and a bit more
        while (left := deadline - time.monotonic()) > 0:
            try:
                seen_by_viewer.append(str(await asyncio.wait_for(viewer_ws.recv(), left)))
            except TimeoutError:
                break
    return {"viewer_frames": seen_by_viewer}


def test_no_secret_in_any_log_and_no_shell_output_for_a_viewer(
    broker: Broker,
    procs: Callable[..., Proc],
    start_agent: Callable[..., AgentProc],
) -> None:
    admin_password = "admin-pw-" + secrets.token_hex(8)
    wrong_password = "wrong-pw-" + secrets.token_hex(8)
    admin_token, viewer_token = make_users(broker, admin_password)
    agent = start_agent("a1")
    port = free_port()
    web = start_web(procs, broker, port)
    base, ws_base = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}"

    # -- sessions: a failed and a good sign-in, the cookie used -------------------------
    browser = httpx.Client(base_url=base, timeout=30)
    bad = browser.post("/auth/login", json={"username": "boss", "password": wrong_password})
    assert bad.status_code == 401
    good = browser.post("/auth/login", json={"username": "boss", "password": admin_password})
    assert good.status_code == 200
    session_cookie = browser.cookies["arete_session"]
    wait_for(lambda: browser.get("/agents/a1").json().get("state") == "online", 20, "a1 online")
    # -- websockets with ?token=, a shell command, a terminal ------------------------
    frames = asyncio.run(run_session(base, ws_base, admin_token, viewer_token))
    # -- a job of shell commands, and the viewer reading everything ---------------------
    admin = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {admin_token}"})
    job = admin.post(
        "/jobs", json={"name": "shell", "args": {"argv": ["echo", SHELL_SECRET]}, "agents": ["a1"]}
    ).json()
    wait_for(lambda: admin.get(f"/jobs/{job['id']}").json()["state"] != "running", 20, "job")
    viewer = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {viewer_token}"})
    commands = viewer.get("/commands").json()
    shells = [c for c in commands if c["name"] == "shell"]
    assert len(shells) == 2
    assert all(c["redacted"] and c["args"] == {} for c in shells)
    readable = [
        json.dumps(commands),
        *(viewer.get(f"/commands/{c['id']}").text for c in commands),
        *(viewer.get(f"/commands/{c['id']}/history").text for c in commands),
        viewer.get("/audit", params={"limit": 1000}).text,
        viewer.get("/jobs").text,
        viewer.get(f"/jobs/{job['id']}").text,
        *frames["viewer_frames"],
    ]
    leaked = [text[:300] for text in readable if SHELL_SECRET in text or "term-42" in text]
    assert not leaked, leaked
    assert SHELL_SECRET in admin.get(f"/commands/{shells[0]['id']}").text, "an admin still sees it"
    audit_entries = viewer.get("/audit", params={"limit": 1000}).json()
    assert {"command.issue", "terminal.open"} <= {e["action"] for e in audit_entries}
    browser.post("/auth/logout")
    for client in (browser, admin, viewer):
        client.close()

    # -- every log, searched for every secret ---------------------------------------------
    web.signal(signal.SIGTERM)
    web.wait(30)
    agent.proc.stop()
    time.sleep(0.2)
    assert broker.proc is not None
    logs = {
        "web (api + maestro)": web.log.read_text(errors="replace"),
        "broker": broker.proc.log.read_text(errors="replace"),
        "agent": agent.proc.log.read_text(errors="replace"),
    }
    assert "/ws?token=[redacted]" in logs["web (api + maestro)"], "the request lines are logged"
    assert "terminal?token=[redacted]" in logs["web (api + maestro)"]
    secrets_ = {
        "admin password": admin_password,
        "wrong password": wrong_password,
        "admin token": admin_token,
        "viewer token": viewer_token,
        "session cookie": session_cookie,
        "maestro broker password": broker.maestro_password,
        "viewer broker password": broker.viewer_password,
        "agent broker password": broker.password_of("a1"),
    }
    found = [
        f"{what} in the {log} log"
        for log, text in logs.items()
        for what, secret in secrets_.items()
        if secret in text
    ]
    assert not found, found
