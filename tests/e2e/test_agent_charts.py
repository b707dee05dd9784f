"""Tier 3: the agent page's charts in real Chromium against a real web API, maestro, broker
and agent: a chart per metric family the agent sends, live charts seeded from history (per
core too, on first paint after a reload), a history view kept in the URL, an agent killed
with -9 shown stale with its commands off, and the clock-offset and state-disk-full badges."""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable

import msgspec
import pytest
from playwright.sync_api import Browser, Page, expect

from arete.payloads import AgentState, Status, encode
from tests.fixtures.agent import AgentProc
from tests.fixtures.api import ApiServer
from tests.fixtures.broker import Broker
from tests.fixtures.browser import CHROMIUM, DIST, SHOTS, logged_in
from tests.fixtures.faults import faketime_env
from tests.fixtures.mqtt import MqttProbe

pytestmark = [
    pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="Debian's chromium is not installed"),
    pytest.mark.skipif(not DIST.exists(), reason="the dashboard is not built (scripts/setup.sh)"),
]

# What every agent sends on any Linux box (psutil): the families always charted.
ALWAYS = ["cpu", "memory", "disk", "diskio", "diskops", "net", "load", "procs", "uptime"]


def latest_metrics(api: ApiServer, agent: str) -> dict[str, object]:
    with api.client() as client:
        metrics = client.get(f"/agents/{agent}").json()["metrics"]
    assert isinstance(metrics, dict), "the agent has a latest sample"
    return metrics


def chart_ids(page: Page, prefix: str) -> set[str]:
    ids = page.eval_on_selector_all(
        f"[data-testid^='{prefix}']", "els => els.map(e => e.dataset.testid)"
    )
    return {i.removeprefix(prefix) for i in ids}


def series_counts(page: Page, test_id: str) -> list[int]:
    """How many points each series of a chart holds (its ``data-counts``)."""
    counts = page.get_by_test_id(test_id).get_attribute("data-counts") or ""
    return [int(c) for c in counts.split(",") if c]


def test_every_family_the_agent_sends_is_charted_and_live_charts_start_from_history(
    browser: Browser,
    api_server: Callable[..., ApiServer],
    start_agent: Callable[..., AgentProc],
) -> None:
    api = api_server()
    start_agent("a1", env={"ARETE_AGENT_INTERVAL_S": "1"})
    page = logged_in(browser, api)
    expect(page.get_by_test_id("agent-card-a1")).to_have_attribute(
        "data-state", "online", timeout=20_000
    )
    page.wait_for_timeout(6_000)  # a few samples stored before the page opens
    sent = latest_metrics(api, "a1")
    cores = [k for k in sent if re.fullmatch(r"cpu\.\d+", k)]
    assert cores, f"the agent sends per-core CPU: {sorted(sent)}"

    page.goto(api.base_url + "/#/agents/a1")
    expect(page.get_by_test_id("chart-live-cpu")).to_be_visible(timeout=15_000)
    # Seeded from history: the stored samples at once, not one frame at a time from empty.
    section = page.get_by_test_id("live-charts")
    expect(section).to_have_attribute("data-seeded", re.compile(r"\d+"), timeout=10_000)
    seeded = int(section.get_attribute("data-seeded") or 0)
    assert seeded >= 4, f"the live chart starts with the stored samples, got {seeded}"
    points = int(page.get_by_test_id("chart-live-cpu").get_attribute("data-points") or 0)
    assert points >= seeded

    live = chart_ids(page, "chart-live-")
    for family in ALWAYS:
        assert family in live, f"no live {family} chart: {sorted(live)}"
    assert ("temps" in live) == any(k.startswith("temp:") or k == "temp_max" for k in sent)
    assert ("gpu" in live) == any(k.startswith("gpu.") or k == "gpu_util" for k in sent)
    # Per core: the total plus one line per core.
    cpu_series = page.get_by_test_id("chart-live-cpu").get_attribute("data-series")
    assert int(cpu_series or 0) == 1 + len(cores)
    mounts = [k for k in sent if k.startswith("mount:")]
    disk_series = page.get_by_test_id("chart-live-disk").get_attribute("data-series")
    assert int(disk_series or 0) == 1 + len(mounts)
    expect(page.get_by_test_id("metric-uptime")).not_to_have_text("—")

    history = page.get_by_test_id("history-charts")
    expect(history.get_by_test_id("chart-history-cpu")).to_be_visible(timeout=15_000)
    for family in ["cpu", "memory", "disk", "diskio", "net", "load", "procs"]:
        expect(history.get_by_test_id(f"chart-history-{family}")).to_be_visible()
    history_cpu = history.get_by_test_id("chart-history-cpu")
    expect(history_cpu).to_have_attribute("data-series", str(1 + len(cores)))
    assert min(series_counts(page, "chart-history-cpu")[1:]) > 0, "per-core history is stored"

    # After a reload the per-core lines start from history as well, not from the first frame.
    page.reload()
    section = page.get_by_test_id("live-charts")
    expect(section).to_have_attribute("data-seeded", re.compile(r"\d+"), timeout=10_000)
    seeded = int(section.get_attribute("data-seeded") or 0)
    counts = series_counts(page, "chart-live-cpu")
    assert len(counts) == 1 + len(cores)
    assert min(counts[1:]) >= max(4, seeded - 2), (
        f"each core's line holds the stored points on first paint: {counts}, seeded {seeded}"
    )
    # The y axis has room for its labels: none is cut at the left edge.
    clipped = page.eval_on_selector_all(
        ".u-axis .u-value",
        "els => els.filter(e => { const r = e.getBoundingClientRect();"
        " const p = e.closest('.uplot').getBoundingClientRect();"
        " return r.width > 0 && r.left < p.left - 1; }).length",
    )
    assert clipped == 0, f"{clipped} axis labels clipped"
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.set_viewport_size({"width": 1366, "height": 900})
    page.screenshot(path=str(SHOTS / "agent-charts.png"), full_page=True)


