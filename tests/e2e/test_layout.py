"""Tier 3: Mission Control's shell in real Chromium — no page wider than a phone, light
and dark themes, the fleet sorted, grouped and in a table — and a screenshot of every
page at both sizes and in both themes (docs/screenshots/<page>-<size>-<theme>.png).

The pages are read from the dashboard's router (dashboards/web/src/lib/router.ts), so a
page added there is measured and photographed here without touching this file; a page
that needs parameters in its URL must be given them in ``PARAMETRIC`` below.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.fixtures.agent import AgentProc
from tests.fixtures.api import ADMIN_PASSWORD, ApiServer
from tests.fixtures.browser import CHROMIUM, DIST, SHOTS

pytestmark = [
    pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="Debian's chromium is not installed"),
    pytest.mark.skipif(not DIST.exists(), reason="the dashboard is not built (scripts/setup.sh)"),
]

ROUTER = Path(__file__).resolve().parents[2] / "dashboards" / "web" / "src" / "lib" / "router.ts"
SIZES = {"desktop": (1366, 900), "phone": (390, 844)}
Theme = Literal["dark", "light"]
THEMES: tuple[Theme, ...] = ("dark", "light")
PHONE_WIDTH = SIZES["phone"][0]
AGENT = "a1"

# Pages whose URL needs more than their name: page -> function of the router's agent tabs.
PARAMETRIC: dict[str, Callable[[list[str]], dict[str, str]]] = {
    "agent": lambda tabs: {
        f"agent-{tab}": f"#/agents/{AGENT}" + ("" if tab == "overview" else f"/{tab}")
        for tab in tabs
    },
}
# Pages not behind the sign-in (measured before it).
SIGNED_OUT = {"login"}

# Everything a finger presses, and whether its width counts too (buttons, tabs).
TOUCH_TARGETS_JS = """() => {
  const sel = 'button, select, summary, [role=tab], [role=button], a[href],'
    + ' input:not([type=checkbox]):not([type=radio]):not([type=range]):not([type=hidden])';
  const small = [];
  for (const e of document.querySelectorAll(sel)) {
    const r = e.getBoundingClientRect();
    const s = getComputedStyle(e);
    if (r.width === 0 || r.height === 0 || s.visibility === 'hidden') continue;
    if (e.closest('.xterm')) continue;  // the terminal's own hidden helpers
    const wide = e.matches('button, [role=tab], [role=button]') ? r.width >= 39.5 : true;
    if (r.height < 39.5 || !wide) {
      small.push(`${Math.round(r.width)}x${Math.round(r.height)} ${e.outerHTML.slice(0, 100)}`);
    }
  }
  return small;
}"""


# The innermost elements reaching past the right edge: what makes a page too wide.
WIDE_JS = """() => {
  const out = [];
  for (const e of document.body.querySelectorAll('*')) {
    const r = e.getBoundingClientRect();
    if (r.right <= window.innerWidth + 0.5 || r.width === 0) continue;
    const edge = window.innerWidth + 0.5;
    const child = [...e.children].some(c => c.getBoundingClientRect().right > edge);
    if (!child) out.push(`${Math.round(r.right)} px: ${e.outerHTML.slice(0, 90)}`);
  }
  return out.slice(0, 3);
}"""


def router_pages() -> dict[str, str]:
    """Each page of the router (agent tabs each count) -> the hash that opens it."""
    source = ROUTER.read_text(encoding="utf-8")
    union = re.search(r"export type Route =(.*?);\n", source, re.S)
    assert union, f"no `export type Route` union in {ROUTER}"
    tabs_m = re.search(r"TABS[^=]*=\s*\[([^\]]*)\]", source)
    tabs = re.findall(r'"([\w-]+)"', tabs_m.group(1)) if tabs_m else ["overview"]
    heads = {
        page: head
        for head, page in re.findall(
            r'head === "([\w-]+)"\)\s*return \{\s*page:\s*"([\w-]+)"', source
        )
    }
    pages: dict[str, str] = {}
    for name, extra in re.findall(r'\{\s*page:\s*"([\w-]+)"\s*;?([^}]*)\}', union.group(1)):
        if name in SIGNED_OUT:
            continue
        if extra.strip():
            assert name in PARAMETRIC, (
                f"page {name!r} takes parameters ({extra.strip()}): give its URL in "
                f"PARAMETRIC in {__file__}"
            )
            pages.update(PARAMETRIC[name](tabs))
        else:
            pages[name] = "#/" if name == "fleet" else f"#/{heads.get(name, name)}"
    return pages


def test_the_router_pages_are_all_found() -> None:
    pages = router_pages()
    for name in ("fleet", "agent-overview", "agent-containers", "agent-terminal", "alerts"):
        assert name in pages, f"{name} missing from {sorted(pages)}"
    assert pages["fleet"] == "#/"
    assert pages["agent-terminal"] == f"#/agents/{AGENT}/terminal"


def new_page(browser: Browser, size: str, theme: Theme) -> Page:
    width, height = SIZES[size]
    context = browser.new_context(viewport={"width": width, "height": height}, color_scheme=theme)
    return context.new_page()


def sign_in(page: Page, api: ApiServer) -> None:
    page.get_by_test_id("login-username").fill("admin")
    page.get_by_test_id("login-password").fill(ADMIN_PASSWORD)
    page.get_by_test_id("login-submit").click()
    expect(page.get_by_test_id("current-user")).to_be_visible(timeout=15_000)


def settle(page: Page) -> None:
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(400)  # the last renders after the data came


def scroll_width(page: Page) -> int:
    return int(page.evaluate("document.documentElement.scrollWidth"))


def background_lightness(page: Page) -> float:
    """0 (black) to 1 (white): the page's background as the user sees it."""
    rgb = page.evaluate(
        """() => {
          const c = document.createElement('canvas').getContext('2d');
          c.fillStyle = getComputedStyle(document.body).backgroundColor;
          c.fillRect(0, 0, 1, 1);
          return Array.from(c.getImageData(0, 0, 1, 1).data.slice(0, 3));
        }"""
    )
    return float(sum(rgb)) / (3 * 255)


