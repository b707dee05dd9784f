"""Serving the built dashboard (a single-page app) at ``/``.

Files of the dist dir are served as they are; any other GET path falls back to
``index.html`` so the SPA's own routes work on reload, except API paths, which keep
their JSON 404. Without a build, ``/`` says how to make one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse, Response

from web_api.errors import error_response

API_PREFIXES: Final = (
    "agents",
    "commands",
    "jobs",
    "alerts",
    "silences",
    "audit",
    "users",
    "auth",
    "healthz",
    "readyz",
    "metrics",
    "ws",
    "docs",
    "redoc",
    "openapi.json",
    "api",
)

MAX_PATH_CHARS: Final = 1024

NOT_BUILT: Final = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Areté</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 3em auto">
<h1>Areté</h1>
<p>The API is running, but the dashboard is not built.</p>
<p>Build it with <code>cd dashboards/web &amp;&amp; npm ci &amp;&amp; npm run build</code>
(or run the setup script), then restart. The API is documented at
<a href="/docs">/docs</a>.</p>
</body></html>
"""


def is_api_path(path: str) -> bool:
    first = path.strip("/").split("/", 1)[0]
    return first in API_PREFIXES


def is_safe_path(path: str) -> bool:
    """No NUL or other control character, and short enough for any file system."""
    return len(path) <= MAX_PATH_CHARS and all(ch.isprintable() for ch in path)


def resolve_file(dist: Path, path: str) -> Path | None:
    """The file under ``dist`` for ``path``, never outside it (None for any odd path)."""
    if not is_safe_path(path):
        return None
    root = dist.resolve()
    try:
        candidate = (root / path.lstrip("/")).resolve()
        if candidate != root and root not in candidate.parents:
            return None
        return candidate if candidate.is_file() else None
    except (OSError, ValueError):  # too long a name, an unreadable dir, ...
        return None


def dashboard_router(dist: Path | None) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    # HEAD too: uptime checkers probe pages with it (405 read as "down").
    @router.api_route("/{path:path}", methods=["GET", "HEAD"])
    async def spa(path: str) -> Response:
        if not is_safe_path(path):
            return error_response(404, "not_found", "no such path")
        if is_api_path(path):
            return error_response(404, "not_found", f"no route /{path}")
        if dist is None:
            if path in ("", "index.html"):
                return HTMLResponse(NOT_BUILT)
            return error_response(404, "not_found", f"no route /{path}")
        found = resolve_file(dist, path) if path else None
        if found is not None:
            cache = (
                "public, max-age=31536000, immutable" if "/assets/" in f"/{path}" else "no-cache"
            )
            return FileResponse(found, headers={"Cache-Control": cache})
        return FileResponse(dist / "index.html", headers={"Cache-Control": "no-cache"})

    return router
