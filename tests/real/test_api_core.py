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


def me(user: str, role: str) -> dict[str, Any]:
    """What /auth/me and the login answer for a user whose password need not change."""
    return {"user": user, "role": role, "must_change_password": False}


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
    assert signed_in.json() == me("admin", "admin")
    cookie = signed_in.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=strict" in cookie
    assert browser.get("/auth/me").json() == me("admin", "admin")
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
    assert anonymous.get("/readyz").json()["checks"] == {"mqtt": True, "store": True, "disk": True}
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
        assert client.get("/auth/me").json() == me("ci", "operator")
    admin = api.client(Role.ADMIN)
    assert "ci" in [u["name"] for u in admin.get("/users").json()]
    assert admin.delete("/users/ci").status_code == 204
    time.sleep(0.1)
    with httpx.Client(base_url=api.base_url, headers={"Authorization": f"Bearer {token}"}) as c:
        assert c.get("/auth/me").status_code == 401


def bearer(api: ApiServer, token: str) -> httpx.Client:
    client = httpx.Client(base_url=api.base_url, headers={"Authorization": f"Bearer {token}"})
    api.clients.append(client)
    return client


def test_a_token_made_through_the_api_works_until_revoked_then_gets_401(
    api_server: Callable[..., ApiServer],
) -> None:
    api = api_server()
    admin = api.client(Role.ADMIN)
    made = admin.post("/users/operator/tokens", json={"label": "ci deploy"})
    assert made.status_code == 201, made.text
    new = made.json()
    assert new["token"].startswith(f"arete_{new['id']}_")
    assert (new["label"], new["last_used_at"]) == ("ci deploy", None)
    ci = bearer(api, new["token"])
    assert ci.get("/auth/me").json() == me("operator", "operator")
    assert ci.get("/auth/me").status_code == 200  # now trusted without argon2 for a while

    listed = admin.get("/users/operator/tokens").json()
    mine = next(t for t in listed if t["id"] == new["id"])
    assert set(mine) == {"id", "label", "created_at", "last_used_at"}
    assert mine["last_used_at"] is not None
    assert new["token"].split("_", 2)[2] not in json.dumps(listed)

    assert admin.delete(f"/users/operator/tokens/{new['id']}").status_code == 204
    revoked = ci.get("/auth/me")
    assert revoked.status_code == 401
    assert revoked.json()["error"] == "unauthorized"
    assert admin.delete(f"/users/operator/tokens/{new['id']}").status_code == 404
    assert new["id"] not in [t["id"] for t in admin.get("/users/operator/tokens").json()]
    assert api.client(Role.OPERATOR).get("/auth/me").status_code == 200  # its other tokens

    entries = admin.get("/audit", params={"actor": "user:admin"}).json()
    tokens = [(e["action"], e["target"], e["detail"]["token_id"]) for e in entries[:2]]
    assert tokens == [("token.revoke", "operator", new["id"]), ("token.add", "operator", new["id"])]
    assert admin.get("/users/nobody/tokens").status_code == 404
    assert admin.post("/users/nobody/tokens", json={}).status_code == 404
    bad = admin.post("/users/operator/tokens", json={"label": "two\nlines"})
    assert bad.status_code == 422
    assert "printable" in bad.json()["detail"]
    assert admin.delete("/users/operator/tokens/not-an-id").status_code == 422


def test_a_viewer_manages_their_own_tokens_but_not_another_users(
    api_server: Callable[..., ApiServer],
) -> None:
    api = api_server()
    viewer = api.client(Role.VIEWER)
    operators = api.client(Role.ADMIN).post("/users/operator/tokens", json={}).json()
    refused = viewer.delete(f"/users/operator/tokens/{operators['id']}")
    assert refused.status_code == 403
    assert refused.json()["error"] == "forbidden"
    assert viewer.get("/users/operator/tokens").status_code == 403
    assert viewer.post("/users/operator/tokens", json={"label": "x"}).status_code == 403
    assert bearer(api, operators["token"]).get("/auth/me").status_code == 200

    own = viewer.post("/users/viewer/tokens", json={"label": "laptop"})
    assert own.status_code == 201, own.text
    own_id = own.json()["id"]
    assert own_id in [t["id"] for t in viewer.get("/users/viewer/tokens").json()]
    assert viewer.delete(f"/users/viewer/tokens/{own_id}").status_code == 204
    assert bearer(api, own.json()["token"]).get("/auth/me").status_code == 401
    actions = [e["action"] for e in viewer.get("/audit", params={"actor": "user:viewer"}).json()]
    assert actions[:2] == ["token.revoke", "token.add"]