def start_two(start_agent: Callable[..., AgentProc]) -> tuple[AgentProc, AgentProc]:
    fast = {"ARETE_AGENT_INTERVAL_S": "1", "ARETE_AGENT_HEARTBEAT_S": "2"}
    a1 = start_agent(
        AGENT,
        env={
            **fast,
            "ARETE_AGENT_LABELS": json.dumps({"site": "lyon", "role": "web"}),
            "ARETE_AGENT_TERMINAL__SHELL": "/bin/sh",
        },
    )
    a2 = start_agent("a2", env={**fast, "ARETE_AGENT_LABELS": json.dumps({"site": "paris"})})
    return a1, a2


def test_no_page_is_wider_than_a_phone_touch_targets_are_40_px_and_every_page_is_photographed(
    browser: Browser,
    api_server: Callable[..., ApiServer],
    start_agent: Callable[..., AgentProc],
) -> None:
    api = api_server()
    _, a2 = start_two(start_agent)
    with api.client() as client:  # an agent with data, one gone (an alert), a command
        for _ in range(60):
            states = {a["id"]: a["state"] for a in client.get("/agents").json()}
            if states.get(AGENT) == states.get("a2") == "online":
                break
            time.sleep(0.5)
        a2.kill9()
        reply = client.post(f"/agents/{AGENT}/command", json={"name": "metrics", "args": {}})
        assert reply.status_code < 300, reply.text
    pages = router_pages()
    SHOTS.mkdir(parents=True, exist_ok=True)
    too_wide: list[str] = []
    too_small: list[str] = []
    for size in SIZES:
        for theme in THEMES:
            page = new_page(browser, size, theme)
            page.goto(api.base_url + "/")
            expect(page.get_by_test_id("login-username")).to_be_visible(timeout=15_000)
            assert page.evaluate("document.documentElement.dataset.theme") == theme
            page.screenshot(path=str(SHOTS / f"login-{size}-{theme}.png"))
            if size == "phone" and scroll_width(page) > PHONE_WIDTH:
                too_wide.append(f"login: {scroll_width(page)} px")
            sign_in(page, api)
            expect(page.get_by_test_id(f"agent-card-{AGENT}")).to_be_visible(timeout=20_000)
            for name, hash_ in pages.items():
                page.goto(f"{api.base_url}/{hash_}")
                settle(page)
                page.screenshot(path=str(SHOTS / f"{name}-{size}-{theme}.png"), full_page=True)
                if size != "phone":
                    continue
                width = scroll_width(page)
                if width > PHONE_WIDTH:
                    too_wide.append(f"{name}: {width} px {page.evaluate(WIDE_JS)}")
                if theme == "dark":
                    too_small += [f"{name}: {t}" for t in page.evaluate(TOUCH_TARGETS_JS)]
            # The fleet's compact table too (a list on a phone).
            page.goto(f"{api.base_url}/#/")
            page.get_by_test_id("fleet-view-table").click()
            expect(page.get_by_test_id(f"agent-row-{AGENT}")).to_be_visible()
            settle(page)
            page.screenshot(path=str(SHOTS / f"fleet-table-{size}-{theme}.png"), full_page=True)
            if size == "phone" and scroll_width(page) > PHONE_WIDTH:
                too_wide.append(f"fleet table: {scroll_width(page)} px")
            page.context.close()
    assert not too_wide, f"pages wider than a {PHONE_WIDTH} px phone:\n" + "\n".join(too_wide)
    assert not too_small, "touch targets under 40 px on a phone:\n" + "\n".join(too_small)


