"""The ``shell`` command: run a program (argv) or a shell string, with policy and limits.

Policy comes first and is checked before anything runs: the shell can be turned off per
machine, or restricted to an allowlist of programs (then shell strings are refused,
because what a shell string runs cannot be checked).

The child runs in a new session, so it and everything it starts form one process group:
a timeout ends the whole group (SIGTERM, then SIGKILL after a short grace), and nothing
started by a runaway command survives it (short of leaving the group on purpose, as
daemons do). The command is done when its main process exits; background children it
started on purpose (``cmd &``) keep running, but their output is collected only until
shortly after that exit.

The child gets the agent's environment minus the agent's own ``ARETE_AGENT_*`` settings,
so a diagnostic ``env`` does not send an MQTT password through the fleet.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Final

from arete.commands import ShellArgs, ShellResult
from edge_agent.errors import CommandFailed
from edge_agent.settings import ENV_PREFIX, ShellSettings

TERM_GRACE_S: Final = 2.0  # SIGTERM -> SIGKILL; well inside the dispatcher's backstop
OUTPUT_GRACE_S: Final = 1.0  # after the main process exits, wait this long for EOF


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
    result = ShellResult(
        exit_code=None if timed_out else code,
        stdout=run.out.text(),
        stderr=run.err.text(),
        truncated=run.out.truncated or run.err.truncated,
        timed_out=timed_out,
        duration_s=round(time.monotonic() - started, 3),
    )
    if timed_out:
        raise CommandFailed(
            "timeout",
            f"still running after {args.timeout_s:g} s; its process group was killed",
            result=result,
        )
    if code:
        message = (
            f"killed by signal {_signal_name(-code)}" if code < 0 else f"exited with status {code}"
        )
        raise CommandFailed("exit_status", message, result=result)
    return result


def checked_argv(args: ShellArgs, settings: ShellSettings) -> list[str]:
    """The argv to execute, or :class:`CommandFailed` (``not_allowed``) by policy.

    The agent calls this before it accepts a shell command, so a refusal by policy is a
    ``rejected`` reply and nothing runs; ``run_shell`` checks again (defence in depth).
    """
    if not settings.enabled:
        raise CommandFailed("not_allowed", "shell is disabled on this agent")
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
    if settings.allow and not _allowed(args.argv[0], settings.allow):
        raise CommandFailed(
            "not_allowed", f"{args.argv[0]!r} is not in this agent's shell allowlist"
        )
    return list(args.argv)


def _allowed(program: str, allow: list[str]) -> bool:
    if program in allow:
        return True
    name = os.path.basename(program)
    if name == program or name not in allow:
        return False
    # A path is allowed by its basename only if it is the program that name means here:
    # "ls" allows /usr/bin/ls, not a file called ls in some writable directory.
    found = shutil.which(name)
    with contextlib.suppress(OSError):
        return found is not None and os.path.samefile(found, program)
    return False


def _shell_argv(command: str) -> list[str]:
    if sys.platform == "win32":
        return [os.environ.get("COMSPEC", "cmd.exe"), "/c", command]
    return ["/bin/sh", "-c", command]


def _checked_cwd(cwd: str | None) -> str | None:
    if cwd is not None and not Path(cwd).is_dir():
        raise CommandFailed("bad_args", f"working directory {cwd!r} does not exist")
    return cwd


class _Capped:
    """One output stream: the first ``cap`` bytes are kept and the rest dropped. Data is
    taken as it arrives (never paused), so the child never blocks on a full pipe."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.kept = bytearray()
        self.truncated = False

    def add(self, data: bytes) -> None:
        room = self.cap - len(self.kept)
        if room > 0:
            self.kept += data[:room]
        if len(data) > room:
            self.truncated = True

    def text(self) -> str:
        return self.kept.decode("utf-8", errors="replace")


class _Run(asyncio.SubprocessProtocol):
    def __init__(self, cap: int) -> None:
        loop = asyncio.get_running_loop()
        self.out = _Capped(cap)
        self.err = _Capped(cap)
        self.exited: asyncio.Future[None] = loop.create_future()
        self.pipes_closed: asyncio.Future[None] = loop.create_future()
        self._open = {1, 2}

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        (self.out if fd == 1 else self.err).add(data)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        self._open.discard(fd)
        if not self._open and not self.pipes_closed.done():
            self.pipes_closed.set_result(None)

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)


async def _end_group(transport: asyncio.SubprocessTransport, run: _Run) -> None:
    _signal_group(transport, signal.SIGTERM)
    deadline = time.monotonic() + TERM_GRACE_S
    # Nothing reports that a process group became empty, so poll it. A member counts until
    # it is reaped; an orphan is reaped by init, which here and there takes its time.
    while time.monotonic() < deadline and _group_alive(transport):  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    _signal_group(transport, signal.SIGKILL)  # whatever ignored SIGTERM
    await asyncio.wait([run.exited], timeout=1.0)


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
