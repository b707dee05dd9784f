"""Fleet rollout (POST /jobs/update) over a real broker, maestro and web API, with the
load generator's simulated agents answering ``update`` as agents with a host updater
would (bench/update_sim.py): their status moves pending -> installing -> switched ->
healthy, or, for a ``--broken`` one, back to the old version with ``rolled_back``."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.fixtures.api import ApiServer
from tests.fixtures.broker import Broker
from tests.fixtures.procs import REPO, Proc, wait_for
from tests.fixtures.releases import store_release
from web_api.auth.roles import Role

OLD, NEW = "0.1.0", "0.2.0"


def with_release(api_server: Callable[..., ApiServer], broker: Broker) -> ApiServer:
    """The web API over a maestro whose release store holds a signed release NEW."""
    options = store_release(broker.data_dir, Ed25519PrivateKey.generate(), NEW)
    return api_server(maestro_options=options)


def simulated_fleet(
    procs: Callable[..., Proc], broker: Broker, prefix: str, agents: int, broken: str = ""
) -> Proc:
    return procs(
        [
            sys.executable,
            str(REPO / "bench" / "loadgen.py"),
            *("--port", str(broker.port), "--root", broker.root),
            *("--password-file", str(broker.data_dir / "secrets" / "maestro.password")),
            *("--agents", str(agents), "--prefix", prefix, "--duration", "240"),
            *("--workers", "1", "--start-delay", "0", "--version", OLD),
            *("--label", f"fleet={prefix}", "--answer-updates", "--install-s", "1"),
            *("--broken", broken),
        ],
        f"loadgen-{prefix}",
    )


def fleet_views(api: httpx.Client, prefix: str) -> dict[str, dict[str, Any]]:
    answer = api.get("/agents", params={"label": f"fleet={prefix}"})
    assert answer.status_code == 200, answer.text
    return {view["id"]: view for view in answer.json()}


def wait_fleet_online(api: httpx.Client, prefix: str, count: int) -> None:
    def online() -> bool:
        views = fleet_views(api, prefix)
        fresh = [v for v in views.values() if v["state"] == "online" and v["metrics"]]
        return len(fresh) == count

    wait_for(online, 30, f"{count} simulated agents online with samples", step=0.2)


def wait_finished(api: httpx.Client, job_id: str, timeout: float) -> dict[str, Any]:
    def finished() -> bool:
        return api.get(f"/jobs/{job_id}").json()["finished_at"] is not None

    wait_for(finished, timeout, f"job {job_id} finished", step=0.25)
    job: dict[str, Any] = api.get(f"/jobs/{job_id}").json()
    return job


def update_commands(api: httpx.Client, job_id: str) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = api.get("/commands", params={"job": job_id}).json()
    return sorted(listed, key=lambda c: c["created_at"])


def test_a_rollout_updates_the_canary_first_then_the_batches_and_ends_done(
    api_server: Callable[..., ApiServer], broker: Broker, procs: Callable[..., Proc]
) -> None:
    api = with_release(api_server, broker)
    operator = api.client(Role.OPERATOR)
    load = simulated_fleet(procs, broker, "ro", 5)
    wait_fleet_online(operator, "ro", 5)
    before = fleet_views(operator, "ro")
    assert {v["version"] for v in before.values()} == {OLD}
    assert {v["update"] for v in before.values()} == {None}
    # A viewer may watch but not start one; a bad version is refused before anything.
    viewer = api.client(Role.VIEWER)
    assert viewer.post("/jobs/update", json={"version": NEW}).status_code == 403
    bad = operator.post("/jobs/update", json={"version": "2.0-beta"})
    assert bad.status_code == 422, bad.text
    unknown = operator.post("/jobs/update", json={"version": "0.3.0"})
    assert unknown.status_code == 422, unknown.text
    assert unknown.json()["error"] == "no_release"
    nobody = operator.post("/jobs/update", json={"version": NEW, "labels": {"fleet": "none"}})
    assert nobody.status_code == 422
    assert nobody.json()["error"] == "no_agents"

    started = time.monotonic()
    created = operator.post(
        "/jobs/update",
        json={"version": NEW, "labels": {"fleet": "ro"}, "canary": 1, "batch_size": 2},
    )
    assert created.status_code == 201, created.text
    job = created.json()
    assert job["kind"] == "update"
    assert job["rollout"]["batches"] == 3  # the canary, then 2 + 2
    job = wait_finished(operator, job["id"], 90)
    took = time.monotonic() - started
    assert job["state"] == "done", job
    phases = {a["id"]: a["phase"] for a in job["rollout"]["agents"]}
    assert phases == dict.fromkeys(before, "healthy")
    after = fleet_views(operator, "ro")
    assert {v["version"] for v in after.values()} == {NEW}
    assert {v["update"]["phase"] for v in after.values()} == {"healthy"}
    # The canary alone first: every other command went out after it had passed its gate.
    commands = update_commands(operator, job["id"])
    assert len(commands) == 5
    assert all(c["args"] == {"version": NEW} and c["state"] == "ok" for c in commands)
    canary = next(a for a in job["rollout"]["agents"] if a["batch"] == 0)
    assert commands[0]["agent"] == canary["id"]
    assert commands[1]["created_at"] - commands[0]["created_at"] > 1.0  # its install time
    audit = operator.get("/audit").json()
    finish = next(e for e in audit if e["action"] == "job.finish" and e["target"] == job["id"])
    assert finish["detail"]["phases"] == {"healthy": 5}
    assert any(e["action"] == "job.start" and e["target"] == job["id"] for e in audit)
    # Running it again: every agent is already there, nothing is sent.
    again = operator.post("/jobs/update", json={"version": NEW, "labels": {"fleet": "ro"}})
    assert wait_finished(operator, again.json()["id"], 10)["state"] == "done"
    assert update_commands(operator, again.json()["id"]) == []
    assert took < 60, f"5 agents took {took:.1f} s"
    assert load.alive()


def test_a_rolled_back_agent_fails_the_rollout_and_the_switched_ones_are_sent_back(
    api_server: Callable[..., ApiServer], broker: Broker, procs: Callable[..., Proc]
) -> None:
    api = with_release(api_server, broker)
    operator = api.client(Role.OPERATOR)
    simulated_fleet(procs, broker, "rb", 5, broken="rb000002")
    wait_fleet_online(operator, "rb", 5)
    created = operator.post(
        "/jobs/update",
        json={
            "version": NEW,
            "agents": ["rb000000", "rb000001", "rb000002", "rb000003", "rb000004"],
            "canary": 1,
            "batch_size": 2,
            "max_failures": 0,
        },
    )
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]
    wait_for(
        lambda: operator.get(f"/jobs/{job_id}").json()["state"] != "running",
        60,
        "the halt",
        step=0.25,
    )
    halted = operator.get(f"/jobs/{job_id}").json()
    assert halted["state"] == "failed"
    assert halted["stopped_reason"] == "1 failed, more than max_failures=0"
    again = operator.post(f"/jobs/{job_id}/abort")
    assert again.status_code == 409
    assert "(failed)" in again.json()["detail"]  # halted (rolling back) or already ended
    job = wait_finished(operator, job_id, 60)
    phases = {a["id"]: (a["phase"], a["reason"]) for a in job["rollout"]["agents"]}
    assert phases["rb000002"][0] == "rolled_back"
    assert "updater: rolled_back" in (phases["rb000002"][1] or "")
    # The canary and rb000001 had switched: the rollout sent them back.
    for agent in ("rb000000", "rb000001"):
        assert phases[agent] == ("rolled_back", f"rolled back by the rollout to {OLD}")
    assert phases["rb000003"][0] == "waiting"
    assert phases["rb000004"][0] == "waiting"
    assert job["rollout"]["stage"] == "ended"
    commands = update_commands(operator, job_id)
    rollbacks = sorted(c["agent"] for c in commands if c["args"] == {"rollback": True})
    assert rollbacks == ["rb000000", "rb000001"]
    assert {c["agent"] for c in commands} == {"rb000000", "rb000001", "rb000002"}
    views = fleet_views(operator, "rb")
    assert {v["version"] for v in views.values()} == {OLD}


def test_arete_fleet_update_follows_the_rollout_and_exits_by_its_outcome(
    api_server: Callable[..., ApiServer], broker: Broker, procs: Callable[..., Proc]
) -> None:
    api = with_release(api_server, broker)
    operator = api.client(Role.OPERATOR)
    simulated_fleet(procs, broker, "cl", 3, broken="cl000001")
    wait_fleet_online(operator, "cl", 3)
    env = {
        **os.environ,
        "ARETE_API_URL": api.base_url,
        "ARETE_API_TOKEN": api.tokens[Role.OPERATOR],
    }

    def fleet_update(*options: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "arete_cli", "fleet", "update", "--version", NEW]
        return subprocess.run(
            [*argv, "--interval", "0.5", *options],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    failed = fleet_update("--selector", "fleet=cl", "--canary", "1", "--batch", "2")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    lines = failed.stdout.splitlines()
    assert lines[0].startswith("job job-")
    assert "to 3 agents (2 batches, canary 1)" in lines[0]
    assert any(line.startswith("[") and "canary" in line for line in lines)  # plain progress
    assert "failed (version 0.2.0, 3 agents: rolled_back=3)" in failed.stdout
    assert "cl000001: rolled_back: updater: rolled_back" in failed.stdout
    done = fleet_update("--agents", "cl000000", "--canary", "0")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "done (version 0.2.0, 1 agents: healthy=1)" in done.stdout
    refused = fleet_update("--selector", "fleet=nobody")
    assert refused.returncode == 2
    assert "no_agents" in refused.stderr


def test_auto_update_rolls_a_label_group_out_to_the_newest_published_release_once(
    api_server: Callable[..., ApiServer], broker: Broker, procs: Callable[..., Proc]
) -> None:
    options = store_release(broker.data_dir, Ed25519PrivateKey.generate(), NEW)
    group = {"selector": {"fleet": "au"}, "every_s": 1, "canary": 1, "batch_size": 5}
    api = api_server(maestro_options=options, auto_update=[group])
    viewer = api.client(Role.VIEWER)
    simulated_fleet(procs, broker, "au", 3)
    simulated_fleet(procs, broker, "ot", 2)  # another group: left alone
    wait_fleet_online(viewer, "au", 3)

    def auto_jobs() -> list[dict[str, Any]]:
        return [j for j in viewer.get("/jobs").json() if j["actor"] == "auto-update"]

    wait_for(lambda: len(auto_jobs()) == 1, 30, "an automatic rollout", step=0.5)
    job = wait_finished(viewer, auto_jobs()[0]["id"], 60)
    assert job["state"] == "done", job
    assert sorted(job["agents"]) == ["au000000", "au000001", "au000002"]
    assert {v["version"] for v in fleet_views(viewer, "au").values()} == {NEW}
    assert {v["version"] for v in fleet_views(viewer, "ot").values()} == {OLD}
    time.sleep(3)  # three more looks: the group is current, nothing more starts
    assert len(auto_jobs()) == 1
    audit = viewer.get("/audit", params={"actor": "auto-update"}).json()
    assert [e["action"] for e in audit] == ["job.finish", "job.start"]
