"""Process shell of the agent: settings in, exit code out, restart by re-exec."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from arete.logs import setup_logging
from edge_agent.agent import Agent
from edge_agent.errors import AgentError, ConfigError
from edge_agent.settings import RESTART_EXIT_CODE, AgentSettings, read_password

log = logging.getLogger("arete.agent")


def resolve_state_dir(settings: AgentSettings) -> Path:
    """``state_dir``, else systemd's ``$STATE_DIRECTORY``, else the user's state home."""
    if settings.state_dir:
        return Path(settings.state_dir).expanduser()
    if os.environ.get("STATE_DIRECTORY"):
        return Path(os.environ["STATE_DIRECTORY"].split(":")[0])
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "arete" / f"agent-{settings.id}"


async def main(settings: AgentSettings) -> int:
    agent = Agent(settings, password=read_password(settings), state_dir=resolve_state_dir(settings))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, agent.request_exit, 0, "shutdown")
    return await agent.run()


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
    if code == RESTART_EXIT_CODE and _restart_by_exec(settings):
        log.info("agent re-executing itself")
        logging.shutdown()
        os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])  # noqa: S606
    return code


def _restart_by_exec(settings: AgentSettings) -> bool:
    mode = settings.commands.restart_mode
    # Under systemd (INVOCATION_ID is set), exit and let Restart=always bring us back.
    return mode == "exec" or (mode == "auto" and "INVOCATION_ID" not in os.environ)
