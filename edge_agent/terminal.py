"""Remote terminal sessions: one PTY and login shell each, bridged to the ``term`` topics.

A session starts with the signed ``terminal`` command (so only the maestro can open one
and the agent verifies it like any command); the command's handler spawns the shell and
answers ``ok`` with its pid, and the session then lives outside the command slots until
it ends: a Close frame, the shell's exit, no input for the idle timeout, or the agent
stopping. Its last frame on ``.../out`` is an ``Exit`` with the reason.

All I/O is non-blocking on the event loop: the PTY master is watched with
``loop.add_reader``/``add_writer``. Output is batched for ~20 ms into frames of at most
16 KiB; while a full frame waits to be sent (link down) the agent stops reading the PTY,
so a flood of output blocks the writer in the kernel instead of growing memory here.

The policy and the spawning of the shell are in :mod:`edge_agent.handlers.terminal`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable
from typing import Final

from arete.commands import TerminalArgs, TerminalResult
from arete.errors import PayloadError, TopicError
from arete.terminal import (
    MAX_OUTPUT_BYTES,
    Close,
    Exit,
    ExitReason,
    Input,
    Output,
    Resize,
    decode_in,
    encode_frame,
)
from arete.topics import Kind, TermDirection, Topics
from edge_agent.handlers.terminal import check_policy, resolve_shell, set_size, spawn_shell
from edge_agent.settings import AgentSettings

log = logging.getLogger("arete.agent.terminal")

FLUSH_S: Final = 0.02  # output batching window
RETRY_S: Final = 0.25  # retry of an output frame while the link is down
HANGUP_GRACE_S: Final = 2.0  # after SIGHUP, the shell has this long before SIGKILL
EOF_WAIT_S: Final = 0.5  # after the shell exits, wait this long for its last output
MAX_PENDING_INPUT: Final = 1024 * 1024  # input the shell has not read yet
TYPEAHEAD_HOLD_S: Final = 3.0  # input waits at most this long for the shell's first output
Publish = Callable[[str, bytes], bool]
"""Publish on a ``term`` topic with QoS 0; False when the link is down."""


class TerminalManager:
    """The agent's open sessions; frames from ``term/<id>/+/in`` go to :meth:`on_message`."""

    def __init__(self, settings: AgentSettings, topics: Topics, publish: Publish) -> None:
        self.settings = settings
        self.topics = topics
        self.publish = publish
        self.sessions: dict[str, Session] = {}
        self.frames_dropped = 0

    def subscriptions(self) -> tuple[str, ...]:
        if not self.settings.terminal.enabled:
            return ()
        return (self.topics.term_filter(self.settings.id, TermDirection.IN),)

    def owns(self, topic: str) -> bool:
        try:
            parsed = self.topics.parse(topic)
        except TopicError:
            return False
        return parsed.kind is Kind.TERM and parsed.direction is TermDirection.IN

    def precheck(self, args: TerminalArgs) -> None:
        check_policy(args, self.settings, self.sessions)

    async def open(self, args: TerminalArgs) -> TerminalResult:
        self.precheck(args)  # again: another session may have opened since the precheck
        shell = resolve_shell(self.settings.terminal.shell)
        idle_s = min(args.idle_timeout_s, self.settings.terminal.max_idle_timeout_s)
        out_topic = self.topics.term(self.settings.id, args.session, TermDirection.OUT)
        master, process = await spawn_shell(args, shell)
        session = Session(
            args.session, master, process, idle_s, lambda payload: self.publish(out_topic, payload)
        )
        self.sessions[args.session] = session
        session.on_closed = lambda: self.sessions.pop(args.session, None)
        log.info(
            "terminal opened",
            extra={"kv": {"session": args.session, "pid": session.pid, "shell": shell}},
        )
        return TerminalResult(
            session=args.session, shell=shell, pid=session.pid, idle_timeout_s=idle_s
        )

    def on_message(self, topic: str, payload: bytes) -> None:
        """A frame for one of our sessions; anything else is counted and dropped."""
        try:
            parsed = self.topics.parse(topic)
            frame = decode_in(payload)
        except (TopicError, PayloadError) as exc:
            self._drop("bad frame", str(exc))
            return
        session = self.sessions.get(parsed.session or "")
        if session is None:
            self._drop("frame for no open session", parsed.session or "")
            return
        session.handle(frame)

    async def close_all(self, reason: ExitReason = ExitReason.AGENT_STOPPING) -> None:
        """End every session (the agent is stopping): each sends its Exit frame."""
        sessions = list(self.sessions.values())
        await asyncio.gather(*(s.finish(reason) for s in sessions), return_exceptions=True)

    def _drop(self, what: str, detail: str) -> None:
        self.frames_dropped += 1
        log.debug("terminal frame dropped", extra={"kv": {"why": what, "detail": detail[:200]}})


