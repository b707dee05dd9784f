"""A simulated 1,000-agent fleet rollout, POST -> all healthy, next to a baseline (issue 13).

One stack: ``arete broker run`` and ``arete web run`` in a temporary data dir whose
release store holds two signed releases, and the load generator (``loadgen.py
--answer-updates``) playing 1,000 agents that sample at 1 Hz and answer ``update`` as an
agent with a host updater does (bench/update_sim.py: handed over at once, switched
after ``--install-s``, healthy a second later).

1. Baseline: the same 1,000 ``update`` commands (to release A) as a plain command job
   (``POST /jobs``, batches of ``--batch``, no health gate), from the POST until every
   agent shows version A with its updater ``healthy`` in ``GET /agents``.
2. The rollout: ``POST /jobs/update`` to release B (a canary of 1, then batches of
   ``--batch``, each gated on every agent's health), from the POST until the job is
   ``done``. Per agent: command issued -> first seen healthy in ``GET /jobs/{id}``.

The job's overhead per agent is (rollout - baseline) / agents; the ratio is rollout /
baseline. The goal (the original design's KPI) is the whole fleet in <= 5 minutes.

Usage::

    python bench/rollout.py                # 1,000 agents, batches of 100
    python bench/rollout.py --write        # puts the table in BENCHMARKS.md (section rollout)
    python bench/rollout.py --deploy-from FIGURES.json --write   # section rollout-deploy

``--deploy-from`` takes the figures a deploy-tier run left in ``ARETE_ROLLOUT_OUT``
(tests/deploy/test_fleet.py, a rollout job on real systemd hosts; written only when its
assertions held) and writes them next to the simulated rollout's figures.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from api_bench import add_user, start_web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from loadgen import Procs, start_broker
from sections import BENCHMARKS, git_commit, replace_section

from arete.release import (
    ReleaseArtifact,
    ReleaseManifest,
    encode_release,
    key_id,
    public_key_text,
    sign_release,
)

OLD, BASELINE, TARGET = "0.1.0", "0.2.0", "0.3.0"
PREFIX = "ro"
POLL_S = 0.5
GOAL_S = 300.0


def store_release(data_dir: Path, key: Ed25519PrivateKey, version: str) -> None:
    """A signed release in ``<data_dir>/releases/<version>`` (one stand-in wheel)."""
    name = f"arete-{version}-py3-none-any.whl"
    wheel = f"stand-in wheel {version}".encode()
    now = time.time()
    manifest = ReleaseManifest(
        version=version,
        artifacts=[
            ReleaseArtifact(name=name, sha256=hashlib.sha256(wheel).hexdigest(), size=len(wheel))
        ],
        min_from_version="0.0.1",
        created_at=now - 60,
        expires_at=now + 86_400,
        key_id=key_id(key.public_key()),
    )
    directory = data_dir / "releases" / version
    directory.mkdir(parents=True)
    (directory / "release.json").write_bytes(encode_release(sign_release(manifest, key)))
    (directory / name).write_bytes(wheel)


@dataclass
class Results:
    agents: int
    batch: int
    install_s: float
    baseline_s: float = 0.0
    rollout_s: float = 0.0
    state: str = ""
    batches: int = 0
    per_agent_s: list[float] = field(default_factory=list)
    phases: dict[str, int] = field(default_factory=dict)


def wait_fleet(api: httpx.Client, version: str, count: int, deadline_s: float) -> float:
    """Seconds until ``count`` agents are online on ``version`` with no update in flight."""
    start = time.perf_counter()
    while time.perf_counter() - start < deadline_s:
        views = api.get("/agents", params={"label": f"bench={PREFIX}"}).json()
        ready = [
            v
            for v in views
            if v["state"] == "online"
            and v["version"] == version
            and v["metrics"]
            and (v["update"] is None or v["update"]["phase"] == "healthy")
        ]
        if len(ready) >= count:
            return time.perf_counter() - start
        time.sleep(POLL_S)
    raise TimeoutError(f"the fleet did not reach {version} in {deadline_s:.0f} s")


def baseline(api: httpx.Client, agents: int, batch: int) -> float:
    began = time.perf_counter()
    answer = api.post(
        "/jobs",
        json={
            "name": "update",
            "args": {"version": BASELINE},
            "labels": {"bench": PREFIX},
            "batch_size": batch,
            "max_failures": agents,
        },
    )
    answer.raise_for_status()
    wait_fleet(api, BASELINE, agents, 600)
    return time.perf_counter() - began


def rollout(api: httpx.Client, results: Results) -> None:
    began = time.perf_counter()
    answer = api.post(
        "/jobs/update",
        json={
            "version": TARGET,
            "labels": {"bench": PREFIX},
            "canary": 1,
            "batch_size": results.batch,
            "health_timeout_s": 120,
        },
    )
    answer.raise_for_status()
    job_id = answer.json()["id"]
    healthy_at: dict[str, float] = {}
    while True:
        job = api.get(f"/jobs/{job_id}").json()
        now = time.time()
        for agent in job["rollout"]["agents"]:
            if agent["phase"] == "healthy":
                healthy_at.setdefault(agent["id"], now)
        if job["finished_at"] is not None:
            break
        if time.perf_counter() - began > 900:
            raise TimeoutError(f"rollout {job_id} still running after 900 s")
        time.sleep(POLL_S)
    results.rollout_s = time.perf_counter() - began
    results.state = job["state"]
    results.batches = job["rollout"]["batches"]
    results.phases = job["rollout"]["phases"]
    commands = api.get("/commands", params={"job": job_id, "limit": 1000}).json()
    issued = {c["agent"]: c["created_at"] for c in commands}
    results.per_agent_s = [healthy_at[a] - t for a, t in issued.items() if a in healthy_at]


def table(r: Results) -> str:
    per = sorted(r.per_agent_s) or [0.0]
    overhead = (r.rollout_s - r.baseline_s) / max(1, r.agents)
    verdict = "meets" if r.rollout_s <= GOAL_S and r.state == "done" else "MISSES"
    return f"""\
