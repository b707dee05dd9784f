"""Remote terminals seen from the maestro: open, type, read, close — and audit each one.

``await hub.open(agent_id, actor=...)`` sends the signed ``terminal`` command (the agent
verifies and may refuse it: that is a :class:`~maestro.errors.CommandError` with the
agent's reason code) and returns a :class:`TerminalSession` once the shell runs. Input
goes out on ``term/<id>/<session>/in`` (QoS 0); the ingest routes ``.../out`` frames here
(:meth:`TerminalHub.deliver`, on the network thread). ``async for event in session``
gives the output in order, a :class:`Lost` where frames went missing (sequence gap or a
reader too slow), and one final :class:`~arete.terminal.Exit`.

A session also ends when its agent goes offline (an Exit with reason ``error``), and the
hub closes every session when the maestro stops. Opening, refusal and closing are
written to the audit log (``terminal.open``, ``terminal.refused``, ``terminal.close``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Final

from arete.commands import CommandName
from arete.errors import PayloadError
from arete.terminal import (
    Close,
    Exit,
    ExitReason,
    Output,
    Resize,
    decode_out,
    encode_frame,
    input_frames,
)
from arete.topics import TermDirection, Topics
from maestro.commands.lifecycle import CommandState
from maestro.errors import CommandError, LinkError, MaestroError
from maestro.events import EventBus
from maestro.late_writes import LateWrites
from maestro.ports import Publisher
from maestro.store.audit import add_audit

if TYPE_CHECKING:
    from maestro.commands.service import CommandService
    from maestro.store.core import Store

log = logging.getLogger("arete.maestro.terminal")

CLOSE_WAIT_S: Final = 5.0  # the agent hangs up (2 s), kills (1 s), drains (0.5 s), answers
PUBLISH_TIMEOUT_S: Final = 5.0  # input while the link is down is dropped after this
MAX_QUEUED_FRAMES: Final = 1024  # per session, ~16 MiB at most; beyond: Lost
AGENT_GONE: Final = "offline"


@dataclass(frozen=True, slots=True)
class Lost:
    """``frames`` output frames that never reached the reader."""

    frames: int


SessionEvent = Output | Lost | Exit


class TerminalSession:
    """One open terminal. Iterate it for output; :meth:`close` when done."""

    def __init__(
        self,
        hub: TerminalHub,
        agent_id: str,
        session_id: str,
        *,
        actor: str,
        cols: int,
        rows: int,
    ) -> None:
        self.agent_id = agent_id
        self.id = session_id
        self.actor = actor
        self.cols, self.rows = cols, rows
        self.command_id: str | None = None
        self.shell = ""
        self.pid = 0
        self.idle_timeout_s = 0.0
        self.exit: Exit | None = None
        self.lost_frames = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.opened_at = time.time()
        self._hub = hub
        self._queue: asyncio.Queue[SessionEvent] = asyncio.Queue()
        self._next_seq = 0
        self._ended = asyncio.Event()

    @property
    def ended(self) -> bool:
        return self._ended.is_set()

    # -- to the agent ----------------------------------------------------------------------
    async def send_input(self, data: bytes | str) -> None:
        raw = data.encode() if isinstance(data, str) else data
        if self.ended or not raw:
            return
        self.bytes_in += len(raw)
        for frame in input_frames(raw):
            await self._hub.send(self, encode_frame(frame))

    async def resize(self, cols: int, rows: int) -> None:
        """Raises :class:`CommandError` (``bad_args``) for a size out of 1-1000."""
        for value in (cols, rows):
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1000:
                raise CommandError(
                    f"terminal size {cols}x{rows} is not within 1-1000", code="bad_args"
                )
        if self.ended:
            return
        self.cols, self.rows = cols, rows
        await self._hub.send(self, encode_frame(Resize(cols=cols, rows=rows)))

    async def close(self) -> Exit:
        """Ask the agent to end the session; return its Exit (or one made up when it is gone)."""
        if not self.ended:
            with contextlib.suppress(MaestroError):
                await self._hub.send(self, encode_frame(Close()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ended.wait(), CLOSE_WAIT_S)
            if not self.ended:
                self._finish(self._made_up_exit("the agent did not confirm the close"))
        assert self.exit is not None  # noqa: S101 - set by _finish
        return self.exit

    # -- from the agent --------------------------------------------------------------------
    def __aiter__(self) -> AsyncIterator[SessionEvent]:
        return self._events()

    async def _events(self) -> AsyncIterator[SessionEvent]:
        while True:
            event = await self._queue.get()
            yield event
            if isinstance(event, Exit):
                return

    async def next_event(self, timeout_s: float | None = None) -> SessionEvent:
        async with asyncio.timeout(timeout_s):
            return await self._queue.get()

    def receive(self, frame: Output | Exit) -> None:
        """A frame from ``.../out``, on the event loop."""
        if self.ended:
            return
        if frame.seq < self._next_seq:
            return  # a duplicate (QoS 0 does not reorder)
        if frame.seq > self._next_seq:
            self._lose(frame.seq - self._next_seq)
        self._next_seq = frame.seq + 1
        if isinstance(frame, Exit):
            self._finish(frame)
            return
        self.bytes_out += len(frame.data)
        if self._queue.qsize() >= MAX_QUEUED_FRAMES:
            self._lose(1)  # the reader does not keep up: drop rather than grow
            return
        self._queue.put_nowait(frame)

    def agent_gone(self) -> None:
        self._finish(self._made_up_exit("the agent went offline"))

    def _lose(self, frames: int) -> None:
        self.lost_frames += frames
        self._queue.put_nowait(Lost(frames))

    def _made_up_exit(self, message: str) -> Exit:
        return Exit(seq=self._next_seq, reason=ExitReason.ERROR, message=message)

    def _finish(self, frame: Exit) -> None:
        if self.ended:
            return
        self.exit = frame
        self._ended.set()
        self._queue.put_nowait(frame)  # unbounded queue: the Exit always gets in
        self._hub.finished(self)


class TerminalHub:
    """Every terminal session of this maestro replica. Create on the event loop."""

    def __init__(
        self,
        commands: CommandService,
        publisher: Publisher,
        topics: Topics,
        store: Store,
        events: EventBus,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.commands = commands
        self.publisher = publisher
        self.topics = topics
        self.store = store
        self.events = events
        self.clock = clock
        self.sessions: dict[str, TerminalSession] = {}
        self.frames_dropped = 0
        self.opened_total = 0
        self._loop = asyncio.get_running_loop()
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- opening ---------------------------------------------------------------------------
    async def open(
        self,
        agent_id: str,
        *,
        actor: str,
        cols: int = 80,
        rows: int = 24,
        idle_timeout_s: float = 900.0,
    ) -> TerminalSession:
        """Open a terminal on ``agent_id`` for ``actor`` (who is audited).

        Raises :class:`CommandError`: ``bad_agent``/``bad_args`` before anything is sent;
        afterwards the agent's refusal (``not_allowed``, ``busy``, ``unsigned`` ...) or the
        command's end state (``timed_out``: the agent did not answer).
        """
        session_id = secrets.token_urlsafe(12)  # 16 chars of [A-Za-z0-9_-]: a topic level
        session = TerminalSession(self, agent_id, session_id, actor=actor, cols=cols, rows=rows)
        args = {"session": session_id, "cols": cols, "rows": rows, "idle_timeout_s": idle_timeout_s}
        # Registered first: output may arrive before the command's ``ok`` does.
        self.sessions[session_id] = session
        try:
            record = await self.commands.send(
                agent_id, CommandName.TERMINAL.value, args, actor=actor
            )
            session.command_id = record.id
            record = await self.commands.wait(record.id)
        except BaseException:
            self.sessions.pop(session_id, None)
            if session.command_id is not None:  # the shell may start anyway: close it
                self._background(self._send_quietly(session, encode_frame(Close())))
            raise
        detail: dict[str, Any] = {"session": session_id, "command_id": record.id}
        if record.state is not CommandState.OK:
            self.sessions.pop(session_id, None)
            code = record.error_code or str(record.state)
            message = record.error_message or f"the terminal command ended {record.state}"
            await self._audit(actor, "terminal.refused", agent_id, detail | {"code": code})
            log.info(
                "terminal refused",
                extra={"kv": {"agent_id": agent_id, "session": session_id, "code": code}},
            )
            raise CommandError(message, code=code)
        result = record.result if isinstance(record.result, dict) else {}
        session.shell = str(result.get("shell", ""))
        session.pid = int(result.get("pid", 0))
        session.idle_timeout_s = float(result.get("idle_timeout_s", idle_timeout_s))
        self.opened_total += 1
        await self._audit(
            actor,
            "terminal.open",
            agent_id,
            detail | {"cols": cols, "rows": rows, "shell": session.shell},
        )
        log.info(
            "terminal open",
            extra={"kv": {"agent_id": agent_id, "session": session_id, "actor": actor}},
        )
        return session

    # -- traffic ---------------------------------------------------------------------------
    async def send(self, session: TerminalSession, payload: bytes) -> None:
        """Publish one frame to the session's ``in`` topic; LinkError when the link is down."""
        topic = self.topics.term(session.agent_id, session.id, TermDirection.IN)
        try:
            async with asyncio.timeout(PUBLISH_TIMEOUT_S):
                await self.publisher.publish(topic, payload, qos=0)
        except TimeoutError:
            raise LinkError("the MQTT link is down; terminal input was dropped") from None

    def deliver(self, agent_id: str, session_id: str, payload: bytes) -> None:
        """A message from ``term/<agent>/<session>/out``, called on the network thread."""
        self._loop.call_soon_threadsafe(self._on_frame, agent_id, session_id, payload)

    def _on_frame(self, agent_id: str, session_id: str, payload: bytes) -> None:
        session = self.sessions.get(session_id)
        if session is None or session.agent_id != agent_id:
            self.frames_dropped += 1  # another replica's session, or one already closed
            return
        try:
            frame = decode_out(payload)
        except PayloadError as exc:
            self.frames_dropped += 1
            log.warning(
                "bad terminal frame",
                extra={"kv": {"agent_id": agent_id, "session": session_id, "error": str(exc)}},
            )
            return
        session.receive(frame)

    # -- ending ----------------------------------------------------------------------------
    def finished(self, session: TerminalSession) -> None:
        self.sessions.pop(session.id, None)
        exit_frame = session.exit
        detail = {
            "session": session.id,
            "reason": exit_frame.reason.value if exit_frame else "unknown",
            "code": exit_frame.code if exit_frame else None,
            "message": exit_frame.message if exit_frame else "",
            "duration_s": round(self.clock() - session.opened_at, 3),
            "bytes_in": session.bytes_in,
            "bytes_out": session.bytes_out,
            "lost_frames": session.lost_frames,
        }
        self._background(self._audit(session.actor, "terminal.close", session.agent_id, detail))

    def _background(self, coro: Coroutine[Any, Any, None]) -> None:
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_quietly(self, session: TerminalSession, payload: bytes) -> None:
        with contextlib.suppress(MaestroError):
            await self.send(session, payload)

    async def run(self) -> None:
        """Until cancelled: end the sessions of agents that go offline."""
        with self.events.subscribe({"agent"}) as sub:
            async for event in sub:
                if event.data.get("state") != AGENT_GONE:
                    continue
                for session in list(self.sessions.values()):
                    if session.agent_id == event.data.get("id") and session.command_id:
                        session.agent_gone()

    async def close_all(self) -> None:
        """Close every session (the maestro is stopping) and finish their audit entries."""
        sessions = list(self.sessions.values())
        await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _audit(self, actor: str, action: str, target: str, detail: dict[str, Any]) -> None:
        try:  # kept and stored later if the store refuses it (disk full)
            await LateWrites.of(self.store).write(
                partial(
                    add_audit,
                    ts=self.clock(),
                    actor=actor,
                    action=action,
                    target=target,
                    detail=detail,
                )
            )
        except MaestroError:
            log.exception(
                "terminal audit failed", extra={"kv": {"action": action, "target": target}}
            )
