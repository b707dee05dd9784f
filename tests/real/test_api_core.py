"""The web API over a real maestro, broker and agent, through a real uvicorn server."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from tests.fixtures.agent import AgentProc
from tests.fixtures.api import ADMIN_PASSWORD, ApiServer
from tests.fixtures.procs import REPO, wait_for
from web_api.auth.roles import Role


def wait_online(client: httpx.Client, agent_id: str, timeout: float = 15.0) -> None:
    def online() -> bool:
        answer = client.get(f"/agents/{agent_id}")
        return answer.status_code == 200 and answer.json()["state"] == "online"

    wait_for(online, timeout, f"{agent_id} online", step=0.1)


def test_login_sets_an_httponly_cookie_that_identifies_the_user(
    api_server: Callable[..., ApiServer],
) -> None:
    api = api_server()
    browser = api.client(role=None)
    assert browser.get("/auth/me").status_code == 401
    wrong = browser.post("/auth/login", json={"username": "admin", "password": "nope"})
    assert wrong.status_code == 401
    assert wrong.json()["error"] == "unauthorized"
    signed_in = browser.post("/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD})
    assert signed_in.json() == {"user": "admin", "role": "admin"}
    cookie = signed_in.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=strict" in cookie
    assert browser.get("/auth/me").json() == {"user": "admin", "role": "admin"}
    # A page of another site cannot write with the cookie.
    forged = browser.post("/silences", json={}, headers={"Origin": "http://evil.example"})
    assert forged.status_code == 403
    assert browser.post("/auth/logout").status_code == 204
    assert browser.get("/auth/me").status_code == 401


def test_a_command_with_wait_ends_ok_and_is_audited_with_its_sender(
    api_server: Callable[..., ApiServer], start_agent: Callable[..., AgentProc]
) -> None:
    start_agent("a1")
    api = api_server()
    operator = api.client(Role.OPERATOR)
    wait_online(operator, "a1")
    listed = operator.get("/agents", params={"state": "online"}).json()
    assert [a["id"] for a in listed] == ["a1"]

    answer = operator.post("/agents/a1/command?wait=true", json={"name": "metrics", "timeout": 10})
    assert answer.status_code == 200, answer.text
    command = answer.json()
    assert command["state"] == "ok"
    assert command["actor"] == "user:operator"
    assert operator.get(f"/commands/{command['id']}").json()["state"] == "ok"

    audit = api.client(Role.VIEWER).get("/audit", params={"actor": "user:operator"}).json()
    issued = [e for e in audit if e["action"] == "command.issue"]
    assert [(e["target"], e["detail"]["command_id"]) for e in issued] == [("a1", command["id"])]

    shell = operator.post("/agents/a1/command", json={"name": "shell", "args": {"command": "id"}})
    assert shell.status_code == 403
    assert operator.post("/agents/nobody/restart").status_code == 404
    bad = operator.post("/agents/a1/command", json={"name": "shell", "args": {"x": 1}})
    assert bad.status_code == 403  # the role is checked before the arguments
    bad_args = api.client(Role.ADMIN).post(
        "/agents/a1/command", json={"name": "docker_restart", "args": {"container": "../x"}}
    )
    assert bad_args.status_code == 422
    assert bad_args.json()["error"] == "bad_args"


def test_a_job_runs_on_agents_chosen_by_label(
    api_server: Callable[..., ApiServer], start_agent: Callable[..., AgentProc]
) -> None:
    start_agent("a1")
    api = api_server()
    operator = api.client(Role.OPERATOR)
    wait_online(operator, "a1")
    created = operator.post("/jobs", json={"name": "metrics", "labels": {}, "batch_size": 5})
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]
    wait_for(lambda: operator.get(f"/jobs/{job_id}").json()["state"] != "running", 15, "job")
    job = operator.get(f"/jobs/{job_id}").json()
    assert job["state"] == "done"
    assert job["counts"] == {"ok": 1}
    nobody = operator.post("/jobs", json={"name": "metrics", "labels": {"role": "none"}})
    assert nobody.status_code == 422


async def _first(
    url: str,
    headers: dict[str, str],
    want: Callable[[dict[str, Any]], bool],
    send: dict[str, Any] | None = None,
    limit_s: float = 20.0,
) -> dict[str, Any]:
    async with websockets.connect(url, additional_headers=headers) as ws:
        if send is not None:
            await ws.send(json.dumps(send))
        async with asyncio.timeout(limit_s):
            while True:
                frame: dict[str, Any] = json.loads(await ws.recv())
                if want(frame):
                    return frame


def test_websocket_from_a_foreign_origin_is_refused(api_server: Callable[..., ApiServer]) -> None:
    api = api_server()
    url = f"{api.ws_url}/ws?token={api.tokens[Role.VIEWER]}"

    async def connect(origin: str) -> None:
        async with websockets.connect(url, additional_headers={"Origin": origin}) as ws:
            await ws.recv()

    with pytest.raises(InvalidStatus) as refused:
        asyncio.run(connect("http://evil.example"))
    assert refused.value.response.status_code == 403
    with pytest.raises(InvalidStatus):
        asyncio.run(_first(f"{api.ws_url}/ws", {}, lambda f: True))
    hello = asyncio.run(
        _first(url, {"Origin": api.base_url}, lambda f: f["kind"] == "hello", limit_s=5)
    )
    assert hello["data"] == {"user": "viewer"}


def test_websocket_delivers_an_agent_coming_online_and_its_metrics(
    api_server: Callable[..., ApiServer], start_agent: Callable[..., AgentProc]
) -> None:
    api = api_server()
    url = f"{api.ws_url}/ws?token={api.tokens[Role.VIEWER]}"

    async def watch() -> tuple[dict[str, Any], dict[str, Any]]:
        async with websockets.connect(url) as ws:
            assert json.loads(await ws.recv())["kind"] == "hello"
            start_agent("a1")
            await ws.send(json.dumps({"subscribe": ["a1"]}))
            status = metrics = None
            async with asyncio.timeout(20):
                while status is None or metrics is None:
                    frame = json.loads(await ws.recv())
                    if frame["kind"] == "agent" and frame["data"].get("state") == "online":
                        status = frame
                    if frame["kind"] == "metrics":
                        metrics = frame
            return status, metrics

    status, metrics = asyncio.run(watch())
    assert status["data"]["id"] == "a1"
    assert metrics["data"]["agent"] == "a1"
    assert "cpu" in metrics["data"]["values"]


def test_a_request_flood_gets_429_with_retry_after(api_server: Callable[..., ApiServer]) -> None:
    api = api_server(rate_per_client=5.0, burst_per_client=10.0)
    client = api.client(Role.VIEWER)
    codes = [client.get("/auth/me") for _ in range(30)]
    limited = [a for a in codes if a.status_code == 429]
    assert limited, [a.status_code for a in codes]
    assert limited[0].json()["error"] == "rate_limited"
    assert int(limited[0].headers["retry-after"]) >= 1
    assert client.get("/healthz").status_code == 200  # probes are never limited


def test_probes_and_prometheus_metrics(api_server: Callable[..., ApiServer]) -> None:
    api = api_server()
    anonymous = api.client(role=None)
    assert anonymous.get("/healthz").json()["status"] == "ok"
    assert anonymous.get("/readyz").json()["checks"] == {"mqtt": True, "store": True}
    assert anonymous.get("/metrics").status_code == 401
    scraped = api.client(Role.VIEWER).get("/metrics")
    assert scraped.status_code == 200
    assert "arete" in scraped.text
    page = anonymous.get("/")
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    assert page.headers["x-frame-options"] == "DENY"
    assert anonymous.get("/agents/x/nothing").json()["error"] == "not_found"


def test_users_add_prints_a_token_that_works(api_server: Callable[..., ApiServer]) -> None:
    api = api_server()
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from web_api.cli import users_app; users_app()",
            "add",
            "ci",
            "--role",
            "operator",
            "--data-dir",
            str(api.settings.data_dir),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=True,
    )
    token = done.stdout.strip()
    assert token.startswith("arete_")
    client = httpx.Client(base_url=api.base_url, headers={"Authorization": f"Bearer {token}"})
    with client:
        assert client.get("/auth/me").json() == {"user": "ci", "role": "operator"}
    admin = api.client(Role.ADMIN)
    assert "ci" in [u["name"] for u in admin.get("/users").json()]
    assert admin.delete("/users/ci").status_code == 204
    time.sleep(0.1)
    with httpx.Client(base_url=api.base_url, headers={"Authorization": f"Bearer {token}"}) as c:
        assert c.get("/auth/me").status_code == 401


def test_silences_are_made_and_ended_by_operators_and_audited(
    api_server: Callable[..., ApiServer],
) -> None:
    api = api_server()
    operator = api.client(Role.OPERATOR)
    made = operator.post("/silences", json={"agent": "a1", "duration_s": 600, "reason": "deploy"})
    assert made.status_code == 201, made.text
    silence = made.json()
    assert silence["created_by"] == "user:operator"
    assert [s["id"] for s in api.client(Role.VIEWER).get("/silences").json()] == [silence["id"]]
    assert api.client(Role.VIEWER).post("/silences", json={}).status_code == 403
    assert operator.delete(f"/silences/{silence['id']}").status_code == 200
    assert operator.get("/silences").json() == []
    assert operator.post("/alerts/nope/ack").status_code == 404
    actions = [
        e["action"] for e in operator.get("/audit", params={"actor": "user:operator"}).json()
    ]
    assert actions[:2] == ["alert.unsilence", "alert.silence"]


def test_users_passwd_changes_the_dashboard_password_and_refuses_a_short_one(
    api_server: Callable[..., ApiServer],
) -> None:
    api = api_server()

    data_dir = str(api.settings.data_dir)

    def passwd(new: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "arete_cli", "users", "passwd", "admin", "--data-dir", data_dir],
            input=f"{new}\n{new}\n",
            capture_output=True,
            text=True,
            timeout=60,
            cwd=REPO,
            check=False,
        )

    def login(password: str) -> int:
        with httpx.Client(base_url=api.base_url) as client:
            answer = client.post("/auth/login", json={"username": "admin", "password": password})
            return answer.status_code

    short = passwd("short")
    assert short.returncode == 2
    assert "8-" in short.stderr
    changed = passwd("a-much-better-passphrase")
    assert changed.returncode == 0, changed.stderr
    assert login("a-much-better-passphrase") == 200
    assert login(ADMIN_PASSWORD) == 401