## Fleet rollout, simulated (bench/rollout.py)

Commit `{git_commit()}`. {r.agents:,} simulated agents (`loadgen.py --answer-updates`:
1 Hz samples; each agent's "updater" switches {r.install_s:g} s after the command and
reports healthy 1 s later), `arete web run` and `arete broker run` on this machine.
Rollout: canary 1, then batches of {r.batch} ({r.batches} batches in all), each gated on
every agent being online on the new version, its updater healthy and a sample received
after the switch. Baseline, same run: the same {r.agents:,} `update` commands as a plain
command job (batches of {r.batch}, no gate), until every agent shows the new version
healthy.

| | value |
|---|---|
| rollout, POST -> all healthy (job `{r.state}`) | {r.rollout_s:.1f} s |
| baseline: plain command job -> all healthy | {r.baseline_s:.1f} s |
| ratio rollout / baseline | {r.rollout_s / max(r.baseline_s, 1e-9):.2f}x |
| job overhead per agent ((rollout - baseline) / agents) | {overhead * 1000:.0f} ms |
| per-agent update time (command -> seen healthy), median / p95 / max | \
{statistics.median(per):.1f} / {per[int(0.95 * (len(per) - 1))]:.1f} / {per[-1]:.1f} s |
| agents by phase at the end | {", ".join(f"{k} {v}" for k, v in sorted(r.phases.items()))} |
| goal: the fleet in <= 5 min | {verdict} |

