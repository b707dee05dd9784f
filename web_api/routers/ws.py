"""``/ws``: live events (agent, alert, command) and per-agent metric streams.

Browsers cannot set headers on a websocket, so the session cookie or ``?token=`` is
the credential; the ``Origin`` must be the server's own or an allowed one (a page of
another site must not ride on the user's cookie). Refusals happen before the
handshake completes, so the client sees HTTP 403.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import TYPE_CHECKING, Any, Final

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from maestro.live_feed import Watcher
from web_api.auth.roles import Role
from web_api.auth.users import Principal
from web_api.deps import SESSION_COOKIE
from web_api.live import ClientMessageError, MetricStreams, event_frame, parse_client_message
from web_api.origin import origin_allowed
from web_api.state import AppState

if TYPE_CHECKING:
    from maestro.app import Maestro

router = APIRouter(tags=["live"])

CLOSE_FORBIDDEN: Final = 4403
CLOSE_UNAUTHORIZED: Final = 4401
CLOSE_UNAVAILABLE: Final = 1013
MAX_CLIENT_MESSAGE: Final = 64 * 1024


async def websocket_principal(ws: WebSocket, needed: Role) -> Principal | None:
    """Check Origin and credentials; close the websocket (before accept) and return None
    when refused."""
    state: AppState = ws.app.state.arete
    if not origin_allowed(
        ws.headers.get("origin"),
        ws.headers.get("host"),
        state.settings.allowed_origins,
        missing_ok=True,
    ):
        await ws.close(code=CLOSE_FORBIDDEN, reason="origin not allowed")
        return None
    principal = await _principal(state, ws)
    if principal is None:
        await ws.close(code=CLOSE_UNAUTHORIZED, reason="sign in first")
        return None
    if not principal.role.allows(needed):
        await ws.close(code=CLOSE_FORBIDDEN, reason=f"needs the {needed.value} role")
        return None
    return principal


async def _principal(state: AppState, ws: WebSocket) -> Principal | None:
    """Who the websocket's token (``?token=`` or bearer) or session cookie names, now."""
    token = ws.query_params.get("token")
    header = ws.headers.get("authorization", "")
    if not token and header.lower().startswith("bearer "):
        token = header[7:].strip()
    principal: Principal | None = None
    if token:
        principal = await state.principal_for_token(token)
    elif ws.cookies.get(SESSION_COOKIE):
        principal = await state.principal_for_session(ws.cookies[SESSION_COOKIE])
    if principal is not None and principal.must_change_password:
        return None  # nothing but the password change until it is changed
    return principal


async def watch_credentials(ws: WebSocket, needed: Role) -> None:
    """Every ``ws_recheck_s``, check the credential the websocket opened with; close the
    websocket (4401/4403) and return once it no longer holds: a revoked token, an ended
    or expired session, a removed user, a role lowered below ``needed``."""
    state: AppState = ws.app.state.arete
    while True:
        await asyncio.sleep(state.settings.ws_recheck_s)
        principal = await _principal(state, ws)
        if principal is None:
            await ws.close(code=CLOSE_UNAUTHORIZED, reason="signed out: token or session ended")
            return
        if not principal.role.allows(needed):
            await ws.close(code=CLOSE_FORBIDDEN, reason=f"needs the {needed.value} role")
            return


# The maestro's events a dashboard hears (agent_removed: ``arete agents remove``).
LIVE_KINDS = ("agent", "agent_removed", "alert", "command")


@router.websocket("/ws")
async def live(ws: WebSocket) -> None:
    principal = await websocket_principal(ws, Role.VIEWER)
    if principal is None:
        return
    state: AppState = ws.app.state.arete
    m = state.maestro
    if m is None:
        await ws.close(code=CLOSE_UNAVAILABLE, reason="the maestro is not running")
        return
    await ws.accept()
    with m.live.watching() as watcher:
        await _serve(ws, m, principal, watcher)


def _client_message(text: str) -> tuple[str, list[str]]:
    if len(text) > MAX_CLIENT_MESSAGE:
        raise ClientMessageError("message too large")
    try:
        message = json.loads(text)
    except ValueError:
        raise ClientMessageError("messages are JSON") from None
    return parse_client_message(message)


def _latest(m: Maestro, agent: str) -> dict[str, Any] | None:
    """The latest sample this replica received of ``agent`` (from its share)."""
    held = m.ingest.latest.get(agent)
    if agent not in m.registry.states or held is None:
        return None
    metrics = m.registry.view(agent).get("metrics") or {}
    row = held[1]  # maestro.store.rows.to_row: (agent, seq, ts, epoch, ...)
    values = {k: v for k, v in metrics.items() if k != "ts"}
    return {"ts": row[2], "epoch": row[3], "seq": row[1], "values": values}


async def _serve(ws: WebSocket, m: Maestro, principal: Principal, watcher: Watcher) -> None:
    streams = MetricStreams()
    lock = asyncio.Lock()

    async def send(frame: dict[str, Any]) -> None:
        async with lock:
            await ws.send_text(json.dumps(frame, default=str))

    async def forward_events() -> None:
        with m.events.subscribe(set(LIVE_KINDS), maxsize=1000) as sub:
            await send({"kind": "hello", "ts": time.time(), "data": {"user": principal.name}})
            while True:
                await send(event_frame(await sub.get(), principal.role))

    async def stream_metrics() -> None:
        while True:  # every live sample of the followed agents, once, in order
            frame = streams.live((await watcher.get()).data(), time.time())
            if frame is not None:
                await send(frame)

    async def receive() -> None:
        while True:
            text = await ws.receive_text()
            try:
                verb, ids = _client_message(text)
                changed = streams.apply(verb, ids)
            except ClientMessageError as exc:
                await send({"kind": "error", "ts": time.time(), "data": {"detail": str(exc)}})
                continue
            if verb == "unsubscribe":
                watcher.unfollow(changed)
                continue
            watcher.follow(changed)
            for frame in streams.first(changed, lambda a: _latest(m, a), time.time()):
                await send(frame)

    tasks = [
        asyncio.create_task(forward_events()),
        asyncio.create_task(stream_metrics()),
        asyncio.create_task(receive()),
        asyncio.create_task(watch_credentials(ws, Role.VIEWER)),
    ]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            exc = task.exception()
            if exc is not None and not isinstance(exc, WebSocketDisconnect | RuntimeError):
                raise exc
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await ws.close()
