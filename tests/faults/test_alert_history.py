"""Fault tier: a condition that holds briefly and clears before its ``for_s`` leaves no
alert history (it used to be listed as a "resolved" warning that never fired).

A real agent under libfaketime has its clock stepped 30 s forward for a few seconds,
then back: the maestro's ``clock_skew`` goes pending and clears. ``GET /alerts`` shows
it while pending and nothing once it cleared; nobody was paged.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.faults.conftest import Reliability
from tests.fixtures.agent import AgentProc
from tests.fixtures.api import ApiServer
from tests.fixtures.faults import faketime_env
from tests.fixtures.procs import wait_for
from web_api.auth.roles import Role


def test_a_clock_skew_that_clears_before_it_fires_is_no_history(
    api_server: Callable[..., ApiServer],
    start_agent: Callable[..., AgentProc],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    reliability: Reliability,
) -> None:
    monkeypatch.setenv("ARETE_MAESTRO_ALERTS__BUILTIN__CLOCK_SKEW__FOR_S", "600")
    clock_file = tmp_path / "agent-clock"
    env = {**faketime_env("+0", timestamp_file=clock_file), "ARETE_AGENT_INTERVAL_S": "1"}
    start_agent("k1", env=env)
    api = api_server(rate_per_user=100.0, burst_per_user=200)
    viewer = api.client(Role.VIEWER)
    wait_for(lambda: viewer.get("/agents/k1").json().get("state") == "online", 20, "k1 online")

    def listed(phase: str | None = None) -> list[str]:
        params = {"agent": "k1"} | ({"phase": phase} if phase else {})
        answer = viewer.get("/alerts", params=params)
        assert answer.status_code == 200, answer.text
        return [f"{a['rule']}:{a['phase']}" for a in answer.json()]

    stepped = time.monotonic()
    clock_file.write_text("+30s\n")  # NTP steps the agent's clock forward...
    wait_for(lambda: "clock_skew:pending" in listed(), 20, "clock_skew pending", step=0.5)
    detected = time.monotonic() - stepped
    clock_file.write_text("+0\n")  # ...and back a few seconds later
    wait_for(lambda: listed() == [], 90, "the pending clock_skew gone", step=1.0)
    assert listed("resolved") == [], "no 'resolved' alert that never fired"
    assert [e for e in viewer.get("/audit").json() if e["action"].startswith("alert.")] == []
    reliability.record(
        "agent clock stepped +30 s for a few seconds (clock_skew pending, then clear)",
        detection_s=detected,
        pages_expected=0,
        pages_sent=0,
        notes="listed while pending; gone from GET /alerts once clear, no resolved entry",
    )
