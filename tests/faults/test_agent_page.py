"""Fault tier, the agent page: what a user watching an agent sees when it dies (kill -9),
in real Chromium against the real stack (the clock case is in tests/e2e/test_agent_charts.py)."""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable

import pytest
from playwright.sync_api import Browser, expect

from tests.faults.conftest import Reliability
from tests.fixtures.agent import AgentProc
from tests.fixtures.api import ApiServer
from tests.fixtures.browser import CHROMIUM, DIST, logged_in

pytestmark = [
    pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="Debian's chromium is not installed"),
    pytest.mark.skipif(not DIST.exists(), reason="the dashboard is not built (scripts/setup.sh)"),
]


def test_agent_kill_9_marks_the_open_agent_page_stale_and_turns_its_commands_off(
    browser: Browser,
    api_server: Callable[..., ApiServer],
    start_agent: Callable[..., AgentProc],
    reliability: Reliability,
) -> None:
    api = api_server()
    agent = start_agent("a1", env={"ARETE_AGENT_INTERVAL_S": "1"})
    page = logged_in(browser, api)
    expect(page.get_by_test_id("agent-card-a1")).to_have_attribute(
        "data-state", "online", timeout=20_000
    )
    page.goto(api.base_url + "/#/agents/a1")
    cpu = page.get_by_test_id("metric-cpu")
    # A value first (the page can open before the agent's first sample reaches it), then
    # it must be fresh: only a shown value can be marked stale.
    expect(cpu).to_have_text(re.compile(r"^\d+(\.\d+)?\s?%$"), timeout=15_000)
    expect(cpu).to_have_attribute("data-stale", "false", timeout=15_000)
    expect(page.get_by_test_id("cmd-restart")).to_be_enabled()

    began = time.monotonic()
    agent.kill9()
    expect(cpu).to_have_attribute("data-stale", "true", timeout=15_000)
    stale_s = time.monotonic() - began
    expect(page.get_by_test_id("cmd-restart")).to_be_disabled(timeout=15_000)
    blocked_s = time.monotonic() - began
    expect(page.get_by_test_id("cmd-blocked")).to_have_text("Unavailable: agent offline")
    # Before, the values looked current and a command waited 12 s for timed_out.
    assert stale_s < 10
    assert blocked_s < 10
    reliability.record(
        "agent kill -9 while its page is open",
        detection_s=blocked_s,
        notes=f"values marked stale after {stale_s:.1f} s; commands off with the reason"
        f" 'agent offline' after {blocked_s:.1f} s (was: last values shown as current,"
        " commands timed out after 12 s)",
    )