def test_a_range_goes_into_the_url_and_reloading_the_url_restores_it(
    browser: Browser,
    api_server: Callable[..., ApiServer],
    start_agent: Callable[..., AgentProc],
) -> None:
    api = api_server()
    start_agent("a1", env={"ARETE_AGENT_INTERVAL_S": "1"})
    page = logged_in(browser, api)
    expect(page.get_by_test_id("agent-card-a1")).to_have_attribute(
        "data-state", "online", timeout=20_000
    )
    page.goto(api.base_url + "/#/agents/a1")
    chart = page.get_by_test_id("chart-history-cpu")
    expect(chart).to_be_visible(timeout=15_000)

    # "15 min" spans the whole 15 minutes, though the agent has run for seconds.
    page.get_by_test_id("range-15m").click()
    expect(page).to_have_url(re.compile(r"#/agents/a1\?range=15m$"))
    expect(page.get_by_test_id("range-15m")).to_have_attribute("aria-pressed", "true")
    expect(chart).to_have_attribute("data-xmax", re.compile(r"\d+"), timeout=10_000)
    span = float(chart.get_attribute("data-xmax") or 0) - float(
        chart.get_attribute("data-xmin") or 0
    )
    assert span == 900, f"15 min spans {span} s"

    page.reload()
    expect(page.get_by_test_id("range-15m")).to_have_attribute(
        "aria-pressed", "true", timeout=15_000
    )

    # Drag to zoom: a fixed window in the URL, which a reload (or a colleague) gets back.
    over = page.get_by_test_id("chart-history-cpu").locator(".u-over")
    over.scroll_into_view_if_needed()
    box = over.bounding_box()
    assert box is not None
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.7, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.85, y, steps=5)
    page.mouse.move(box["x"] + box["width"] * 0.99, y, steps=5)
    page.mouse.up()
    expect(page).to_have_url(re.compile(r"#/agents/a1\?from=\d+&to=\d+$"), timeout=5_000)
    match = re.search(r"from=(\d+)&to=(\d+)", page.url)
    assert match is not None
    zoomed = (int(match[1]), int(match[2]))
    assert 60 <= zoomed[1] - zoomed[0] < 900, f"zoomed into part of the 15 min: {zoomed}"
    page.reload()
    chart = page.get_by_test_id("chart-history-cpu")
    expect(chart).to_have_attribute("data-xmin", str(zoomed[0]), timeout=15_000)
    expect(chart).to_have_attribute("data-xmax", str(zoomed[1]))
    expect(page.get_by_test_id("range-fixed")).to_be_visible()

    # Custom from/to.
    page.get_by_test_id("range-from").fill("2026-01-01T10:00")
    page.get_by_test_id("range-to").fill("2026-01-01T12:00")
    page.get_by_test_id("range-apply").click()
    expect(page).to_have_url(re.compile(r"from=\d+&to=\d+$"))
    match = re.search(r"from=(\d+)&to=(\d+)", page.url)
    assert match is not None
    assert int(match[2]) - int(match[1]) == 7200