class Session:
    """One PTY and its shell (from ``spawn_shell``); ends through :meth:`finish`."""

    def __init__(
        self,
        session_id: str,
        master: int,
        process: asyncio.subprocess.Process,
        idle_timeout_s: float,
        publish: Callable[[bytes], bool],
    ) -> None:
        self.id = session_id
        self.pid = process.pid
        self.on_closed: Callable[[], object] = lambda: None
        self._master = master
        self._process = process
        self._idle_s = idle_timeout_s
        self._publish = publish
        self._loop = asyncio.get_running_loop()
        self._seq = 0
        self._out = bytearray()
        self._pending_in = bytearray()
        self._reading = False
        self._writing = False
        # Typeahead is held until the shell first writes (its prompt): startup files may
        # flush or read the terminal's input (``mesg n``, ``stty``), losing what came early.
        self._holding = True
        self._hold_handle = self._loop.call_later(TYPEAHEAD_HOLD_S, self._release_input)
        self._eof = asyncio.Event()
        self._flush_handle: asyncio.TimerHandle | None = None
        self._last_input = self._loop.time()
        self._idle_handle = self._loop.call_later(idle_timeout_s, self._idle_check)
        self._ending: asyncio.Task[None] | None = None
        self._watcher = self._loop.create_task(self._watch(), name=f"terminal-{session_id}")
        self.started = time.monotonic()
        self._resume_reading()

    # -- frames from the maestro -----------------------------------------------------------
    def handle(self, frame: Input | Resize | Close) -> None:
        if self._ending is not None:
            return
        if isinstance(frame, Close):
            self._finish_later(ExitReason.CLOSED)
            return
        self._last_input = self._loop.time()
        if isinstance(frame, Resize):
            with contextlib.suppress(OSError):
                set_size(self._master, frame.cols, frame.rows)  # the kernel sends SIGWINCH
            return
        self._write(frame.data)

    def _write(self, data: bytes) -> None:
        if len(self._pending_in) + len(data) > MAX_PENDING_INPUT:
            log.warning(
                "terminal input dropped: the shell is not reading",
                extra={"kv": {"session": self.id}},
            )
            return
        self._pending_in += data
        self._drain_input()

    def _release_input(self) -> None:
        if self._holding:
            self._holding = False
            self._hold_handle.cancel()
            self._drain_input()

    def _drain_input(self) -> None:
        if self._holding:
            return
        while self._pending_in:
            try:
                written = os.write(self._master, self._pending_in)
            except BlockingIOError:
                break
            except OSError:  # the PTY is gone: the watcher ends the session
                self._pending_in.clear()
                break
            del self._pending_in[:written]
        want = bool(self._pending_in)
        if want != self._writing:
            self._writing = want
            if want:
                self._loop.add_writer(self._master, self._drain_input)
            else:
                self._loop.remove_writer(self._master)

    # -- output ------------------------------------------------------------------------------
    def _readable(self) -> None:
        try:
            data = os.read(self._master, MAX_OUTPUT_BYTES - len(self._out))
        except BlockingIOError:
            return
        except OSError:  # EIO: every process holding the terminal closed it
            data = b""
        if not data:
            self._pause_reading()
            self._eof.set()
            return
        self._out += data
        if self._holding:
            self._loop.call_later(0.1, self._release_input)  # the prompt is being drawn
        if len(self._out) >= MAX_OUTPUT_BYTES:
            self._pause_reading()  # back-pressure: resumed once the frame is out
        if self._flush_handle is None:
            self._flush_handle = self._loop.call_later(FLUSH_S, self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        if self._out and self._publish(encode_frame(Output(seq=self._seq, data=bytes(self._out)))):
            self._seq += 1
            self._out.clear()
        if self._out:
            self._flush_handle = self._loop.call_later(RETRY_S, self._flush)
        elif not self._eof.is_set() and self._ending is None:
            self._resume_reading()

    def _resume_reading(self) -> None:
        if not self._reading:
            self._reading = True
            self._loop.add_reader(self._master, self._readable)

    def _pause_reading(self) -> None:
        if self._reading:
            self._reading = False
            self._loop.remove_reader(self._master)

    # -- ending ------------------------------------------------------------------------------
    def _idle_check(self) -> None:
        remaining = self._last_input + self._idle_s - self._loop.time()
        if remaining > 0:
            self._idle_handle = self._loop.call_later(remaining, self._idle_check)
        else:
            self._finish_later(ExitReason.IDLE)

    async def _watch(self) -> None:
        await self._process.wait()
        await self.finish(ExitReason.EXITED)

    def _finish_later(self, reason: ExitReason) -> None:
        if self._ending is None:
            self._ending = self._loop.create_task(self._end(reason))

    async def finish(self, reason: ExitReason) -> None:
        """End the session (once; later calls wait for the first) and send its Exit."""
        self._finish_later(reason)
        assert self._ending is not None  # noqa: S101 - set just above
        await asyncio.shield(self._ending)

    async def _end(self, reason: ExitReason) -> None:
        self._idle_handle.cancel()
        self._hold_handle.cancel()
        code: int | None = None
        message = ""
        try:
            if reason is not ExitReason.EXITED:
                code = await self._hang_up()
            else:
                code = self._process.returncode
                self._signal(signal.SIGHUP)  # what the shell left behind, as a closed terminal
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._eof.wait(), EOF_WAIT_S)
            self._drain_output()
        except Exception as exc:  # the Exit frame must go out whatever happened
            log.exception("terminal ending failed", extra={"kv": {"session": self.id}})
            reason, message = ExitReason.ERROR, f"{type(exc).__name__}: {exc}"[:1000]
        finally:
            self._close_fd()
        self._publish(encode_frame(Exit(seq=self._seq, reason=reason, code=code, message=message)))
        self.on_closed()
        self._watcher.cancel()  # still waiting when a SIGKILLed shell was never reaped
        log.info(
            "terminal closed",
            extra={
                "kv": {
                    "session": self.id,
                    "reason": reason.value,
                    "code": code,
                    "duration_s": round(time.monotonic() - self.started, 1),
                }
            },
        )

    async def _hang_up(self) -> int | None:
        self._signal(signal.SIGHUP)
        try:
            return await asyncio.wait_for(self._process.wait(), HANGUP_GRACE_S)
        except TimeoutError:
            self._signal(signal.SIGKILL)
        with contextlib.suppress(TimeoutError):
            return await asyncio.wait_for(self._process.wait(), 1.0)
        return None

    def _signal(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)  # the shim led a new session: pgid == pid

    def _drain_output(self) -> None:
        """Send what the PTY still holds, then whatever is batched (best effort)."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self._pause_reading()
        while True:
            with contextlib.suppress(OSError):
                chunk = os.read(self._master, MAX_OUTPUT_BYTES)
                if chunk:
                    self._out += chunk
                    continue
            break
        for start in range(0, len(self._out), MAX_OUTPUT_BYTES):
            piece = bytes(self._out[start : start + MAX_OUTPUT_BYTES])
            if self._publish(encode_frame(Output(seq=self._seq, data=piece))):
                self._seq += 1
        self._out.clear()

    def _close_fd(self) -> None:
        self._pause_reading()
        if self._writing:
            self._writing = False
            self._loop.remove_writer(self._master)
        with contextlib.suppress(OSError):
            os.close(self._master)
