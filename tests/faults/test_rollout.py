"""Fleet rollout under a fault: an agent of a batch is killed (-9) right after its
``update`` command went out. The health gate fails it at ``health_timeout_s``, the
rollout halts and sends back the agents it had switched; the agents it never reached
stay as they were. Agents are the load generator's simulated ones (bench/update_sim.py),
two processes so that one can be killed alone."""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable
from typing import Any

import psutil
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.faults.conftest import Reliability
from tests.fixtures.api import ApiServer
from tests.fixtures.broker import Broker
from tests.fixtures.procs import REPO, Proc, wait_for
from tests.fixtures.releases import store_release
from web_api.auth.roles import Role

pytestmark = pytest.mark.faults

OLD, NEW = "0.1.0", "0.2.0"


def sim(procs: Callable[..., Proc], broker: Broker, prefix: str, agents: int) -> Proc:
    return procs(
        [
            sys.executable,
            str(REPO / "bench" / "loadgen.py"),
            *("--port", str(broker.port), "--root", broker.root),
            *("--password-file", str(broker.data_dir / "secrets" / "maestro.password")),
            *("--agents", str(agents), "--prefix", prefix, "--duration", "240"),
            *("--workers", "1", "--start-delay", "0", "--version", OLD, "--label", "fleet=f"),
            *("--answer-updates", "--install-s", "2"),
        ],
        f"loadgen-{prefix}",
    )


def kill9_tree(proc: Proc) -> None:
    """SIGKILL the load generator and its worker process (the simulated agent dies)."""
    parent = psutil.Process(proc.pid)
    for child in parent.children(recursive=True):
        child.send_signal(signal.SIGKILL)
    proc.signal(signal.SIGKILL)


def test_an_agent_killed_mid_batch_fails_the_gate_and_the_switched_agents_go_back(
    api_server: Callable[..., ApiServer],
    broker: Broker,
    procs: Callable[..., Proc],
    reliability: Reliability,
) -> None:
    api = api_server(
        maestro_options=store_release(broker.data_dir, Ed25519PrivateKey.generate(), NEW)
    )
    operator = api.client(Role.OPERATOR)
    sim(procs, broker, "fa", 2)
    victim = sim(procs, broker, "fb", 1)

    def fleet() -> list[dict[str, Any]]:
        views: list[dict[str, Any]] = operator.get("/agents", params={"label": "fleet=f"}).json()
        return views

    wait_for(
        lambda: sum(1 for v in fleet() if v["state"] == "online" and v["metrics"]) == 3,
        30,
        "3 simulated agents online",
        step=0.25,
    )
    created = operator.post(
        "/jobs/update",
        json={"version": NEW, "labels": {"fleet": "f"}, "canary": 1, "batch_size": 2,
              "health_timeout_s": 10},
    )  # fmt: skip
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]

    def phase(job: dict[str, Any], agent: str) -> str:
        return str(next(a["phase"] for a in job["rollout"]["agents"] if a["id"] == agent))

    def job_now() -> dict[str, Any]:
        job: dict[str, Any] = operator.get(f"/jobs/{job_id}").json()
        return job

    wait_for(lambda: phase(job_now(), "fb000000") != "waiting", 30, "the batch sent", step=0.1)
    kill9_tree(victim)
    killed_at = time.monotonic()
    wait_for(lambda: phase(job_now(), "fb000000") == "failed", 30, "the gate fails it", step=0.2)
    detection_s = time.monotonic() - killed_at
    wait_for(lambda: job_now()["finished_at"] is not None, 60, "the rollback's end", step=0.25)
    job = job_now()
    assert job["state"] == "failed"
    by_agent = {a["id"]: a for a in job["rollout"]["agents"]}
    assert by_agent["fb000000"]["reason"].startswith("not healthy within 10 s")
    for agent in ("fa000000", "fa000001"):  # the canary and the batch's healthy one
        assert by_agent[agent]["phase"] == "rolled_back", by_agent[agent]
    commands = operator.get("/commands", params={"job": job_id}).json()
    rollbacks = sorted(c["agent"] for c in commands if c["args"] == {"rollback": True})
    assert rollbacks == ["fa000000", "fa000001"]  # never to the dead one: it never switched
    versions = {v["id"]: v["version"] for v in fleet()}
    assert versions == {"fa000000": OLD, "fa000001": OLD, "fb000000": OLD}
    reliability.record(
        "rollout: an agent of a batch killed -9 after its update command",
        detection_s=detection_s,
        notes="gate failure at health_timeout_s (10 s after the command); job failed;"
        " the 2 switched agents rolled back, the dead one never switched",
    )
