"""Tier 3: Mission Control in real Chromium (Debian's, driven by Playwright) against a
real web API, maestro, broker and agent. Saves a screenshot of each page under docs/."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.fixtures.agent import AgentProc
from tests.fixtures.api import ApiServer
from tests.fixtures.browser import CHROMIUM, DIST, SHOTS, logged_in
from tests.fixtures.display import XvfbServer
from web_api.auth.users import UserStore

pytestmark = [
    pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="Debian's chromium is not installed"),
    pytest.mark.skipif(not DIST.exists(), reason="the dashboard is not built (scripts/setup.sh)"),
]


def paint_colour_bars(screen: XvfbServer) -> None:
    """Eight vertical colour bars fading towards the bottom, straight into Xvfb's pixels."""
    bars = [(255, 255, 255), (255, 255, 0), (0, 255, 255), (0, 255, 0)]
    bars += [(255, 0, 255), (255, 0, 0), (0, 0, 255), (40, 40, 40)]
    width = screen.width // len(bars)
    rows = []
    for y in range(screen.height):
        fade = 1 - 0.6 * y / screen.height
        row = b"".join(
            bytes([int(b * fade), int(g * fade), int(r * fade), 0]) * width for r, g, b in bars
        )
        rows.append(row.ljust(screen.width * 4, b"\0"))
    screen.paint_rows(0, b"".join(rows))


def test_log_in_see_the_agent_live_take_a_screenshot_see_it_go_offline_and_handle_its_alert(
    browser: Browser,
    api_server: Callable[..., ApiServer],
    start_agent: Callable[..., AgentProc],
    xvfb_server: XvfbServer,
) -> None:
    api = api_server()
    xvfb_server.clear()
    agent = start_agent("a1", env={"DISPLAY": xvfb_server.display, "ARETE_AGENT_INTERVAL_S": "1"})
    page = logged_in(browser, api)
    card = page.get_by_test_id("agent-card-a1")
    expect(card).to_have_attribute("data-state", "online", timeout=20_000)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "fleet.png"))

    card.click()
    expect(page.get_by_test_id("agent-page")).to_be_visible()
    live = page.get_by_test_id("chart-live-cpu")
    expect(live).to_be_visible(timeout=15_000)
    first = int(live.get_attribute("data-points") or 0)
    deadline = time.monotonic() + 15
    while int(live.get_attribute("data-points") or 0) <= first + 1:
        assert time.monotonic() < deadline, "live metrics did not move"
        page.wait_for_timeout(250)

    # Nothing drawn on the virtual screen yet: the image comes with a "blank" warning.
    page.get_by_test_id("cmd-screenshot").click()
    page.get_by_test_id("confirm-ok").click()
    expect(page.get_by_test_id("screenshot-img")).to_be_visible(timeout=20_000)
    expect(page.get_by_test_id("screenshot-blank")).to_be_visible()
    # Colour bars on the screen: the next screenshot shows them, with no warning.
    paint_colour_bars(xvfb_server)
    page.get_by_test_id("cmd-screenshot").click()
    page.get_by_test_id("confirm-ok").click()
    expect(page.get_by_test_id("screenshot-blank")).to_have_count(0, timeout=20_000)
    image = page.get_by_test_id("screenshot-img")
    expect(image).to_be_visible(timeout=20_000)
    width = page.evaluate("el => el.naturalWidth", image.element_handle())
    assert width > 0, "the screenshot image loaded"
    page.screenshot(path=str(SHOTS / "agent.png"), full_page=True)

    page.get_by_test_id("nav-fleet").click()
    expect(card).to_have_attribute("data-state", "online", timeout=10_000)
    began = time.monotonic()
    agent.kill9()
    expect(card).to_have_attribute("data-state", "offline", timeout=2_000)
    assert time.monotonic() - began < 2.0

    # The kill fired agent_offline: acknowledge it, silence it, end the silence.
    page.get_by_test_id("nav-alerts").click()
    alert = page.locator("tr[data-phase='firing']", has_text="agent_offline")
    expect(alert).to_have_count(1, timeout=10_000)
    alert.locator("[data-testid^='alert-ack-']").click()
    expect(alert.locator("[data-testid^='alert-acked-']")).to_contain_text("admin")
    alert.locator("[data-testid^='alert-silence-']").click()
    expect(page.get_by_test_id("silences-table")).to_contain_text("agent_offline on a1")
    expect(alert.locator("[data-testid^='alert-silenced-']")).to_be_visible()
    page.screenshot(path=str(SHOTS / "alerts.png"))
    page.locator("[data-testid^='silence-end-']").click()
    expect(page.get_by_test_id("silences-empty")).to_be_visible()
    expect(alert.locator("[data-testid^='alert-silenced-']")).to_have_count(0)
    page.get_by_test_id("nav-history").click()
    expect(page.locator("[data-testid^='history-screenshot-']")).to_have_count(2)
    page.screenshot(path=str(SHOTS / "history.png"))
    xvfb_server.clear()


