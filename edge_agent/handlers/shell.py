"""The ``shell`` command: run a program (argv) or a shell string, with policy and limits.

Policy comes first and is checked before anything runs: the shell can be turned off per
machine, or restricted to an allowlist of commands — programs with the arguments they
may take (:mod:`edge_agent.handlers.allowlist`); then shell strings are refused,
because what a shell string runs cannot be checked.

The child runs in a new session, so it and everything it starts form one process group:
a timeout ends the whole group (SIGTERM, then SIGKILL after a short grace), and nothing
started by a runaway command survives it (short of leaving the group on purpose, as
daemons do). The command is done when its main process exits; background children it
started on purpose (``cmd &``) keep running, but their output is collected only until
shortly after that exit.

Output is capped by ``max_output``: one budget for stdout and stderr together, counted
as the bytes the text takes in the JSON reply (a NUL is 6 bytes there, ``\u0000``; an
undecodable byte 3, U+FFFD). Once output goes past it, the agent stops reading and
closes both pipes, as ``| head`` would: a program that keeps writing is killed by
SIGPIPE, and that death is not a failure (``ok``, ``truncated``, the observed status).

The child gets the agent's environment minus the agent's own ``ARETE_AGENT_*`` settings,
so a diagnostic ``env`` does not send an MQTT password through the fleet.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Final

import msgspec

from arete.commands import ShellArgs, ShellResult
from edge_agent.errors import CommandFailed
from edge_agent.handlers.allowlist import check_allowlist
from edge_agent.settings import ENV_PREFIX, ShellSettings

TERM_GRACE_S: Final = 2.0  # after the timeout: SIGTERM, then SIGKILL this much later
KILL_WAIT_S: Final = 1.0  # after SIGKILL, wait this long for the exit to be reported
OUTPUT_GRACE_S: Final = 1.0  # after the main process exits, wait this long for EOF
OVERRUN_S: Final = TERM_GRACE_S + KILL_WAIT_S + OUTPUT_GRACE_S
"""At most this long past ``timeout_s``, the handler returns (the dispatcher adds slack)."""


async def run_shell(args: ShellArgs, settings: ShellSettings) -> ShellResult:
    """Run the command; raise :class:`CommandFailed` for a refusal, failure or timeout."""
    argv = checked_argv(args, settings)
    cwd = _checked_cwd(args.cwd)
    started = time.monotonic()
    loop = asyncio.get_running_loop()
    try:
        transport, run = await loop.subprocess_exec(
            lambda: _Run(args.max_output),
            *argv,
            cwd=cwd,
            env={k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group, killed as one on timeout
        )
    except FileNotFoundError:
        raise CommandFailed("not_found", f"no program {argv[0]!r} on this machine") from None
    except PermissionError:
        raise CommandFailed("exec_failed", f"{argv[0]!r} is not executable") from None
    except OSError as exc:
        raise CommandFailed("exec_failed", f"cannot run {argv[0]!r}: {exc}") from None
    except ValueError as exc:  # e.g. an embedded NUL, should ShellArgs ever let one through
        raise CommandFailed("bad_args", f"cannot run {argv[0]!r}: {exc}") from None

    timed_out = False
    try:
        try:
            async with asyncio.timeout(args.timeout_s):
                await asyncio.shield(run.exited)  # the timeout must not cancel the future
        except TimeoutError:
            timed_out = True
            await _end_group(transport, run)
        # Normally EOF follows the exit at once; a background child may hold the pipes.
        await asyncio.wait([run.pipes_closed], timeout=OUTPUT_GRACE_S)
    finally:
        if transport.get_returncode() is None:  # cancelled (agent stopping)
            _signal_group(transport, signal.SIGKILL)
        transport.close()  # a background child still writing now gets EPIPE

    code = transport.get_returncode()
    stdout, stderr = run.output.texts()
    result = ShellResult(
        exit_code=None if timed_out else code,
        stdout=stdout,
        stderr=stderr,
        truncated=run.output.truncated,
        timed_out=timed_out,
        duration_s=round(time.monotonic() - started, 3),
    )
    if timed_out:
        raise CommandFailed(
            "timeout",
            f"still running after {args.timeout_s:g} s; its process group was killed",
            result=result,
        )
    if code and not (run.output.truncated and _died_of_sigpipe(code, args.command is not None)):
        message = (
            f"killed by signal {_signal_name(-code)}" if code < 0 else f"exited with status {code}"
        )
        raise CommandFailed("exit_status", message, result=result)
    return result


def checked_argv(args: ShellArgs, settings: ShellSettings) -> list[str]:
    """The argv to execute, or :class:`CommandFailed` (``not_allowed``) by policy.

    The agent calls this before it accepts a shell command, so a refusal by policy is a
    ``rejected`` reply and nothing runs; ``run_shell`` checks again (defence in depth),
    and runs the argv returned by that second check.
    """
    if not settings.enabled:
        raise CommandFailed("not_allowed", "shell is disabled on this agent")
    texts = [*(args.argv or ()), args.command or "", args.cwd or ""]
    if any("\x00" in text for text in texts):  # ShellArgs refuses them when decoded
        raise CommandFailed("bad_args", "a program cannot be given a NUL character")
    if args.command is not None:
        if settings.allow:
            raise CommandFailed(
                "not_allowed",
                "shell strings are refused on this agent (it has a program allowlist); "
                "send argv instead",
            )
        if not settings.allow_shell_strings:
            raise CommandFailed("not_allowed", "shell strings are disabled on this agent")
        return _shell_argv(args.command)
    assert args.argv is not None  # noqa: S101 - ShellArgs guarantees exactly one of the two
    program = args.argv[0]
    if not settings.allow:
        return list(args.argv)  # a relative path runs from ``cwd``, as in a terminal
    if _is_relative_path(program):
        # Which file that is depends on the working directory: the allowlist cannot vouch.
        raise CommandFailed(
            "not_allowed",
            f"{program!r} is a relative path; this agent's allowlist takes names or absolute paths",
        )
    return check_allowlist(settings.allow, list(args.argv), args.cwd)


def _is_relative_path(program: str) -> bool:
    separators = [os.sep] if os.altsep is None else [os.sep, os.altsep]
    return any(sep in program for sep in separators) and not os.path.isabs(program)


def _died_of_sigpipe(code: int, via_shell: bool) -> bool:
    """Killed by SIGPIPE: what a writer gets once the agent closed its full output pipes.

    Through ``/bin/sh -c`` the shell may report its child's death as 128 + the signal.
    """
    if sys.platform == "win32":
        return False
    return code == -signal.SIGPIPE or (via_shell and code == 128 + signal.SIGPIPE)


def _shell_argv(command: str) -> list[str]:
    if sys.platform == "win32":
        return [os.environ.get("COMSPEC", "cmd.exe"), "/c", command]
    return ["/bin/sh", "-c", command]


def _checked_cwd(cwd: str | None) -> str | None:
    if cwd is not None and not Path(cwd).is_dir():
        raise CommandFailed("bad_args", f"working directory {cwd!r} does not exist")
    return cwd


def _json_size(text: str) -> int:
    """Bytes ``text`` takes inside a JSON string, escapes included (quotes not counted)."""
    return len(msgspec.json.encode(text)) - 2


class _Output:
    """Both output streams, decoded as they arrive and kept while their JSON size fits
    one budget. Whatever goes past the budget is cut at a character boundary."""

    def __init__(self, budget: int) -> None:
        self.room = budget
        self.truncated = False
        self._decoders = {fd: codecs.getincrementaldecoder("utf-8")("replace") for fd in (1, 2)}
        self._kept: dict[int, list[str]] = {1: [], 2: []}

    def add(self, fd: int, data: bytes, *, final: bool = False) -> None:
        if self.truncated:
            return
        text = self._decoders[fd].decode(data, final)
        size = _json_size(text)
        if size > self.room:
            text = _longest_prefix_within(text, self.room)
            size = _json_size(text)
            self.truncated = True
        self._kept[fd].append(text)
        self.room -= size

    def texts(self) -> tuple[str, str]:
        return "".join(self._kept[1]), "".join(self._kept[2])


def _longest_prefix_within(text: str, budget: int) -> str:
    # The JSON size of a prefix grows with its length: binary search for the longest fit.
    low, high = 0, min(len(text), budget)  # every character takes at least one byte
    while low < high:
        middle = (low + high + 1) // 2
        if _json_size(text[:middle]) <= budget:
            low = middle
        else:
            high = middle - 1
    return text[:low]


class _Run(asyncio.SubprocessProtocol):
    def __init__(self, budget: int) -> None:
        loop = asyncio.get_running_loop()
        self.output = _Output(budget)
        self.exited: asyncio.Future[None] = loop.create_future()
        self.pipes_closed: asyncio.Future[None] = loop.create_future()
        self._open = {1, 2}
        self._transport: asyncio.SubprocessTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.SubprocessTransport)  # noqa: S101 - asyncio's contract
        self._transport = transport

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        self.output.add(fd, data)
        if self.output.truncated:
            self._stop_reading()

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        self.output.add(fd, b"", final=True)  # a sequence cut short at EOF becomes U+FFFD
        if self.output.truncated:
            self._stop_reading()
        self._open.discard(fd)
        if not self._open and not self.pipes_closed.done():
            self.pipes_closed.set_result(None)

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)

    def _stop_reading(self) -> None:
        """Close both pipes: reading on would only burn CPU on output that is dropped."""
        if self._transport is None:
            return
        for fd in sorted(self._open):  # closing reports back later, not in this loop
            pipe = self._transport.get_pipe_transport(fd)
            if pipe is not None:
                pipe.close()


async def _end_group(transport: asyncio.SubprocessTransport, run: _Run) -> None:
    _signal_group(transport, signal.SIGTERM)
    deadline = time.monotonic() + TERM_GRACE_S
    # Nothing reports that a process group became empty, so poll it. A member counts until
    # it is reaped; an orphan is reaped by init, which here and there takes its time.
    while time.monotonic() < deadline and _group_alive(transport):  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    _signal_group(transport, signal.SIGKILL)  # whatever ignored SIGTERM
    await asyncio.wait([run.exited], timeout=KILL_WAIT_S)


def _signal_group(transport: asyncio.SubprocessTransport, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if sys.platform == "win32":
            transport.kill()
        else:
            os.killpg(transport.get_pid(), sig)  # the child leads its session: pgid == pid


def _group_alive(transport: asyncio.SubprocessTransport) -> bool:
    if sys.platform == "win32":
        return transport.get_returncode() is None
    try:
        os.killpg(transport.get_pid(), 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)
