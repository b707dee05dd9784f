"""``WS /agents/{agent_id}/terminal``: a remote shell on an agent, relayed to xterm.js.

Admin only; the Origin and the credential (session cookie or ``?token=``) are checked
before the handshake completes, as on ``/ws``. Then the relay accepts, opens the
session through the maestro's :class:`~maestro.terminal.TerminalHub` (the signed
``terminal`` command; opening, refusal and closing are audited with the user) and
relays JSON text messages both ways:

- client -> server: ``{"type": "input", "data": "..."}``,
  ``{"type": "resize", "cols": N, "rows": N}``, ``{"type": "close"}``;
- server -> client: ``{"type": "ready", "session", "shell", "cols", "rows"}`` once the
  shell runs, ``{"type": "output", "data": "..."}``, ``{"type": "error", "code",
  "detail"}`` (a refusal or a bad message), and last ``{"type": "exit", "code", "reason",
  "message"}``.

Query parameters: ``cols`` and ``rows`` (1-1000, default 80x24) size the terminal from
the start. Output is UTF-8 decoded across frame boundaries (undecodable bytes become
U+FFFD); output lost on the way (QoS 0) shows as a notice in the terminal. Closing the
websocket closes the session (the agent hangs the shell up).
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import json
import logging
from dataclasses import dataclass
from typing import Any, Final

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from arete.terminal import Exit, Output
from maestro.errors import MaestroError
from maestro.terminal import Lost, SessionEvent, TerminalSession
from web_api.auth.roles import Role
from web_api.routers.ws import CLOSE_UNAVAILABLE, watch_credentials, websocket_principal
from web_api.state import AppState

log = logging.getLogger("arete.web.terminal")

router = APIRouter(tags=["terminal"])

CLOSE_NOT_FOUND: Final = 4404
CLOSE_REFUSED: Final = 4409  # the agent refused the terminal (policy, busy, offline)
MAX_CLIENT_MESSAGE: Final = 256 * 1024  # a large paste; split into 16 KiB frames
DEFAULT_COLS: Final = 80
DEFAULT_ROWS: Final = 24
LOST_NOTICE: Final = "\r\n\x1b[33m[arete: some terminal output was lost]\x1b[0m\r\n"


class ClientFrameError(ValueError):
    """A client message the relay cannot use (answered with an ``error`` message)."""


@dataclass(frozen=True, slots=True)
class TypeIn:
    data: str


@dataclass(frozen=True, slots=True)
class ResizeTo:
    cols: int
    rows: int


@dataclass(frozen=True, slots=True)
class CloseSession:
    pass


ClientFrame = TypeIn | ResizeTo | CloseSession


def parse_client_frame(text: str) -> ClientFrame:
    """One message from the browser, checked; :class:`ClientFrameError` says what is wrong."""
    if len(text) > MAX_CLIENT_MESSAGE:
        raise ClientFrameError(f"messages are at most {MAX_CLIENT_MESSAGE} characters")
    try:
        message = json.loads(text)
    except ValueError:
        raise ClientFrameError("messages are JSON objects") from None
    if not isinstance(message, dict):
        raise ClientFrameError("messages are JSON objects")
    kind = message.get("type")
    if kind == "input":
        data = message.get("data")
        if not isinstance(data, str):
            raise ClientFrameError("input needs a string 'data'")
        return TypeIn(data)
    if kind == "resize":
        cols, rows = message.get("cols"), message.get("rows")
        return ResizeTo(_size("cols", cols), _size("rows", rows))
    if kind == "close":
        return CloseSession()
    raise ClientFrameError(f"unknown message type {kind!r}; use input, resize or close")


def _size(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1000:
        raise ClientFrameError(f"{name} must be a whole number from 1 to 1000")
    return value


def size_from_query(value: str | None, default: int) -> int:
    if value is None:
        return default
    try:
        return _size("size", int(value))
    except ValueError:
        raise ClientFrameError("cols and rows must be whole numbers from 1 to 1000") from None


class OutputText:
    """Session events as browser messages; UTF-8 decoded across frame boundaries."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def message(self, event: SessionEvent) -> dict[str, Any] | None:
        if isinstance(event, Output):
            text = self._decoder.decode(event.data)
            return {"type": "output", "data": text} if text else None
        if isinstance(event, Lost):
            self._decoder.reset()  # a character cut by the gap must not swallow the next
            return {"type": "output", "data": LOST_NOTICE}
        return {
            "type": "exit",
            "code": event.code,
            "reason": event.reason.value,
            "message": event.message,
        }

    def flush(self) -> dict[str, Any] | None:
        text = self._decoder.decode(b"", final=True)
        return {"type": "output", "data": text} if text else None


