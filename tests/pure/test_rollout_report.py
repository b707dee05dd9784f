"""A deploy-tier rollout's figures (tests/deploy/rollouts.py) and the BENCHMARKS.md section
bench/rollout.py --deploy-from writes from them."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.deploy import rollouts

BENCH = Path(__file__).resolve().parents[2] / "bench"

SIMULATED = """\
<!-- rollout:start -->
## Fleet rollout, simulated (bench/rollout.py)

Commit `9010b10`. 1,000 simulated agents (`loadgen.py --answer-updates`:
| rollout, POST -> all healthy (job `done`) | 69.0 s |
| per-agent update time (command -> seen healthy), median / p95 / max | 6.6 / 6.9 / 6.9 s |
<!-- rollout:end -->
"""


def _bench_rollout() -> ModuleType:
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    return importlib.import_module("rollout")


def _job(
    phases: dict[str, str], state: str = "running", batches: dict[str, int] | None = None
) -> dict[str, Any]:
    agents = [{"id": a, "phase": p, "batch": (batches or {}).get(a, 0)} for a, p in phases.items()]
    rollout = {
        "version": "0.1.1",
        "canary": 0,
        "batches": 1,
        "health_timeout_s": 400.0,
        "agents": agents,
    }
    return {"state": state, "rollout": rollout}


def _followed() -> rollouts.Followed:
    """A rollout polled four times: agent1 healthy at 130, agent2 at 160, done at 165."""
    followed = rollouts.Followed(job={}, elapsed_s=0.0)
    rollouts.note(followed, _job({"agent1": "installing", "agent2": "sent"}), 100.0)
    rollouts.note(followed, _job({"agent1": "healthy", "agent2": "installing"}), 130.0)
    rollouts.note(followed, _job({"agent1": "healthy", "agent2": "healthy"}), 160.0)
    rollouts.note(followed, _job({"agent1": "healthy", "agent2": "healthy"}, "done"), 165.0)
    followed.elapsed_s = 70.0  # POST at 95
    followed.issued_at = {"agent1": 96.0, "agent2": 96.5}
    return followed


def test_each_agent_counts_from_its_command_to_first_seen_healthy_and_the_rest_is_overhead() -> (
    None
):
    followed = _followed()
    assert followed.phases_seen["agent2"] == ["sent", "installing", "healthy"]
    made = rollouts.figures(followed, version_from="0.1.0", notes="no kill")
    assert made["per_agent_s"] == {"agent1": 34.0, "agent2": 63.5}
    assert made["post_to_done_s"] == 70.0
    assert made["overhead_s"] == 6.5  # 70 - the slowest agent's 63.5
    assert made["state"] == "done"
    assert (made["version_from"], made["version_to"]) == ("0.1.0", "0.1.1")


def test_batches_run_one_after_the_other_so_the_overhead_is_beyond_each_batchs_slowest() -> None:
    followed = rollouts.Followed(job={}, elapsed_s=0.0)
    order = {"agent1": 0, "agent2": 1}
    rollouts.note(followed, _job({"agent1": "healthy", "agent2": "sent"}, batches=order), 110.0)
    rollouts.note(followed, _job({"agent1": "healthy", "agent2": "healthy"}, batches=order), 130.0)
    rollouts.note(followed, _job({"agent1": "healthy", "agent2": "healthy"}, "done", order), 131.0)
    followed.elapsed_s = 36.0  # POST at 95
    followed.issued_at = {"agent1": 96.0, "agent2": 111.0}
    made = rollouts.figures(followed, version_from="0.1.0", notes="")
    assert made["per_agent_s"] == {"agent1": 14.0, "agent2": 19.0}
    assert made["overhead_s"] == 3.0  # 36 - (14 + 19)


def test_an_agent_never_seen_healthy_has_no_update_time() -> None:
    followed = rollouts.Followed(job={}, elapsed_s=0.0)
    rollouts.note(followed, _job({"agent1": "healthy", "agent2": "failed"}, "failed"), 50.0)
    followed.elapsed_s = 40.0
    followed.issued_at = {"agent1": 20.0, "agent2": 20.0}
    made = rollouts.figures(followed, version_from="0.1.0", notes="")
    assert made["per_agent_s"] == {"agent1": 30.0}
    assert made["state"] == "failed"


def test_the_deploy_section_shows_each_agent_the_overhead_and_the_simulated_fleet() -> None:
    bench = _bench_rollout()
    made = rollouts.figures(_followed(), version_from="0.1.0", notes="agent1 killed -9")
    simulated = bench.simulated_figures("# Benchmarks\n\n" + SIMULATED)
    assert simulated == {"total": "69.0", "per_agent": "6.6", "agents": "1,000"}
    text = bench.deploy_table(made, simulated, "abc1234")
    assert "| rollout, POST -> job `done` (all healthy) | 70.0 s |" in text
    assert "| agent1: update command -> seen healthy in the job | 34.0 s |" in text
    assert "| agent2: update command -> seen healthy in the job | 63.5 s |" in text
    assert "| job overhead (total - each batch's slowest agent; read every 1 s) | 6.5 s |" in text
    assert "| goal: the fleet in <= 5 min | meets |" in text
    assert "1,000 agents POST -> all healthy in 69.0 s" in text
    assert "agent1 killed -9." in text


@pytest.mark.parametrize(("state", "total"), [("failed", 70.0), ("done", 301.0)])
def test_a_failed_or_slow_rollout_misses_the_goal(state: str, total: float) -> None:
    bench = _bench_rollout()
    made = rollouts.figures(_followed(), version_from="0.1.0", notes="x")
    made.update(state=state, post_to_done_s=total)
    text = bench.deploy_table(made, {}, "abc1234")
    assert "| goal: the fleet in <= 5 min | MISSES |" in text
    assert "Simulated rollout" not in text


def test_deploy_from_writes_its_section_and_leaves_the_simulated_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = _bench_rollout()
    sections = importlib.import_module("sections")
    target = tmp_path / "BENCHMARKS.md"
    target.write_text("# Benchmarks\n\n" + SIMULATED)
    monkeypatch.setattr(bench, "BENCHMARKS", target)
    original = sections.replace_section
    monkeypatch.setattr(
        bench, "replace_section", lambda name, body: original(name, body, path=target)
    )
    figures = tmp_path / "figures.json"
    made = rollouts.figures(_followed(), version_from="0.1.0", notes="x")
    figures.write_text(json.dumps(made))
    assert bench.main(["--deploy-from", str(figures), "--write"]) == 0
    text = target.read_text()
    assert SIMULATED.strip() in text
    assert "<!-- rollout-deploy:start -->" in text
    assert "| job overhead (total - each batch's slowest agent; read every 1 s) | 6.5 s |" in text
