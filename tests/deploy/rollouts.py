"""Fleet rollouts (``POST /jobs/update``, docs/updates.md "Fleet rollout") on the deployed
fleet, as an operator runs them: through Caddy with the admin's API token.

:func:`run_rollout` posts the job and follows ``GET /jobs/{id}`` until it is finished,
noting when each agent is first seen ``healthy`` in the job's per-agent progress; the
commands the job issued (``GET /commands?job=``) give when each agent's update began.
:func:`figures` turns that into what bench/rollout.py ``--deploy-from`` writes into
BENCHMARKS.md (POST -> done, per-agent update time, job overhead).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from tests.deploy.fleet import Fleet

OUT_ENV: Final = "ARETE_ROLLOUT_OUT"  # bench/rollout.py --deploy-from reads this file
POLL_S: Final = 1.0


@dataclass
class Followed:
    """One rollout job as followed from outside."""

    job: dict[str, Any]  # the last GET /jobs/{id}
    elapsed_s: float  # POST -> finished_at seen
    healthy_at: dict[str, float] = field(default_factory=dict)  # agent -> first seen healthy
    issued_at: dict[str, float] = field(default_factory=dict)  # agent -> its update command
    phases_seen: dict[str, list[str]] = field(default_factory=dict)  # agent -> phases in order

    def agent(self, agent: str) -> dict[str, Any]:
        found: dict[str, Any] = {a["id"]: a for a in self.job["rollout"]["agents"]}[agent]
        return found


def run_rollout(fleet: Fleet, body: dict[str, Any], timeout: float = 600) -> Followed:
    """POST /jobs/update with ``body``; follow the job until it has finished."""
    with fleet.https(fleet.admin_token(), timeout=60) as client:
        began = time.time()
        answer = client.post("/jobs/update", json=body)
        assert answer.status_code == 201, answer.text
        job_id = answer.json()["id"]
        followed = Followed(job={}, elapsed_s=0.0)
        while True:
            reply = client.get(f"/jobs/{job_id}")
            assert reply.status_code == 200, reply.text
            job = reply.json()
            now = time.time()
            note(followed, job, now)
            if job["finished_at"] is not None:
                break
            assert now - began < timeout, f"rollout {job_id} still running: {job}"
            time.sleep(POLL_S)
        followed.elapsed_s = now - began
        commands = client.get("/commands", params={"job": job_id, "limit": 100})
        assert commands.status_code == 200, commands.text
        for record in sorted(commands.json(), key=lambda c: c["created_at"]):
            followed.issued_at.setdefault(record["agent"], record["created_at"])
    return followed


def note(followed: Followed, job: dict[str, Any], now: float) -> None:
    """Record one poll of the job: its per-agent phases and first healthy times."""
    followed.job = job
    for agent in job["rollout"]["agents"]:
        seen = followed.phases_seen.setdefault(agent["id"], [])
        if not seen or seen[-1] != agent["phase"]:
            seen.append(agent["phase"])
        if agent["phase"] == "healthy":
            followed.healthy_at.setdefault(agent["id"], now)


def figures(followed: Followed, *, version_from: str, notes: str) -> dict[str, Any]:
    """POST -> done, per agent (its command -> first seen healthy) and the job's overhead
    (total minus, per batch, its slowest agent: the batches run one after the other), for
    bench/rollout.py --deploy-from. Times are read by polling every :data:`POLL_S`."""
    per_agent = {
        agent: round(followed.healthy_at[agent] - issued, 1)
        for agent, issued in sorted(followed.issued_at.items())
        if agent in followed.healthy_at
    }
    rollout = followed.job["rollout"]
    total = round(followed.elapsed_s, 1)
    slowest: dict[int, float] = {}
    for agent, seconds in per_agent.items():
        batch = int(followed.agent(agent).get("batch") or 0)
        slowest[batch] = max(slowest.get(batch, 0.0), seconds)
    return {
        "agents": len(rollout["agents"]),
        "version_from": version_from,
        "version_to": rollout["version"],
        "canary": rollout["canary"],
        "batches": rollout["batches"],
        "health_timeout_s": rollout["health_timeout_s"],
        "state": followed.job["state"],
        "post_to_done_s": total,
        "per_agent_s": per_agent,
        "overhead_s": round(max(0.0, total - sum(slowest.values())), 1),
        "poll_s": POLL_S,
        "notes": notes,
    }