def test_a_lost_live_connection_shows_a_banner(
    browser: Browser, api_server: Callable[..., ApiServer]
) -> None:
    api = api_server()
    page = logged_in(browser, api)
    expect(page.get_by_test_id("ws-status")).to_have_attribute(
        "data-status", "open", timeout=10_000
    )
    api.stop()
    expect(page.get_by_test_id("ws-banner")).to_be_visible(timeout=10_000)


def test_open_the_terminal_type_a_command_and_see_its_output(
    browser: Browser,
    api_server: Callable[..., ApiServer],
    start_agent: Callable[..., AgentProc],
) -> None:
    api = api_server()
    start_agent("a1", env={"ARETE_AGENT_TERMINAL__SHELL": "/bin/sh"})
    page = logged_in(browser, api)
    expect(page.get_by_test_id("agent-card-a1")).to_have_attribute(
        "data-state", "online", timeout=20_000
    )
    page.goto(api.base_url + "/#/agents/a1/terminal")
    expect(page.get_by_test_id("terminal-status")).to_have_attribute(
        "data-status", "open", timeout=20_000
    )
    terminal = page.get_by_test_id("terminal")
    terminal.click()
    page.wait_for_timeout(500)  # the shell's prompt
    page.keyboard.type("echo hello-$((6*7))")
    page.keyboard.press("Enter")
    expect(terminal).to_contain_text("hello-42", timeout=10_000)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "terminal.png"))

    # The terminal wears the page's theme, and follows the toggle in the same session.
    html = page.locator("html")
    for theme in ("light", "dark", "light"):
        if html.get_attribute("data-theme") != theme:
            page.get_by_test_id("theme-toggle").click()
        expect(html).to_have_attribute("data-theme", theme)
        page.wait_for_timeout(200)  # xterm repaints on its next frame
        background, text = terminal_lightness(page)
        light = theme == "light"
        assert background > 0.9 if light else background < 0.1, (theme, background)
        assert text < 0.3 if light else text > 0.7, (theme, text)
    expect(terminal).to_contain_text("hello-42")  # still the same session
    expect(page.get_by_test_id("terminal-status")).to_have_attribute("data-status", "open")


def terminal_lightness(page: Page) -> tuple[float, float]:
    """0 (black) to 1 (white): the terminal's background and its text as painted."""
    rgb = page.evaluate(
        """() => {
          const c = document.createElement('canvas').getContext('2d');
          const shade = (css) => {
            c.clearRect(0, 0, 1, 1);
            c.fillStyle = css;
            c.fillRect(0, 0, 1, 1);
            const [r, g, b] = c.getImageData(0, 0, 1, 1).data;
            return (r + g + b) / (3 * 255);
          };
          // xterm 6 paints its background on the scrollable element around the rows.
          const box = document.querySelector('[data-testid=terminal]');
          const viewport = box.querySelector('.xterm-scrollable-element');
          const rows = box.querySelector('.xterm-rows');
          return [shade(getComputedStyle(viewport).backgroundColor),
                  shade(getComputedStyle(rows).color)];
        }"""
    )
    return float(rgb[0]), float(rgb[1])


def test_a_session_ended_elsewhere_returns_the_open_page_to_the_login(
    browser: Browser, api_server: Callable[..., ApiServer]
) -> None:
    api = api_server(ws_recheck_s=0.3)
    page = logged_in(browser, api)
    expect(page.get_by_test_id("ws-status")).to_have_attribute(
        "data-status", "open", timeout=10_000
    )
    # Another tab of the same browser signs out: the server ends the session.
    assert page.request.post(api.base_url + "/auth/logout").status == 204
    expect(page.get_by_test_id("login-username")).to_be_visible(timeout=5_000)


def test_the_first_admin_chooses_a_password_before_seeing_the_fleet(
    browser: Browser, api_server: Callable[..., ApiServer]
) -> None:
    api = api_server()
    store = UserStore(api.settings.users_db)
    try:  # as `arete up` makes the first admin: a printed password, to be changed
        store.add_user("first", "admin", "printed-by-up-1", must_change_password=True)
    finally:
        store.close()
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(api.base_url + "/")
    page.get_by_test_id("login-username").fill("first")
    page.get_by_test_id("login-password").fill("printed-by-up-1")
    page.get_by_test_id("login-submit").click()
    expect(page.get_by_test_id("password-form")).to_be_visible(timeout=15_000)
    assert page.request.get(api.base_url + "/agents").status == 403, "nothing else answers yet"
    page.close()

    page = logged_in(browser, api, "first", "printed-by-up-1", new_password="chosen-by-me-2")
    expect(page.get_by_test_id("password-form")).to_have_count(0)
    assert page.request.get(api.base_url + "/agents").status == 200
    old = page.request.post(
        api.base_url + "/auth/login", data={"username": "first", "password": "printed-by-up-1"}
    )
    assert old.status == 401, "the printed password no longer works"
