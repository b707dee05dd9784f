"""The FastAPI application: ``create_app(settings, maestro=None)``.

With no maestro given, the app's lifespan starts one from the same data dir (``arete
web run`` is then maestro + API in one process); tests pass a running one, or
``start_maestro=False`` for an app whose fleet routes answer 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.util
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from maestro.app import Maestro
from maestro.settings import MaestroSettings
from web_api.auto_update import AutoUpdater
from web_api.errors import install_error_handlers
from web_api.head import HeadAsGetMiddleware
from web_api.jobs import JobRunner
from web_api.logredact import install_log_redaction
from web_api.middleware import BodyLimitMiddleware, GuardMiddleware
from web_api.routers import (
    agents,
    alerts,
    audit,
    auth,
    commands,
    health,
    jobs,
    notifiers,
    releases,
    users,
    ws,
)
from web_api.settings import WebSettings
from web_api.state import AppState

log = logging.getLogger("arete.web")

DESCRIPTION = """REST and websocket API of an Areté control plane.

Authenticate with `Authorization: Bearer <token>` (from `arete users add`) or the
session cookie set by `POST /auth/login`. Roles: viewer < operator < admin; each
operation's `x-required-role` says what it needs. Errors are
`{"error": code, "detail": text}`.
"""


def create_app(
    settings: WebSettings,
    maestro: Maestro | None = None,
    *,
    start_maestro: bool = True,
    maestro_options: dict[str, Any] | None = None,
    maestro_settings: MaestroSettings | None = None,
) -> FastAPI:
    """The app. ``maestro_settings`` (else ``maestro_options`` given to
    ``maestro.settings.load_settings``) when the lifespan starts the maestro itself."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = await asyncio.to_thread(AppState.build, settings)
        app.state.arete = state
        async with contextlib.AsyncExitStack() as stack:
            stack.push_async_callback(asyncio.to_thread, state.users.close)
            running = maestro
            if running is None and start_maestro:
                from maestro.settings import load_settings

                options = {"data_dir": settings.data_dir, **(maestro_options or {})}
                chosen = maestro_settings or load_settings(**options)
                running = await stack.enter_async_context(Maestro.running(chosen))
            if running is not None:
                state.maestro = running
                state.jobs = JobRunner(running)
                stack.push_async_callback(state.jobs.close)
                if settings.auto_update:  # rollouts per label group (docs/updates.md)
                    watcher = AutoUpdater(state.jobs, settings.auto_update)
                    watcher.start()
                    stack.push_async_callback(watcher.close)
            log.info(
                "web api ready data_dir=%s dashboard=%s", settings.data_dir, settings.dashboard()
            )
            yield

    app = FastAPI(
        title="Areté",
        version=_version(),
        description=DESCRIPTION,
        lifespan=lifespan,
        # Swagger UI is served by the app itself (web_api.apidocs): FastAPI's pages load
        # it from a CDN, which the CSP blocks and many control planes cannot reach.
        docs_url=None,
        redoc_url=None,
    )
    install_error_handlers(app)
    install_log_redaction()
    # Added last is outermost: HEAD becomes GET first, then the rate limit, then the body cap.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(GuardMiddleware)
    app.add_middleware(HeadAsGetMiddleware)
    routers = (health, auth, agents, commands, jobs, alerts, notifiers, audit, users, releases, ws)
    for module in routers:
        app.include_router(module.router)
    terminal = _terminal_router()
    if terminal is not None:
        app.include_router(terminal)
    from web_api.apidocs import docs_router
    from web_api.dashboard import dashboard_router

    app.include_router(docs_router(app.title))
    app.include_router(dashboard_router(settings.dashboard()))
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _terminal_router() -> Any:
    """``web_api.terminal.router`` when that module is there (the terminal relay)."""
    if importlib.util.find_spec("web_api.terminal") is None:
        return None
    return importlib.import_module("web_api.terminal").router


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    components = schema.setdefault("components", {})
    components["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer", "description": "arete_<id>_<secret>"},
        "session": {"type": "apiKey", "in": "cookie", "name": "arete_session"},
    }
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            if isinstance(operation, dict) and operation.get("x-required-role", "none") != "none":
                operation["security"] = [{"bearer": []}, {"session": []}]
    app.openapi_schema = schema
    return schema


def _version() -> str:
    try:
        from arete import __version__

        return str(__version__)
    except ImportError:
        return "0"