def test_the_theme_follows_the_system_and_the_toggle_is_remembered(
    browser: Browser, api_server: Callable[..., ApiServer]
) -> None:
    api = api_server()
    page = new_page(browser, "desktop", "light")
    page.goto(api.base_url + "/")
    expect(page.get_by_test_id("login-username")).to_be_visible(timeout=15_000)
    assert background_lightness(page) > 0.9, "a light system gets a light login page"
    sign_in(page, api)
    html = page.locator("html")
    expect(html).to_have_attribute("data-theme", "light")
    assert background_lightness(page) > 0.9

    # The system turns dark: the open page follows at once.
    page.emulate_media(color_scheme="dark")
    expect(html).to_have_attribute("data-theme", "dark")
    assert background_lightness(page) < 0.1
    page.emulate_media(color_scheme="light")
    expect(html).to_have_attribute("data-theme", "light")

    # The user prefers dark: remembered over a reload, whatever the system says.
    page.get_by_test_id("theme-toggle").click()
    expect(html).to_have_attribute("data-theme", "dark")
    assert background_lightness(page) < 0.1
    page.reload()
    expect(page.get_by_test_id("current-user")).to_be_visible(timeout=15_000)
    expect(html).to_have_attribute("data-theme", "dark")

    # Back to light, the system's own choice: the page follows the system again.
    page.get_by_test_id("theme-toggle").click()
    expect(html).to_have_attribute("data-theme", "light")
    page.emulate_media(color_scheme="dark")
    expect(html).to_have_attribute("data-theme", "dark")
    page.context.close()


def card_ids(page: Page, scope: str = "") -> list[str]:
    ids = page.locator(f"{scope} [data-testid^='agent-card-']").evaluate_all(
        "els => els.map(e => e.dataset.testid.slice('agent-card-'.length))"
    )
    return [str(i) for i in ids]


def test_the_fleet_sorts_groups_by_label_shows_a_table_and_marks_stale_data(
    browser: Browser,
    api_server: Callable[..., ApiServer],
    start_agent: Callable[..., AgentProc],
) -> None:
    api = api_server()
    _, a2 = start_two(start_agent)
    page = new_page(browser, "desktop", "dark")
    page.goto(api.base_url + "/")
    sign_in(page, api)
    for agent in (AGENT, "a2"):
        expect(page.get_by_test_id(f"agent-card-{agent}")).to_have_attribute(
            "data-state", "online", timeout=20_000
        )
        expect(page.get_by_test_id(f"agent-cpu-{agent}")).not_to_have_text("—", timeout=10_000)

    # Group by the site label: one section per site, each with its agent.
    page.get_by_test_id("fleet-group-by").select_option("site")
    groups = page.get_by_test_id("fleet-group")
    expect(groups).to_have_count(2)
    expect(groups.nth(0)).to_have_attribute("data-group", "site=lyon")
    expect(groups.nth(1)).to_have_attribute("data-group", "site=paris")
    assert card_ids(page, "[data-group='site=lyon']") == [AGENT]
    assert card_ids(page, "[data-group='site=paris']") == ["a2"]
    # By role: a2 has none and comes last.
    page.get_by_test_id("fleet-group-by").select_option("role")
    expect(groups.nth(1)).to_have_attribute("data-group", "no role")
    page.get_by_test_id("fleet-group-by").select_option("")
    expect(groups).to_have_count(1)

    # a2 stops answering: its figures get a stale mark; a1's do not.
    a2.kill9()
    expect(page.get_by_test_id("agent-stale-a2")).to_be_visible(timeout=15_000)
    expect(page.get_by_test_id(f"agent-stale-{AGENT}")).to_have_count(0)
    # Sorted by the oldest sign of life, the silent agent comes first; by name, a1.
    page.get_by_test_id("fleet-sort").select_option("seen")
    assert card_ids(page) == ["a2", AGENT]
    page.get_by_test_id("fleet-sort").select_option("id")
    assert card_ids(page) == [AGENT, "a2"]

    # The compact table: one row per agent, kept over a reload with the sort.
    page.get_by_test_id("fleet-view-table").click()
    rows = page.locator("[data-testid^='agent-row-']")
    expect(rows).to_have_count(2)
    expect(page.get_by_test_id(f"agent-row-{AGENT}")).to_have_attribute("data-stale", "false")
    expect(page.get_by_test_id("agent-row-a2")).to_have_attribute("data-stale", "true")
    expect(page.get_by_test_id(f"row-cpu-{AGENT}")).to_contain_text("%")
    page.reload()
    expect(page.get_by_test_id("fleet-view")).to_have_attribute(
        "data-layout", "table", timeout=15_000
    )
    expect(page.get_by_test_id("fleet-sort")).to_have_value("id")
    assert page.locator("[data-testid^='agent-row-']").evaluate_all(
        "els => els.map(e => e.dataset.testid)"
    ) == [f"agent-row-{AGENT}", "agent-row-a2"]
    page.get_by_test_id("fleet-view-cards").click()
    expect(page.get_by_test_id("fleet-grid")).to_be_visible()
    page.context.close()
