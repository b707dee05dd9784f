"""Process shell of the agent: settings in, exit code out, restart by re-exec.

SIGTERM (or Ctrl-C, or a ``stop``/``restart`` command) asks the agent to stop cleanly,
and arms a watchdog: if the process has not exited (or re-executed) :data:`EXIT_WITHIN_S`
later — a blocking call that never returns, say —
the logs are flushed and the process ends itself with ``os._exit``. A stop is never
left to kill -9.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Final

from arete.logs import setup_logging
from edge_agent.agent import Agent
from edge_agent.errors import AgentError, ConfigError
from edge_agent.settings import RESTART_EXIT_CODE, AgentSettings, read_password
from edge_agent.statelock import lock_state_dir

log = logging.getLogger("arete.agent")

EXIT_WITHIN_S: Final = 4.5  # after SIGTERM; the promise is 5 s


def resolve_state_dir(settings: AgentSettings) -> Path:
    """``state_dir``, else systemd's ``$STATE_DIRECTORY``, else the user's state home."""
    if settings.state_dir:
        return Path(settings.state_dir).expanduser()
    if os.environ.get("STATE_DIRECTORY"):
        return Path(os.environ["STATE_DIRECTORY"].split(":")[0])
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "arete" / f"agent-{settings.id}"


async def main(settings: AgentSettings) -> int:
    password = read_password(settings)
    state_dir = resolve_state_dir(settings)
    with lock_state_dir(state_dir):  # one process per state directory, or exit 2
        agent = Agent(settings, password=password, state_dir=state_dir)
        loop = asyncio.get_running_loop()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, agent.request_exit, 0, "shutdown")

        async def watchdog() -> None:
            await agent.exit_requested()
            _arm_watchdog(lambda: agent.exit_code, lambda code: _reexec_on(code, settings))

        watching = asyncio.create_task(watchdog())
        try:
            return await agent.run()
        finally:
            watching.cancel()


_watchdog: threading.Timer | None = None


def _arm_watchdog(
    exit_code: Callable[[], int], reexec: Callable[[int], bool] = lambda _: False
) -> None:
    """End the process :data:`EXIT_WITHIN_S` from now unless it has exited by then
    (re-executing it instead when ``reexec(code)`` says a restart is due)."""
    global _watchdog  # noqa: PLW0603 - one watchdog per process
    if _watchdog is not None:
        return

    def expire() -> None:
        log.error(
            "agent did not stop in time; exiting now (a blocked call is left behind)",
            extra={"kv": {"after_s": EXIT_WITHIN_S}},
        )
        code = exit_code()
        logging.shutdown()
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        if reexec(code):  # a `restart` outside systemd must still come back
            os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])  # noqa: S606
        os._exit(code)

    _watchdog = threading.Timer(EXIT_WITHIN_S, expire)
    _watchdog.daemon = True  # never holds up a clean exit
    _watchdog.start()


def run(settings: AgentSettings) -> int:
    """Run until stopped; returns the process exit code (re-execs on ``restart``)."""
    setup_logging(settings.log_level, settings.log_format)
    try:
        code = asyncio.run(main(settings))
    except ConfigError as exc:  # permanent until someone edits the config: 2, no restart
        log.error("agent cannot run: bad configuration", extra={"kv": {"error": str(exc)}})
        return 2
    except AgentError as exc:  # e.g. the state directory cannot be opened: may pass
        log.error("agent cannot run", extra={"kv": {"error": str(exc)}})
        return 70
    if _reexec_on(code, settings):
        log.info("agent re-executing itself")
        logging.shutdown()
        os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])  # noqa: S606
    return code


def _reexec_on(code: int, settings: AgentSettings) -> bool:
    return code == RESTART_EXIT_CODE and _restart_by_exec(settings)


def _restart_by_exec(settings: AgentSettings) -> bool:
    mode = settings.commands.restart_mode
    # Under systemd (INVOCATION_ID is set), exit and let Restart=always bring us back.
    return mode == "exec" or (mode == "auto" and "INVOCATION_ID" not in os.environ)
