"""``/docs`` in real Chromium with no network: Swagger UI comes from the app itself,
under the app's own Content-Security-Policy, and lists the API's operations."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Request, Route, expect

from tests.fixtures.api import ApiServer
from tests.fixtures.browser import CHROMIUM

pytestmark = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None, reason="Debian's chromium is not installed"
)


def test_docs_lists_the_operations_with_no_network_and_the_csp_intact(
    browser: Browser, api_server: Callable[..., ApiServer]
) -> None:
    api = api_server()
    own = urlsplit(api.base_url).netloc
    elsewhere: list[str] = []
    csp_errors: list[str] = []

    def offline(route: Route, request: Request) -> None:
        """As on a control plane without internet: only the app itself answers."""
        if urlsplit(request.url).netloc == own:
            route.continue_()
        else:
            elsewhere.append(request.url)
            route.abort("internetdisconnected")

    def console(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text or "Content-Security-Policy" in message.text:
            csp_errors.append(message.text)

    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.route("**/*", offline)
    page.on("console", console)
    answer = page.goto(api.base_url + "/docs")
    assert answer is not None
    assert answer.status == 200
    assert "default-src 'self'" in answer.headers["content-security-policy"]

    operations = page.locator(".opblock")
    expect(operations.first).to_be_visible(timeout=20_000)
    assert operations.count() >= 20
    expect(page.locator(".opblock-summary-path", has_text="/agents").first).to_be_visible()
    expect(page.locator(".opblock-summary-path", has_text="/auth/login").first).to_be_visible()
    expect(page.locator(".info .title")).to_contain_text("Areté")
    assert elsewhere == []
    assert csp_errors == []
    page.close()
