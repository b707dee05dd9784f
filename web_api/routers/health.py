"""Probes (no auth: load balancers and systemd call them) and Prometheus metrics."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Annotated, Any, Final

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from maestro.errors import StoreError
from web_api.auth.roles import Role
from web_api.deps import CurrentUser, Fleet, State, needs
from web_api.models import Health

router = APIRouter(tags=["health"])

PUBLIC: Final[dict[str, Any]] = {"openapi_extra": {"x-required-role": "none"}}
READY_TIMEOUT_S: Final = 2.0


@router.get("/healthz", **PUBLIC)
async def healthz() -> Health:
    """The process is up."""
    return Health(status="ok")


@router.get(
    "/readyz",
    **PUBLIC,
    responses={503: {"model": Health, "description": "Not ready: see checks"}},
)
async def readyz(state: State) -> JSONResponse:
    """Ready: the maestro is connected to MQTT and its store answers. ``checks.disk`` is
    false while the maestro's data disk is full: informative, the replica stays ready
    (it reads, pages and keeps what it decides in memory until the disk has room)."""
    m = state.maestro
    mqtt = m is not None and m.link.connected
    disk = m is not None and not m.disk.full
    store = False
    if m is not None:
        try:
            async with asyncio.timeout(READY_TIMEOUT_S):
                store = await m.store.read(lambda conn: conn.execute("SELECT 1").fetchone()) == (1,)
        except (StoreError, sqlite3.Error, OSError, TimeoutError):  # only "not ready"
            store = False
    ok = mqtt and store
    checks = {"mqtt": mqtt, "store": store, "disk": disk}
    body = Health(status="ok" if ok else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)


@router.get(
    "/metrics",
    response_class=Response,
    **needs(Role.VIEWER, 503),
)
async def metrics(
    user: CurrentUser, m: Fleet, names: Annotated[list[str] | None, Query(alias="name[]")] = None
) -> Response:
    """The maestro's and the fleet's Prometheus metrics (text exposition format);
    ``name[]`` (repeatable) selects series by name (docs/prometheus.md)."""
    if m.prometheus is None:
        return Response("", media_type=CONTENT_TYPE_LATEST)
    body = await asyncio.to_thread(m.prometheus.render, names)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
