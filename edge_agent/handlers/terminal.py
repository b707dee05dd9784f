"""The ``terminal`` command's policy and the spawning of a shell on a new PTY.

The session around the PTY (frames, batching, ending) is :mod:`edge_agent.terminal`.

Why the small Python shim between ``setsid`` and the shell: a shell needs the PTY as its
*controlling* terminal (job control, Ctrl-C), which takes ``TIOCSCTTY`` in the child after
``setsid``. ``subprocess`` cannot do that without ``preexec_fn``, which is unsafe in a
process with threads (the MQTT thread); the shim does it and then ``exec``\\ s the shell.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
import sys
from collections.abc import Collection
from typing import Final

from arete.commands import TerminalArgs
from edge_agent.errors import CommandFailed
from edge_agent.settings import ENV_PREFIX, AgentSettings

if sys.platform != "win32":  # the agent runs on Windows too, without terminals
    import fcntl
    import pwd
    import termios

TERM_TYPE: Final = "xterm-256color"
FALLBACK_SHELL: Final = "/bin/sh"

CTTY_SHIM: Final = (
    "import fcntl, os, sys, termios\n"
    "fcntl.ioctl(0, termios.TIOCSCTTY, 0)\n"
    "os.execv(sys.argv[1], sys.argv[2:])\n"
)


def check_policy(
    args: TerminalArgs, settings: AgentSettings, open_sessions: Collection[str]
) -> None:
    """Raise :class:`CommandFailed` when this agent refuses the session (before ``accepted``)."""
    if sys.platform == "win32":
        raise CommandFailed("not_supported", "terminals need a POSIX system")
    if not settings.terminal.enabled:
        raise CommandFailed("not_allowed", "terminals are disabled on this agent")
    shell = settings.shell
    if not shell.enabled:
        raise CommandFailed(
            "not_allowed", "shell is disabled on this agent (a terminal is a shell)"
        )
    if shell.allow or not shell.allow_shell_strings:
        raise CommandFailed(
            "not_allowed",
            "the shell is restricted on this agent; a terminal would get around the restriction",
        )
    if args.session in open_sessions:
        raise CommandFailed("duplicate_session", f"terminal session {args.session} is already open")
    if len(open_sessions) >= settings.terminal.max_sessions:
        raise CommandFailed(
            "busy", f"{len(open_sessions)} terminal sessions are open, the most this agent allows"
        )


def resolve_shell(configured: str | None) -> str:
    """The shell to run: the configured one, else the user's login shell, else /bin/sh."""
    if configured is not None:
        if not _is_program(configured):
            raise CommandFailed(
                "not_found", f"terminal.shell {configured!r} is not an executable absolute path"
            )
        return configured
    with contextlib.suppress(KeyError):
        login = pwd.getpwuid(os.getuid()).pw_shell
        if login and _is_program(login):
            return login
    return FALLBACK_SHELL


def _is_program(path: str) -> bool:
    return os.path.isabs(path) and os.path.isfile(path) and os.access(path, os.X_OK)


def shell_environment(shell: str) -> dict[str, str]:
    """The agent's environment minus its own settings (secrets), as a login would set it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    with contextlib.suppress(KeyError):
        user = pwd.getpwuid(os.getuid())
        env.update(HOME=user.pw_dir, USER=user.pw_name, LOGNAME=user.pw_name)
    env.update(TERM=TERM_TYPE, SHELL=shell)
    return env


def home_dir(env: dict[str, str]) -> str:
    home = env.get("HOME", "/")
    return home if os.path.isdir(home) else "/"  # a stat: too short to need a thread


def set_size(fd: int, cols: int, rows: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


async def spawn_shell(args: TerminalArgs, shell: str) -> tuple[int, asyncio.subprocess.Process]:
    """A new PTY sized as asked and ``shell`` running on it as a login shell, in its own
    session; returns the (non-blocking) master fd and the process."""
    master, slave = os.openpty()
    try:
        set_size(slave, args.cols, args.rows)
        os.set_blocking(master, False)
        env = shell_environment(shell)
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-I",
            "-S",
            "-c",
            CTTY_SHIM,
            shell,
            "-" + os.path.basename(shell),  # a leading "-": a login shell
            stdin=slave,
            stdout=slave,
            stderr=slave,
            cwd=home_dir(env),
            env=env,
            start_new_session=True,
        )
    except OSError as exc:
        os.close(master)
        raise CommandFailed("exec_failed", f"cannot start a terminal: {exc}") from None
    finally:
        os.close(slave)
    return master, process
