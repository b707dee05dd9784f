"""The allowed half of the role matrix, against a working stack: every protected route,
called by the lowest role it documents, gets the route's real success answer.

The refused half (401 without credentials, 403 below the documented role) is the pure
matrix in tests/pure/test_api_roles.py. Here a real broker, the API's own maestro and
real agents are up, so "allowed" means the work was done (2xx and the right body), not
"anything but 403" (a route without its maestro answers 503, which proves nothing).
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.fixtures.agent import AgentProc
from tests.fixtures.api import ApiServer
from tests.fixtures.broker import Broker
from tests.fixtures.procs import wait_for
from tests.fixtures.releases import KEY, NEXT, store_release
from tests.pure.test_api_roles import ROUTES
from web_api.auth.roles import Role


@dataclass
class Calls:
    """Each route called once by its lowest allowed role; mismatches collected."""

    api: ApiServer
    covered: set[tuple[str, str]] = field(default_factory=set)
    wrong: list[str] = field(default_factory=list)

    def call(
        self,
        role: Role,
        method: str,
        template: str,
        expected: int,
        *,
        path: str | None = None,
        token: str | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """``method path`` (``template`` with its values) as ``role``; expects ``expected``."""
        needed = {(m, t): r for m, t, r, _ in ROUTES}.get((method, template))
        assert needed is not None, f"{method} {template} is not a protected route"
        others = {(m, t): o for m, t, _, o in ROUTES}[(method, template)]
        on_other = path is not None and "{name}" in template and f"/users/{role.value}/" not in path
        lowest = others if on_other and others is not None else needed
        assert role is lowest, f"{method} {template}: call it as {lowest.value}, not {role.value}"
        client = self.api.client(role)
        if token is not None:  # a user of the test's own, who has that role
            client.headers["Authorization"] = f"Bearer {token}"
        answer = client.request(method, path or template, **kwargs)
        self.covered.add((method, template))
        if answer.status_code != expected:
            self.wrong.append(
                f"{role.value} {method} {path or template}: {answer.status_code} "
                f"(expected {expected}) {answer.text[:200]}"
            )
        return answer


def wait_state(api: ApiServer, agent_id: str, state: str, timeout: float = 20.0) -> None:
    viewer = api.client(Role.VIEWER)

    def reached() -> bool:
        answer = viewer.get(f"/agents/{agent_id}")
        return answer.status_code == 200 and answer.json()["state"] == state

    wait_for(reached, timeout, f"{agent_id} {state}", step=0.1)


def firing_alert(api: ApiServer, agent_id: str) -> str | None:
    alerts = api.client(Role.VIEWER).get("/alerts", params={"agent": agent_id}).json()
    firing = [a["id"] for a in alerts if a["phase"] == "firing"]
    return firing[0] if firing else None


def test_every_route_does_its_work_for_the_lowest_role_it_documents(
    api_server: Callable[..., ApiServer],
    start_agent: Callable[..., AgentProc],
    xvfb_display: str,
    broker: Broker,
) -> None:
    start_agent("a1", env={"DISPLAY": xvfb_display})
    a2 = start_agent("a2")
    # A release in the store, so that a rollout of it may start.
    api = api_server(maestro_options=store_release(broker.data_dir, KEY, NEXT))
    wait_state(api, "a1", "online")
    wait_state(api, "a2", "online")
    run = Calls(api)
    V, OP, A = Role.VIEWER, Role.OPERATOR, Role.ADMIN  # noqa: N806 - reads as a table

    # -- agents, metrics, commands ----------------------------------------------------------
    agents = run.call(V, "GET", "/agents", 200).json()
    assert {a["id"] for a in agents} >= {"a1", "a2"}
    assert run.call(V, "GET", "/agents/a1", 200).json()["id"] == "a1"
    run.call(V, "GET", "/agents/a1/metrics", 200)
    command = run.call(
        OP,
        "POST",
        "/agents/a1/command",
        200,
        params={"wait": True},
        json={"name": "metrics", "timeout": 10},
    ).json()
    assert command["state"] == "ok", command
    listed = run.call(V, "GET", "/commands", 200).json()
    assert command["id"] in [c["id"] for c in listed]
    one = f"/commands/{command['id']}"
    assert run.call(V, "GET", "/commands/a1", 200, path=one).json()["state"] == "ok"
    run.call(V, "GET", "/commands/a1/history", 200, path=f"{one}/history")
    shot = run.call(
        OP, "POST", "/agents/a1/screenshot", 200, params={"wait": True}, json=None
    ).json()
    assert shot["state"] == "ok", shot
    image = run.call(
        V, "GET", "/commands/a1/screenshot", 200, path=f"/commands/{shot['id']}/screenshot"
    )
    assert image.headers["content-type"] == "image/png"
    assert image.content.startswith(b"\x89PNG")

    # -- jobs -------------------------------------------------------------------------------
    job = run.call(
        OP, "POST", "/jobs", 201, json={"name": "metrics", "agents": ["a1"], "batch_size": 5}
    ).json()
    assert job["id"] in [j["id"] for j in run.call(V, "GET", "/jobs", 200).json()]
    wait_for(
        lambda: api.client(V).get(f"/jobs/{job['id']}").json()["state"] != "running", 15, "job"
    )
    done = run.call(V, "GET", "/jobs/a1", 200, path=f"/jobs/{job['id']}").json()
    assert (done["state"], done["counts"]) == ("done", {"ok": 1})
    finished = run.call(OP, "POST", "/jobs/a1/abort", 409, path=f"/jobs/{job['id']}/abort")
    assert "already ended" in finished.json()["detail"], "the operator got the real answer"
    rollout = run.call(
        OP, "POST", "/jobs/update", 201, json={"version": NEXT, "agents": ["a1"], "canary": 0}
    ).json()
    assert (rollout["kind"], rollout["rollout"]["version"]) == ("update", NEXT)

    # -- alert rules and notifier health ----------------------------------------------------
    rules = {r["name"]: r for r in run.call(V, "GET", "/alerts/rules", 200).json()}
    assert rules["cpu_high"]["threshold"] == 90
    assert run.call(OP, "GET", "/notifiers", 200).json() == {"configured": False, "channels": []}

    # -- observability, audit, own identity -------------------------------------------------
    assert "arete_" in run.call(V, "GET", "/metrics", 200).text
    audit = run.call(V, "GET", "/audit", 200).json()
    assert any(e["action"] == "command.issue" for e in audit)
    assert run.call(V, "GET", "/auth/me", 200).json()["user"] == "viewer"

    # -- silences ---------------------------------------------------------------------------
    silence = run.call(
        OP, "POST", "/silences", 201, json={"agent": "a1", "duration_s": 60, "reason": "roles"}
    ).json()
    assert [s["id"] for s in run.call(V, "GET", "/silences", 200).json()] == [silence["id"]]
    run.call(OP, "DELETE", "/silences/a1", 200, path=f"/silences/{silence['id']}")
    assert api.client(V).get("/silences").json() == []

    # -- users and tokens -------------------------------------------------------------------
    assert "viewer" in [u["name"] for u in run.call(A, "GET", "/users", 200).json()]
    password = "a temporary password"
    made_user = {"name": "temp", "role": "viewer", "password": password}
    run.call(A, "POST", "/users", 201, json=made_user)
    temp_token = api.client(A).post("/users/temp/tokens", json={}).json()["token"]
    change = {"current_password": password, "new_password": "another temporary one"}
    run.call(V, "POST", "/auth/password", 200, token=temp_token, json=change)
    login = httpx.post(
        f"{api.base_url}/auth/login",
        json={"username": "temp", "password": "another temporary one"},
    )
    assert login.status_code == 200, "the new password is the one that works"
    promoted = run.call(
        A, "PATCH", "/users/{name}", 200, path="/users/temp", json={"role": "admin"}
    )
    assert promoted.json()["role"] == "admin"
    run.call(A, "DELETE", "/users/{name}", 204, path="/users/temp")
    assert "temp" not in [u["name"] for u in api.client(A).get("/users").json()]
    for caller in (V, A):  # a viewer on their own tokens; an admin on the viewer's
        tokens = "/users/viewer/tokens"
        made = run.call(caller, "POST", "/users/{name}/tokens", 201, path=tokens, json={})
        made_id = made.json()["id"]
        listed_tokens = run.call(caller, "GET", "/users/{name}/tokens", 200, path=tokens)
        assert made_id in [t["id"] for t in listed_tokens.json()]
        run.call(caller, "DELETE", "/users/{name}/tokens/a1", 204, path=f"{tokens}/{made_id}")
        gone = httpx.get(
            f"{api.base_url}/auth/me", headers={"Authorization": f"Bearer {made.json()['token']}"}
        )
        assert gone.status_code == 401, "the revoked token no longer works"

    # -- restart, then an alert on the same agent, then stop --------------------------------
    restarted = run.call(OP, "POST", "/agents/a1/restart", 200, path="/agents/a2/restart")
    assert restarted.json()["agent"] == "a2"
    wait_for(
        lambda: api.client(V).get(f"/commands/{restarted.json()['id']}").json()["state"] == "ok",
        20,
        "restart ok",
    )
    wait_state(api, "a2", "online")

    a2.signal(signal.SIGSTOP)  # silent while connected: the maestro raises agent_critical
    try:
        wait_for(lambda: firing_alert(api, "a2") is not None, 30, "a firing alert for a2")
        alert_id = firing_alert(api, "a2")
        assert alert_id is not None
        assert alert_id in [a["id"] for a in run.call(V, "GET", "/alerts", 200).json()]
        one_alert = run.call(V, "GET", "/alerts/a1", 200, path=f"/alerts/{alert_id}").json()
        assert one_alert["agent"] == "a2"
        acked = run.call(OP, "POST", "/alerts/a1/ack", 200, path=f"/alerts/{alert_id}/ack")
        assert acked.json()["acked_by"] == "user:operator"
        run.call(
            OP,
            "POST",
            "/alerts/a1/silence",
            201,
            path=f"/alerts/{alert_id}/silence",
            json={"duration_s": 60},
        )
    finally:
        a2.signal(signal.SIGCONT)
    wait_state(api, "a2", "online")
    stopped = run.call(
        OP, "POST", "/agents/a1/stop", 200, path="/agents/a2/stop", params={"wait": True}
    ).json()
    assert stopped["state"] == "ok", stopped
    a2.proc.wait(15)

    # -- releases: the store's verified releases and whether they are on the broker -------
    listed = run.call(V, "GET", "/releases", 200).json()
    assert [(r["version"], r["published"]) for r in listed["items"]] == [(NEXT, True)]

    run.call(V, "POST", "/auth/logout", 204)

    assert not run.wrong, "\n".join(run.wrong)
    assert run.covered == {(m, t) for m, t, _, _ in ROUTES}, "every protected route was called"
