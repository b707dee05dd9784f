"""``HEAD`` answers like ``GET`` without a body (uptime checkers probe with it), and the
API documentation's files are served by the app itself."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from tests.fixtures.api import ApiServer


def test_head_of_the_dashboard_health_and_docs_is_200_without_a_body(
    api_server: Callable[..., ApiServer],
) -> None:
    api = api_server()
    with httpx.Client(base_url=api.base_url, timeout=30) as anonymous:
        for path in ("/", "/index.html", "/agents-page-route", "/healthz", "/docs"):
            got, head = anonymous.get(path), anonymous.head(path)
            assert head.status_code == got.status_code == 200, path
            assert head.content == b"", path
            assert head.headers["content-type"] == got.headers["content-type"], path
            assert "content-security-policy" in head.headers, path
        # A route that needs a user says so to HEAD too; an unknown API path is 404.
        assert anonymous.head("/agents").status_code == anonymous.get("/agents").status_code
        assert anonymous.head("/agents").status_code == 401
        assert anonymous.head("/no-such-api/x").status_code == 200  # the SPA's own routes
        assert anonymous.head("/healthz/nothing").status_code == 404
    with api.client() as admin:
        assert admin.head("/agents").status_code == 200


def test_docs_page_and_its_assets_come_from_the_app(
    api_server: Callable[..., ApiServer],
) -> None:
    api = api_server()
    with httpx.Client(base_url=api.base_url, timeout=30) as anonymous:
        page = anonymous.get("/docs")
        assert page.status_code == 200
        assert "http" not in page.text.split("<body>")[0].replace("http-equiv", "")
        assert "<script>" not in page.text  # no inline script: the CSP forbids it
        for asset, kind in (
            ("/docs/assets/swagger-ui-bundle.js", "javascript"),
            ("/docs/assets/swagger-ui.css", "text/css"),
            ("/docs/assets/start.js", "javascript"),
        ):
            got = anonymous.get(asset)
            assert got.status_code == 200, asset
            assert kind in got.headers["content-type"], asset
            assert len(got.content) > 20, asset
        assert "SwaggerUIBundle" in anonymous.get("/docs/assets/swagger-ui-bundle.js").text
        assert anonymous.get("/docs/assets/..%2F..%2Fpyproject.toml").status_code == 404
        assert anonymous.get("/docs/assets/nothing.js").status_code == 404
        assert anonymous.get("/redoc").status_code == 404
