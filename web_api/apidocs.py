"""``/docs``: Swagger UI served by the app itself, with no network and under the app's
own Content-Security-Policy (no CDN, no inline script).

The Swagger UI files come from the ``fastapi-offline`` package (PyPI), which ships
``swagger-ui-bundle.js`` and ``swagger-ui.css``; the start script is ours, a file, as
the CSP allows scripts from the app's own origin only.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Final

from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse, Response

from web_api.errors import error_response

ASSETS: Final = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "favicon.png": "image/png",
}

START_JS: Final = """window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    layout: "BaseLayout",
    presets: [SwaggerUIBundle.presets.apis],
    withCredentials: true,
  });
});
"""

PAGE: Final = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} - API</title>
<link rel="icon" type="image/png" href="/docs/assets/favicon.png">
<link rel="stylesheet" href="/docs/assets/swagger-ui.css">
</head><body>
<div id="swagger-ui"><noscript>The API documentation needs JavaScript; the schema
itself is at <a href="/openapi.json">/openapi.json</a>.</noscript></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script src="/docs/assets/start.js"></script>
</body></html>
"""

NO_ASSETS: Final = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title} - API</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 3em auto">
<h1>API documentation</h1>
<p>Swagger UI is not installed (pip install fastapi-offline). The API's schema is at
<a href="/openapi.json">/openapi.json</a>.</p></body></html>
"""


def assets_dir() -> Path | None:
    """Where the Swagger UI files are, or None when the package is not installed."""
    spec = importlib.util.find_spec("fastapi_offline")
    if spec is None or spec.origin is None:
        return None
    static = Path(spec.origin).parent / "static"
    return static if (static / "swagger-ui-bundle.js").is_file() else None


def docs_router(title: str) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    static = assets_dir()

    @router.api_route("/docs", methods=["GET", "HEAD"])
    async def docs() -> Response:
        return HTMLResponse(
            (PAGE if static is not None else NO_ASSETS).format(title=title),
            headers={"Cache-Control": "no-cache"},
        )

    @router.api_route("/docs/assets/{name}", methods=["GET", "HEAD"])
    async def asset(name: str) -> Response:
        if name == "start.js":
            return Response(START_JS, media_type="text/javascript")
        if static is None or name not in ASSETS:
            return error_response(404, "not_found", f"no route /docs/assets/{name}")
        return FileResponse(
            static / name,
            media_type=ASSETS[name],
            headers={"Cache-Control": "public, max-age=86400"},
        )

    return router
