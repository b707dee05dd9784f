"""Tier 3: what each role is offered in Mission Control (real Chromium, real web API):
a page the API would refuse is not in the header, and the API refuses it anyway."""

from __future__ import annotations

import shutil
from collections.abc import Callable

import pytest
from playwright.sync_api import APIResponse, Browser, Page, expect

from tests.fixtures.api import ApiServer
from tests.fixtures.broker import Broker
from tests.fixtures.browser import CHROMIUM, DIST, logged_in
from web_api.auth.users import UserStore

pytestmark = [
    pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="Debian's chromium is not installed"),
    pytest.mark.skipif(not DIST.exists(), reason="the dashboard is not built (scripts/setup.sh)"),
]

PASSWORD = "a long enough password for a test"
EVERYONE = ("fleet", "alerts", "history", "jobs", "rules")


def signed_in_as(browser: Browser, broker: Broker, api: ApiServer, role: str) -> Page:
    """The fixture's ``viewer`` and ``operator`` have tokens only: give one a password."""
    store = UserStore(broker.data_dir / "web" / "users.db")
    try:
        store.set_password(role, PASSWORD)
    finally:
        store.close()
    return logged_in(browser, api, role, PASSWORD)


def refused(response: APIResponse) -> bool:
    """The API's role refusal (not a missing route or a bad request)."""
    return response.status == 403 and response.json()["error"] == "forbidden"


def nav_pages(page: Page) -> list[str]:
    expect(page.get_by_test_id("nav-fleet")).to_be_visible()
    ids = page.locator("[data-testid^='nav-']").evaluate_all(
        "els => els.map(e => e.dataset.testid.slice('nav-'.length))"
    )
    return [str(i) for i in ids]


def test_a_viewer_is_offered_neither_users_nor_notifiers_and_the_api_refuses_both(
    browser: Browser, broker: Broker, api_server: Callable[..., ApiServer]
) -> None:
    api = api_server()
    page = signed_in_as(browser, broker, api, "viewer")
    assert nav_pages(page) == list(EVERYONE)
    # With the viewer's own session cookie, the API says no too.
    assert refused(page.request.get(f"{api.base_url}/users"))
    assert refused(page.request.get(f"{api.base_url}/notifiers"))
    # A typed URL shows why, not an error.
    page.goto(f"{api.base_url}/#/users")
    expect(page.get_by_test_id("users-admin-only")).to_be_visible()
    page.goto(f"{api.base_url}/#/notifiers")
    expect(page.get_by_test_id("notifiers-operator-only")).to_be_visible()
    # Jobs and rules are read-only for a viewer: no form to start or silence anything.
    page.get_by_test_id("nav-jobs").click()
    expect(page.get_by_test_id("jobs-empty")).to_be_visible()
    expect(page.get_by_test_id("job-form")).to_have_count(0)
    assert refused(page.request.post(f"{api.base_url}/jobs", data={"name": "metrics"}))


def test_an_operator_sees_notifiers_but_not_users_and_cannot_pick_shell_for_a_job(
    browser: Browser, broker: Broker, api_server: Callable[..., ApiServer]
) -> None:
    api = api_server()
    page = signed_in_as(browser, broker, api, "operator")
    assert nav_pages(page) == [*EVERYONE, "notifiers"]
    assert refused(page.request.get(f"{api.base_url}/users"))
    assert page.request.get(f"{api.base_url}/notifiers").status == 200
    page.get_by_test_id("nav-jobs").click()
    options = page.get_by_test_id("job-command").locator("option").all_inner_texts()
    assert "shell" not in options
    assert {"metrics", "docker_restart", "restart"} <= set(options)
    shell = {"name": "shell", "args": {"command": "id"}, "labels": {}}
    assert refused(page.request.post(f"{api.base_url}/jobs", data=shell))


def test_an_admin_is_offered_every_page(
    browser: Browser, api_server: Callable[..., ApiServer]
) -> None:
    page = logged_in(browser, api_server())
    assert nav_pages(page) == [*EVERYONE, "notifiers", "users"]
