"""The explicit command table: allowlisted name -> handler and execution deadline.

Handlers raise :class:`~edge_agent.errors.CommandFailed` with a reason code; the agent
turns every outcome into a reply. An entry's ``precheck`` (the shell policy) runs before
the command is accepted: a refusal there is a ``rejected`` reply and nothing runs.
``restart`` and ``stop`` only acknowledge here: the agent acts on them after their ``ok``
reply has been sent.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from arete.commands import (
    DEFAULT_TIMEOUT_S,
    CommandArgs,
    CommandName,
    DockerPsArgs,
    DockerRestartArgs,
    DockerUpdateArgs,
    MessageResult,
    ScreenshotArgs,
    ShellArgs,
)
from arete.payloads import Sample
from edge_agent.errors import CommandFailed
from edge_agent.handlers.docker_recreate import worst_case_s
from edge_agent.handlers.shell import OVERRUN_S
from edge_agent.settings import AgentSettings, DockerSettings

if TYPE_CHECKING:
    from edge_agent.terminal import TerminalManager
    from edge_agent.update import SelfUpdate

# Called with the command's args, and the command itself when ``with_command`` is set.
Handler = Callable[..., Awaitable[Any]]
Precheck = Callable[[Any], object]  # raises CommandFailed when this agent's policy refuses

# The shell ends itself at most OVERRUN_S after its ``timeout_s`` (SIGTERM grace, SIGKILL,
# output EOF); the backstop adds slack for spawning and a busy event loop.
SHELL_GRACE_S: Final = OVERRUN_S + 2.0
# Docker: each Engine API request may take the client timeout to connect and again to
# answer. restart = version probe, inspect, restart (the client timeout plus the stop
# timeout), inspect; ps = version probe, list.
_DOCKER_REQUESTS: Final = {CommandName.DOCKER_PS: 2, CommandName.DOCKER_RESTART: 4}
DOCKER_GRACE_S: Final = 5.0


# At most this many screenshots at once; more are refused ``busy`` (an X server that
# hangs makes each one wait for its timeout: they must not pile up).
MAX_SCREENSHOTS: Final = 2


@dataclass(frozen=True, slots=True)
class Entry:
    handler: Handler
    exit_after: bool = False  # restart / stop: the agent exits once the reply is out
    precheck: Precheck | None = None  # policy, checked before ``accepted`` is sent
    slot: bool = False  # waits for one of the agent's shared command slots
    limit: int | None = None  # at most this many at once; more are rejected ``busy``
    with_command: bool = False  # the handler also gets the Command (its id, for records)


def build_table(
    settings: AgentSettings,
    *,
    fresh_sample: Callable[[], Awaitable[Sample]],
    terminals: TerminalManager,
    updates: SelfUpdate,
) -> dict[CommandName, Entry]:
    # Handlers import their heavy libraries (mss, docker) only when first called.
    from edge_agent.handlers.docker import docker_ps, docker_restart
    from edge_agent.handlers.docker_update import docker_update
    from edge_agent.handlers.screenshot import take_screenshot
    from edge_agent.handlers.shell import checked_argv, run_shell

    async def restart(_: CommandArgs) -> MessageResult:
        return MessageResult(message="agent restarting")

    async def stop(_: CommandArgs) -> MessageResult:
        return MessageResult(message="agent stopping")

    async def screenshot(args: ScreenshotArgs) -> Any:
        return await take_screenshot(args, settings.screenshot)

    async def shell(args: ShellArgs) -> Any:
        return await run_shell(args, settings.shell)

    async def ps(args: DockerPsArgs) -> Any:
        return await docker_ps(args, settings.docker)

    async def restart_container(args: DockerRestartArgs) -> Any:
        return await docker_restart(args, settings.docker)

    async def update_container(args: DockerUpdateArgs) -> Any:
        return await docker_update(args, settings.docker)

    async def metrics(_: CommandArgs) -> Sample:
        return await fresh_sample()

    return {
        CommandName.RESTART: Entry(restart, exit_after=True),
        CommandName.STOP: Entry(stop, exit_after=True),
        CommandName.SCREENSHOT: Entry(
            screenshot,
            precheck=_enabled(settings.screenshot.enabled, "screenshots"),
            limit=MAX_SCREENSHOTS,
        ),
        CommandName.SHELL: Entry(
            shell, precheck=lambda a: checked_argv(a, settings.shell), slot=True
        ),
        CommandName.DOCKER_PS: Entry(
            ps, precheck=_enabled(settings.docker.enabled, "docker"), slot=True
        ),
        CommandName.DOCKER_RESTART: Entry(
            restart_container, precheck=_enabled(settings.docker.enabled, "docker"), slot=True
        ),
        CommandName.METRICS: Entry(metrics),
        # terminal: ``ok`` once the shell runs; the session then lives in ``terminals``.
        CommandName.TERMINAL: Entry(terminals.open, precheck=terminals.precheck),
        # update: ``ok`` once the host's updater has the verified release (edge_agent/update.py)
        CommandName.UPDATE: Entry(
            updates.run, precheck=updates.precheck, limit=1, with_command=True
        ),
        # docker_update: one at a time (each may restore what an interrupted one left).
        CommandName.DOCKER_UPDATE: Entry(
            update_container,
            precheck=_enabled(settings.docker.enabled, "docker"),
            slot=True,
            limit=1,
        ),
    }


def _enabled(enabled: bool, what: str) -> Precheck:
    def check(_: object) -> None:
        if not enabled:
            raise CommandFailed("not_allowed", f"{what} commands are disabled on this agent")

    return check


def deadline_s(name: CommandName, args: CommandArgs, docker: DockerSettings | None = None) -> float:
    """The backstop for one command: past it, the agent answers ``failed``/``timeout``.

    Handlers end themselves first; the backstop is only there for a handler that hangs.
    ``docker`` is the agent's docker settings (defaults when not given): its client
    timeout, which has no upper bound, decides how long a docker command may take.
    """
    if isinstance(args, ShellArgs):
        return args.timeout_s + SHELL_GRACE_S
    if name in _DOCKER_REQUESTS:
        client_timeout_s = (docker or DockerSettings()).timeout_s
        stop_timeout_s = args.timeout_s if isinstance(args, DockerRestartArgs) else 0
        worst_s = 2 * (_DOCKER_REQUESTS[name] * client_timeout_s + stop_timeout_s)
        return max(DEFAULT_TIMEOUT_S[name], worst_s + DOCKER_GRACE_S)
    if isinstance(args, DockerUpdateArgs):
        # pull budget + every request's client timeout + two stops + the trial + grace
        client_s = (docker or DockerSettings()).timeout_s
        return max(DEFAULT_TIMEOUT_S[name], worst_case_s(args, client_s))
    return DEFAULT_TIMEOUT_S[name]