def test_a_killed_agent_is_shown_stale_and_its_commands_are_off_with_the_reason(
    browser: Browser,
    api_server: Callable[..., ApiServer],
    start_agent: Callable[..., AgentProc],
) -> None:
    api = api_server()
    agent = start_agent("a1", env={"ARETE_AGENT_INTERVAL_S": "1"})
    page = logged_in(browser, api)
    expect(page.get_by_test_id("agent-card-a1")).to_have_attribute(
        "data-state", "online", timeout=20_000
    )
    page.goto(api.base_url + "/#/agents/a1")
    cpu = page.get_by_test_id("metric-cpu")
    # A value first: with no sample yet there is nothing to mark stale ("—", stale false),
    # and under load the first sample can reach the page after the agent is killed.
    expect(cpu).to_have_text(re.compile(r"\d"), timeout=20_000)
    expect(cpu).to_have_attribute("data-stale", "false", timeout=15_000)
    expect(page.get_by_test_id("cmd-restart")).to_be_enabled()
    expect(page.get_by_test_id("cmd-blocked")).to_have_count(0)

    began = time.monotonic()
    agent.kill9()
    expect(cpu).to_have_attribute("data-stale", "true", timeout=10_000)
    expect(page.get_by_test_id("metrics-stale")).to_be_visible()
    expect(page.get_by_test_id("live-stale")).to_be_visible()
    expect(page.get_by_test_id("agent-state")).to_contain_text("offline", timeout=10_000)
    for name in ("restart", "stop", "screenshot"):
        expect(page.get_by_test_id(f"cmd-{name}")).to_be_disabled()
    expect(page.get_by_test_id("cmd-blocked")).to_have_text("Unavailable: agent offline")
    assert time.monotonic() - began < 10
    # The live chart keeps the agent's own window of the last 5 minutes (not years).
    live = page.get_by_test_id("chart-live-cpu")
    span = float(live.get_attribute("data-xmax") or 0) - float(live.get_attribute("data-xmin") or 0)
    assert span == 300
    page.screenshot(path=str(SHOTS / "agent-offline.png"), full_page=True)


def test_an_agent_two_hours_ahead_gets_a_clock_badge_and_live_charts_on_its_own_clock(
    browser: Browser,
    api_server: Callable[..., ApiServer],
    start_agent: Callable[..., AgentProc],
) -> None:
    api = api_server()
    start_agent("a1", env={"ARETE_AGENT_INTERVAL_S": "1", **faketime_env("+2h")})
    page = logged_in(browser, api)
    expect(page.get_by_test_id("agent-card-a1")).to_have_attribute(
        "data-state", "online", timeout=20_000
    )
    page.goto(api.base_url + "/#/agents/a1")
    expect(page.get_by_test_id("agent-clock")).to_have_text("clock 2 h ahead", timeout=20_000)
    # Its samples are fresh (judged by when the maestro got them, not by their stamps)...
    expect(page.get_by_test_id("metric-cpu")).to_have_attribute("data-stale", "false")
    # ...and drawn in a 5-minute window of the agent's clock, where they are.
    live = page.get_by_test_id("chart-live-cpu")
    expect(live).to_have_attribute("data-points", re.compile(r"^([3-9]|\d\d+)$"), timeout=15_000)
    xmax = float(live.get_attribute("data-xmax") or 0)
    assert abs(xmax - (time.time() + 7200)) < 60
    page.screenshot(path=str(SHOTS / "agent-clock-ahead.png"))


def test_an_agent_whose_status_says_its_state_disk_is_full_gets_a_badge(
    browser: Browser,
    api_server: Callable[..., ApiServer],
    broker: Broker,
    mqtt: Callable[..., MqttProbe],
) -> None:
    api = api_server()
    broker.add_agent("a1")
    # The agent's own word (its credentials, its status topic), as edge_agent sends it
    # when its outbox cannot write (tests/faults/test_agent_disk_full.py).
    probe = mqtt("a1", broker.password_of("a1"), client_id="a1")
    status = Status(
        state=AgentState.ONLINE, epoch=1, ts=time.time(), version="0", host="h",
        heartbeat_s=60, disk_full=True,
    )  # fmt: skip
    probe.publish(broker.topics.status("a1"), encode(status), retain=True)
    page = logged_in(browser, api)
    expect(page.get_by_test_id("agent-card-a1")).to_be_visible(timeout=20_000)
    page.goto(api.base_url + "/#/agents/a1")
    expect(page.get_by_test_id("agent-disk-full")).to_have_text("state disk full", timeout=20_000)

    probe.publish(
        broker.topics.status("a1"),
        encode(msgspec.structs.replace(status, disk_full=False, ts=time.time())),
        retain=True,
    )
    expect(page.get_by_test_id("agent-disk-full")).to_have_count(0, timeout=20_000)