@router.websocket("/agents/{agent_id}/terminal")
async def terminal(ws: WebSocket, agent_id: str) -> None:
    principal = await websocket_principal(ws, Role.ADMIN)
    if principal is None:
        return
    state: AppState = ws.app.state.arete
    m = state.maestro
    if m is None:
        await ws.close(code=CLOSE_UNAVAILABLE, reason="the maestro is not running")
        return
    if agent_id not in m.registry.states:
        await ws.close(code=CLOSE_NOT_FOUND, reason="no such agent")
        return
    try:
        cols = size_from_query(ws.query_params.get("cols"), DEFAULT_COLS)
        rows = size_from_query(ws.query_params.get("rows"), DEFAULT_ROWS)
    except ClientFrameError as exc:
        await ws.close(code=1008, reason=str(exc))
        return
    await ws.accept()
    try:
        session = await m.terminals.open(agent_id, actor=principal.actor, cols=cols, rows=rows)
    except MaestroError as exc:
        code = getattr(exc, "code", "unavailable")
        with contextlib.suppress(Exception):
            await ws.send_text(json.dumps({"type": "error", "code": code, "detail": str(exc)}))
            await ws.close(code=CLOSE_REFUSED, reason=code[:100])
        return
    try:
        await _relay(ws, session, cols, rows)
    finally:
        with contextlib.suppress(Exception):
            await session.close()  # no-op when the session already ended
        with contextlib.suppress(Exception):
            await ws.close()


async def _relay(ws: WebSocket, session: TerminalSession, cols: int, rows: int) -> None:
    """Relay until the shell ends, the browser leaves, or the admin's token or session
    no longer holds (then the shell is hung up)."""
    lock = asyncio.Lock()

    async def send(message: dict[str, Any]) -> None:
        async with lock:
            await ws.send_text(json.dumps(message))

    async def to_browser() -> None:
        text = OutputText()
        async for event in session:
            if isinstance(event, Exit):
                tail = text.flush()
                if tail is not None:
                    await send(tail)
            message = text.message(event)
            if message is not None:
                await send(message)

    async def from_browser() -> None:
        while True:
            raw = await ws.receive_text()
            try:
                frame = parse_client_frame(raw)
                if isinstance(frame, TypeIn):
                    await session.send_input(frame.data)
                elif isinstance(frame, ResizeTo):
                    await session.resize(frame.cols, frame.rows)
                else:
                    await session.close()
                    return  # to_browser sends the Exit
            except (ClientFrameError, MaestroError) as exc:
                code = getattr(exc, "code", "bad_message")
                await send({"type": "error", "code": code, "detail": str(exc)})

    await send(
        {"type": "ready", "session": session.id, "shell": session.shell, "cols": cols, "rows": rows}
    )
    outbound = asyncio.create_task(to_browser())
    inbound = asyncio.create_task(from_browser())
    watcher = asyncio.create_task(watch_credentials(ws, Role.ADMIN))
    try:
        await asyncio.wait([outbound, inbound, watcher], return_when=asyncio.FIRST_COMPLETED)
        if inbound.done() and not outbound.done() and inbound.exception() is None:
            # The user asked to close: let the Exit reach the browser.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(outbound), 6.0)
    finally:
        for task in (outbound, inbound, watcher):
            task.cancel()
        for task in (outbound, inbound, watcher):
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, Exception):
                await task
