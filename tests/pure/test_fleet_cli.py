"""``arete fleet update``'s progress bar, final report and selector parsing."""

from __future__ import annotations

from typing import Any

import pytest
import typer

from arete_cli.fleet import final_lines, follow, parse_selector, progress_line


def job(state: str, stage: str, phases: dict[str, int], **more: Any) -> dict[str, Any]:
    return {
        "id": "job-1",
        "state": state,
        "total": sum(phases.values()),
        "stopped_reason": more.pop("stopped_reason", None),
        "rollout": {"version": "0.2.0", "stage": stage, "batch": 1, "batches": 4}
        | {"phases": phases, "agents": more.pop("agents", [])},
    }


def test_the_bar_fills_with_healthy_agents_and_marks_failed_ones() -> None:
    line = progress_line(job("running", "batches", {"healthy": 5, "failed": 1, "waiting": 4}))
    assert line.startswith("[###############xxx............] 5/10 healthy  running batches")
    assert "batch 1/3" in line
    assert line.endswith("healthy=5 waiting=4 failed=1")
    canary = progress_line(job("running", "canary", {"sent": 1, "waiting": 9}), width=10)
    assert canary.startswith("[..........] 0/10 healthy  running canary canary")


def test_the_final_report_names_every_agent_that_did_not_end_healthy() -> None:
    agents = [
        {"id": "a0", "phase": "rolled_back", "reason": "rolled back by the rollout to 0.1.0"},
        {"id": "a1", "phase": "failed", "reason": "command failed: not_enabled: off"},
        {"id": "a2", "phase": "healthy", "reason": None},
        {"id": "a3", "phase": "waiting", "reason": None},
    ]
    phases = {"rolled_back": 1, "failed": 1, "healthy": 1, "waiting": 1}
    lines = final_lines(job("failed", "ended", phases, agents=agents, stopped_reason="1 failed"))
    assert lines == [
        "job job-1: failed (version 0.2.0, 4 agents: healthy=1 waiting=1 rolled_back=1 failed=1)",
        "  reason: 1 failed",
        "  a0: rolled_back: rolled back by the rollout to 0.1.0",
        "  a1: failed: command failed: not_enabled: off",
    ]


def test_a_selector_takes_repeated_and_comma_separated_pairs() -> None:
    assert parse_selector(["role=web,zone=a", "tier=1"]) == {
        "role": "web",
        "zone": "a",
        "tier": "1",
    }
    with pytest.raises(typer.BadParameter, match="key=value"):
        parse_selector(["role"])


class FakeApi:
    """GET /jobs/{id} answers these jobs in turn (the last one again and again)."""

    def __init__(self, jobs: list[dict[str, Any]]) -> None:
        self.jobs = jobs

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        return self.jobs.pop(0) if len(self.jobs) > 1 else self.jobs[0]


def test_on_a_terminal_the_bar_is_redrawn_in_place_and_plain_output_prints_each_change(
    capsys: pytest.CaptureFixture[str],
) -> None:
    steps = [
        job("running", "canary", {"sent": 1, "waiting": 3}),
        job("running", "canary", {"sent": 1, "waiting": 3}),
        job("running", "batches", {"healthy": 1, "installing": 3}),
        job("done", "ended", {"healthy": 4}) | {"finished_at": 9.0},
    ]
    for step in steps[:3]:
        step["finished_at"] = None
    final = follow(FakeApi(list(steps)), "job-1", interval_s=0, tty=True)  # type: ignore[arg-type]
    assert final["state"] == "done"
    shown = capsys.readouterr().out
    assert shown.startswith("\r[")
    assert shown.count("\r") == 4
    assert shown.endswith("\n")
    assert "\n" not in shown[:-1]
    follow(FakeApi(list(steps)), "job-1", interval_s=0, tty=False)  # type: ignore[arg-type]
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3  # the repeated canary line is printed once
    assert lines[-1].startswith("[##############################] 4/4 healthy  done ended")
