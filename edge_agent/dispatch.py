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
from typing import Any

from arete.commands import (
    DEFAULT_TIMEOUT_S,
    CommandArgs,
    CommandName,
    DockerPsArgs,
    DockerRestartArgs,
    MessageResult,
    ScreenshotArgs,
    ShellArgs,
)
from arete.payloads import Sample
from edge_agent.errors import CommandFailed
from edge_agent.settings import AgentSettings

Handler = Callable[[Any], Awaitable[Any]]
Precheck = Callable[[Any], object]  # raises CommandFailed when this agent's policy refuses

SHELL_GRACE_S = 5.0  # the shell handler enforces its own timeout; this is the backstop


@dataclass(frozen=True, slots=True)
class Entry:
    handler: Handler
    exit_after: bool = False  # restart / stop: the agent exits once the reply is out
    precheck: Precheck | None = None  # policy, checked before ``accepted`` is sent


def build_table(
    settings: AgentSettings, *, fresh_sample: Callable[[], Awaitable[Sample]]
) -> dict[CommandName, Entry]:
    # Handlers import their heavy libraries (mss, docker) only when first called.
    from edge_agent.handlers.docker import docker_ps, docker_restart
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

    async def metrics(_: CommandArgs) -> Sample:
        return await fresh_sample()

    return {
        CommandName.RESTART: Entry(restart, exit_after=True),
        CommandName.STOP: Entry(stop, exit_after=True),
        CommandName.SCREENSHOT: Entry(
            screenshot, precheck=_enabled(settings.screenshot.enabled, "screenshots")
        ),
        CommandName.SHELL: Entry(shell, precheck=lambda a: checked_argv(a, settings.shell)),
        CommandName.DOCKER_PS: Entry(ps, precheck=_enabled(settings.docker.enabled, "docker")),
        CommandName.DOCKER_RESTART: Entry(
            restart_container, precheck=_enabled(settings.docker.enabled, "docker")
        ),
        CommandName.METRICS: Entry(metrics),
    }


def _enabled(enabled: bool, what: str) -> Precheck:
    def check(_: object) -> None:
        if not enabled:
            raise CommandFailed("not_allowed", f"{what} commands are disabled on this agent")

    return check


def deadline_s(name: CommandName, args: CommandArgs) -> float:
    if isinstance(args, ShellArgs):
        return args.timeout_s + SHELL_GRACE_S
    if isinstance(args, DockerRestartArgs):
        return max(DEFAULT_TIMEOUT_S[name], args.timeout_s + 30.0)
    return DEFAULT_TIMEOUT_S[name]