The rollout is slower than the plain job by design: batch n+1 waits for every agent of
batch n to prove healthy (about the install time + 1 s + one sample + the 0.5 s gate
tick), so its time is roughly (batches) x (that wait). Larger batches shorten it; the
canary costs one wait alone.
"""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--install-s", type=float, default=5.0)
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    parser.add_argument(
        "--deploy-from",
        type=Path,
        help="figures of a deploy-tier rollout (ARETE_ROLLOUT_OUT): write them, run nothing",
    )
    return parser.parse_args(argv)


DEPLOY_TEST = (
    "tests/deploy/test_fleet.py::test_a_rollout_job_takes_the_fleet_to_a_new_release_and_is_timed"
)
_SIMULATED_ROWS = {
    "total": r"\| rollout, POST -> all healthy \(job `\w+`\) \| ([\d.]+) s \|",
    "per_agent": r"\| per-agent update time [^|]*\| ([\d.]+) / [\d.]+ / [\d.]+ s \|",
    "agents": r"Commit `\w+`\. ([\d,]+) simulated agents",
}


def simulated_figures(text: str) -> dict[str, str]:
    """The simulated rollout's figures from BENCHMARKS.md's ``rollout`` section (each
    one absent when that section lacks it)."""
    section = text.split("<!-- rollout:start -->", 1)[-1].split("<!-- rollout:end -->", 1)[0]
    found = {name: re.search(pattern, section) for name, pattern in _SIMULATED_ROWS.items()}
    return {name: match.group(1) for name, match in found.items() if match}


def deploy_table(figures: dict[str, Any], simulated: dict[str, str], commit: str) -> str:
    """BENCHMARKS.md's ``rollout-deploy`` section from a deploy-tier run's figures."""
    per_agent: dict[str, float] = figures["per_agent_s"]
    total = float(figures["post_to_done_s"])
    verdict = "meets" if total <= GOAL_S and figures["state"] == "done" else "MISSES"
    lines = [
        "## Fleet rollout on systemd hosts (bench/rollout.py --deploy-from)",
        "",
        f"Commit `{commit}`. The deploy tier's fleet (`ansible/site.yml` on real systemd "
        "hosts in podman, this machine): `POST /jobs/update` through Caddy to "
        f"{figures['agents']} agent hosts, {figures['version_from']} -> "
        f"{figures['version_to']} (a release of this checkout with a bumped version: "
        "fetched over the broker, verified, installed by each host's updater into its own "
        "venv with pip --no-index, switched, agent restarted, health-gated), canary "
        f"{figures['canary']}, {figures['batches']} batch(es). {figures['notes']}.",
        "",
        "| | value |",
        "|---|---|",
        f"| rollout, POST -> job `{figures['state']}` (all healthy) | {total:.1f} s |",
    ]
    for agent, seconds in sorted(per_agent.items()):
        lines.append(f"| {agent}: update command -> seen healthy in the job | {seconds:.1f} s |")
    lines += [
        "| job overhead (total - each batch's slowest agent; read every "
        f"{float(figures.get('poll_s', 1.0)):g} s) | {float(figures['overhead_s']):.1f} s |",
        f"| goal: the fleet in <= 5 min | {verdict} |",
    ]
    if simulated:
        lines += [
            "",
            "Simulated rollout (section above, same script): "
            f"{simulated.get('agents', '?')} agents POST -> all healthy in "
            f"{simulated.get('total', '?')} s, per-agent update time median "
            f"{simulated.get('per_agent', '?')} s (a simulated 5 s install). A real host "
            "spends its per-agent time installing the wheels and restarting the agent, "
            "which is the part the simulation stands in for.",
        ]
    lines += ["", f"The scenario and its assertions: `{DEPLOY_TEST}`."]
    return "\n".join(lines) + "\n"


def write_deploy(source: Path, *, write: bool) -> int:
    figures = json.loads(source.read_text())
    simulated = simulated_figures(BENCHMARKS.read_text() if BENCHMARKS.exists() else "")
    text = deploy_table(figures, simulated, git_commit())
    print(text)
    if write:
        print(f"wrote {replace_section('rollout-deploy', text)}", file=sys.stderr)
    return 0 if figures["state"] == "done" else 1


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.deploy_from is not None:
        return write_deploy(args.deploy_from, write=args.write)
    results = Results(agents=args.agents, batch=args.batch, install_s=args.install_s)
    with tempfile.TemporaryDirectory(prefix="arete-rollout-") as tmp:
        work = Path(tmp)
        procs = Procs(work)
        try:
            data_dir = work / "data"
            broker = start_broker(procs, data_dir)
            key = Ed25519PrivateKey.generate()
            for version in (BASELINE, TARGET):
                store_release(data_dir, key, version)
            token = add_user(data_dir)
            keys = json.dumps([public_key_text(key.public_key())])
            # start_web passes its env on top of ours: the maestro trusts the release key.
            os.environ["ARETE_MAESTRO_RELEASES__PUBLIC_KEYS"] = keys
            _, port = start_web(procs, data_dir, 1.0)
            procs.start(
                "loadgen",
                [
                    sys.executable,
                    str(Path(__file__).resolve().parent / "loadgen.py"),
                    *("--port", str(broker.port), "--password-file", str(broker.password_file)),
                    *("--root", broker.root, "--agents", str(args.agents), "--prefix", PREFIX),
                    *("--duration", "1800", "--status", "--version", OLD),
                    *("--label", f"bench={PREFIX}", "--answer-updates"),
                    *("--install-s", str(args.install_s)),
                ],
            )
            with httpx.Client(
                base_url=f"http://127.0.0.1:{port}",
                headers={"Authorization": f"Bearer {token}"},
                timeout=60,
            ) as api:
                wait_fleet(api, OLD, args.agents, 180)
                results.baseline_s = baseline(api, args.agents, args.batch)
                print(f"baseline {results.baseline_s:.1f} s", file=sys.stderr)
                rollout(api, results)
        finally:
            procs.stop_all()
    text = table(results)
    print(text)
    if args.write:
        print(f"wrote {replace_section('rollout', text)}", file=sys.stderr)
    return 0 if results.state == "done" else 1


if __name__ == "__main__":
    sys.exit(main())
