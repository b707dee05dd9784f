"""The read endpoints behind Mission Control's pages, against a real stack: the alert
rules with their thresholds, notifier health after a real delivery, and aborting a job
whose agent does not answer."""

from __future__ import annotations

import signal
from collections.abc import Callable

import pytest

from tests.fixtures.agent import AgentProc
from tests.fixtures.api import ApiServer
from tests.fixtures.chat_servers import FakeDiscord
from tests.fixtures.procs import wait_for
from web_api.auth.roles import Role


def wait_online(api: ApiServer, agent_id: str) -> None:
    viewer = api.client(Role.VIEWER)

    def online() -> bool:
        answer = viewer.get(f"/agents/{agent_id}")
        return answer.status_code == 200 and answer.json()["state"] == "online"

    wait_for(online, 20, f"{agent_id} online", step=0.1)


def test_rules_list_built_ins_with_their_overridden_thresholds_and_those_switched_off(
    api_server: Callable[..., ApiServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ARETE_MAESTRO_ALERTS__BUILTIN__CPU_HIGH__THRESHOLD", "75")
    monkeypatch.setenv("ARETE_MAESTRO_ALERTS__BUILTIN__CPU_HIGH__FOR_S", "120")
    monkeypatch.setenv("ARETE_MAESTRO_ALERTS__BUILTIN__DISK_HIGH__ENABLED", "false")
    api = api_server()
    rules = {r["name"]: r for r in api.client(Role.VIEWER).get("/alerts/rules").json()}
    cpu = rules["cpu_high"]
    assert (cpu["kind"], cpu["field"], cpu["op"], cpu["threshold"]) == ("metric", "cpu", ">", 75)
    assert (cpu["for_s"], cpu["enabled"], cpu["builtin"]) == (120, True, True)
    assert rules["disk_high"]["enabled"] is False, "a built-in switched off is still listed"
    assert rules["disk_high"]["threshold"] == 90
    offline = rules["agent_offline"]
    assert (offline["kind"], offline["severity"], offline["states"]) == (
        "state",
        "critical",
        ["offline"],
    )
    assert rules["broker_unreachable"]["scope"] == "maestro"


def test_notifier_health_shows_the_last_delivery_and_an_empty_queue(
    api_server: Callable[..., ApiServer],
    start_agent: Callable[..., AgentProc],
    fake_discord: FakeDiscord,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ARETE_MAESTRO_NOTIFY__DISCORD__WEBHOOK_URL", fake_discord.webhook_url)
    agent = start_agent("n1")
    api = api_server()
    wait_online(api, "n1")
    operator = api.client(Role.OPERATOR)
    before = operator.get("/notifiers").json()
    assert before["configured"] is True
    [discord] = before["channels"]
    assert (discord["channel"], discord["status"], discord["last_sent_at"]) == (
        "discord",
        "ok",
        None,
    )
    assert api.client(Role.VIEWER).get("/notifiers").status_code == 403

    agent.kill9()  # the broker's will: offline at once, agent_offline fires and is paged
    wait_for(lambda: bool(fake_discord.delivered()), 30, "the page to Discord")

    def delivered() -> bool:
        [channel] = operator.get("/notifiers").json()["channels"]
        return channel["last_sent_at"] is not None and channel["queued"] == 0

    wait_for(delivered, 15, "the delivery in the notifier health")
    [after] = operator.get("/notifiers").json()["channels"]
    assert (after["status"], after["sent"], after["last_error"]) == ("ok", 1, None)


def test_no_channel_configured_is_said_plainly(api_server: Callable[..., ApiServer]) -> None:
    api = api_server()
    assert api.client(Role.OPERATOR).get("/notifiers").json() == {
        "configured": False,
        "channels": [],
    }


def test_aborting_a_job_sends_no_further_command(
    api_server: Callable[..., ApiServer], start_agent: Callable[..., AgentProc]
) -> None:
    first = start_agent("j1")
    start_agent("j2")
    api = api_server()
    wait_online(api, "j1")
    wait_online(api, "j2")
    operator = api.client(Role.OPERATOR)
    first.signal(signal.SIGSTOP)  # connected but silent: its command waits
    try:
        job = operator.post(
            "/jobs",
            json={"name": "metrics", "agents": ["j1", "j2"], "batch_size": 1, "timeout": 20},
        ).json()
        assert job["state"] == "running"
        aborted = operator.post(f"/jobs/{job['id']}/abort")
        assert aborted.status_code == 200, aborted.text
        body = aborted.json()
        assert (body["state"], body["stopped_reason"]) == ("stopped", "aborted by user:operator")
        again = operator.post(f"/jobs/{job['id']}/abort")
        assert again.status_code == 409
        assert "already ended" in again.json()["detail"]
        assert operator.post("/jobs/job-0-none/abort").status_code == 404
        commands = operator.get("/commands", params={"agent": "j2"}).json()
        assert [c for c in commands if c.get("job_id") == job["id"]] == [], (
            "the second batch (j2) was never sent"
        )
        audit = api.client(Role.VIEWER).get("/audit").json()
        assert any(e["action"] == "job.abort" and e["target"] == job["id"] for e in audit)
        wait_for(
            lambda: any(
                e["action"] == "job.finish" and e["target"] == job["id"]
                for e in api.client(Role.VIEWER).get("/audit").json()
            ),
            10,
            "the job's summary in the audit log",
        )
    finally:
        first.signal(signal.SIGCONT)
