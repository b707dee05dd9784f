"""Tier 3: a fleet rollout started and aborted from Mission Control's Jobs page, in real
Chromium against a real web API, maestro (with a release in its store) and broker; the
agents are the load generator's simulated ones, answering ``update`` as agents with a
host updater would (bench/update_sim.py)."""

from __future__ import annotations

import re
import shutil
import sys
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from playwright.sync_api import Browser, expect

from tests.fixtures.api import ApiServer
from tests.fixtures.broker import Broker
from tests.fixtures.browser import CHROMIUM, DIST, SHOTS, logged_in
from tests.fixtures.procs import REPO, Proc
from tests.fixtures.releases import store_release
from web_api.auth.roles import Role

pytestmark = [
    pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="Debian's chromium is not installed"),
    pytest.mark.skipif(not DIST.exists(), reason="the dashboard is not built (scripts/setup.sh)"),
]

OLD, NEW = "0.1.0", "0.2.0"


def test_the_jobs_page_starts_a_rollout_shows_each_agent_and_aborts_it_with_a_rollback(
    browser: Browser,
    api_server: Callable[..., ApiServer],
    broker: Broker,
    procs: Callable[..., Proc],
) -> None:
    api = api_server(
        maestro_options=store_release(broker.data_dir, Ed25519PrivateKey.generate(), NEW)
    )
    procs(
        [
            sys.executable,
            str(REPO / "bench" / "loadgen.py"),
            *("--port", str(broker.port), "--root", broker.root),
            *("--password-file", str(broker.data_dir / "secrets" / "maestro.password")),
            *("--agents", "4", "--prefix", "ew", "--duration", "240", "--workers", "1"),
            *("--start-delay", "0", "--version", OLD, "--label", "role=web"),
            *("--answer-updates", "--install-s", "3"),
        ],
        "loadgen",
    )
    page = logged_in(browser, api)
    for k in range(4):
        expect(page.get_by_test_id(f"agent-card-ew00000{k}")).to_have_attribute(
            "data-state", "online", timeout=30_000
        )
    page.get_by_test_id("nav-jobs").click()
    expect(page).to_have_url(re.compile("#/jobs$"))
    form = page.get_by_test_id("rollout-form")
    expect(form.get_by_test_id("rollout-version")).to_have_value(NEW)  # from GET /releases
    form.get_by_test_id("rollout-selector").fill("role=web")
    expect(form.get_by_test_id("rollout-matches")).to_have_text("4 agents match, 4 not on 0.2.0")
    form.get_by_test_id("rollout-batch").fill("2")
    form.get_by_test_id("rollout-start").click()
    expect(page.get_by_test_id("confirm-dialog")).to_contain_text("Update 4 agents to 0.2.0?")
    page.get_by_test_id("confirm-ok").click()
    expect(form.get_by_test_id("rollout-note")).to_have_text(
        "Started the update to 0.2.0 on 4 agents."
    )

    job = page.locator("[data-testid^='job-job-']").first
    expect(job.get_by_test_id("job-title")).to_have_text("update to 0.2.0")
    batches = job.get_by_test_id("rollout-batches")
    expect(batches.get_by_test_id("rollout-batch-0")).to_contain_text("canary")
    canary = job.get_by_test_id("rollout-agent-ew000000")
    # Live: the canary goes through its phases while the batches wait for it.
    expect(canary).to_have_attribute("data-phase", re.compile("sent|installing|switched"))
    expect(job.get_by_test_id("rollout-agent-ew000001")).to_have_attribute("data-phase", "waiting")
    expect(canary).to_have_attribute("data-phase", "healthy", timeout=30_000)
    expect(job.get_by_test_id("rollout-stage")).to_have_text("batch 1 of 2", timeout=10_000)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "jobs-rollout.png"), full_page=True)

    job_id = api.client(Role.VIEWER).get("/jobs").json()[0]["id"]
    job.get_by_test_id(f"job-abort-{job_id}").click()
    # The batch under way settles, then what the rollout switched goes back.
    expect(job).to_have_attribute("data-state", "stopped", timeout=10_000)
    expect(job.get_by_test_id(f"rollout-{job_id}")).to_have_attribute(
        "data-stage", "ended", timeout=60_000
    )
    for agent in ("ew000000", "ew000001", "ew000002"):
        expect(job.get_by_test_id(f"rollout-agent-{agent}")).to_have_attribute(
            "data-phase", "rolled_back"
        )
    expect(job.get_by_test_id("rollout-agent-ew000003")).to_have_attribute("data-phase", "waiting")
    expect(job.get_by_test_id("job-summary")).to_have_text("stopped: aborted by user:admin")
    views = api.client(Role.VIEWER).get("/agents", params={"label": "role=web"}).json()
    assert {v["version"] for v in views} == {OLD}