def test_users_token_add_tokens_and_revoke_work_while_the_server_runs(
    api_server: Callable[..., ApiServer],
) -> None:
    api = api_server()
    data_dir = str(api.settings.data_dir)

    def users(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "arete_cli", "users", *args, "--data-dir", data_dir],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=REPO,
            check=False,
        )

    added = users("token-add", "operator", "--label", "from the cli")
    assert added.returncode == 0, added.stderr
    token = added.stdout.strip()
    token_id = token.split("_")[1]
    client = bearer(api, token)
    assert client.get("/auth/me").json() == me("operator", "operator")
    listed = users("tokens", "operator")
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if line.startswith(token_id))
    assert "from the cli" in row
    assert "never" not in row  # it was just used
    assert token.split("_", 2)[2] not in listed.stdout

    revoked = users("revoke", "operator", token_id)
    assert revoked.returncode == 0, revoked.stderr
    assert client.get("/auth/me").status_code == 401  # the server had it cached as good
    again = users("revoke", "operator", token_id)
    assert again.returncode == 1
    assert again.stderr.count("\n") == 1
    assert "has no token" in again.stderr
    unknown = users("tokens", "nobody")
    assert (unknown.returncode, unknown.stderr) == (2, "error: no user 'nobody'\n")


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


def test_text_that_is_not_unicode_is_refused_and_the_server_keeps_answering(
    api_server: Callable[..., ApiServer], start_agent: Callable[..., AgentProc]
) -> None:
    # JSON may spell a lone surrogate ("\ud800"); it decodes but can be neither stored
    # nor sent on as UTF-8. Each such body is a 4xx with a reason, never a 500.
    start_agent("a1")
    api = api_server()
    admin = api.client(Role.ADMIN)
    wait_online(admin, "a1")
    json_headers = {"Content-Type": "application/json"}
    bodies = {
        "/agents/a1/command": [
            '{"name": "shell", "args": {"\\ud800": 1}}',
            '{"name": "shell", "args": {"command": "echo \\ud800"}}',
        ],
        "/jobs": ['{"name": "shell", "args": {"command": "\\ud800"}, "agents": ["a1"]}'],
        "/silences": ['{"agent": "a1", "duration_s": 60, "reason": "\\ud800"}'],
    }
    for path, payloads in bodies.items():
        for payload in payloads:
            answer = admin.post(path, content=payload, headers=json_headers)
            assert 400 <= answer.status_code < 500, (path, payload, answer.text)
            assert answer.json()["detail"]
    assert admin.post("/agents/a1/command", json={"name": "metrics"}).status_code == 200
    assert admin.get("/commands", params={"agent": "a1"}).json()[0]["name"] == "metrics"


async def read_until_closed(ws: Any) -> None:
    while True:
        await ws.recv()


def test_an_open_websocket_is_closed_once_its_token_is_revoked(
    api_server: Callable[..., ApiServer],
) -> None:
    api = api_server(ws_recheck_s=0.2)
    admin = api.client(Role.ADMIN)
    made = admin.post("/users/viewer/tokens", json={"label": "phone"}).json()
    url = f"{api.ws_url}/ws?token={made['token']}"

    async def watch() -> tuple[int | None, float]:
        async with websockets.connect(url) as ws:
            assert json.loads(await ws.recv())["kind"] == "hello"
            await asyncio.sleep(0.6)  # rechecked a few times: still open
            assert admin.delete(f"/users/viewer/tokens/{made['id']}").status_code == 204
            revoked = time.monotonic()
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(read_until_closed(ws), 5)
            return ws.close_code, time.monotonic() - revoked

    code, after = asyncio.run(watch())
    assert code == 4401
    assert after < 2.0
