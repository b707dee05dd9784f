"""The command allowlist: names, typed argument models and result models.

A command name maps to exactly one argument model here and to exactly one handler in
the agent's dispatch table. Nothing is ever looked up by attribute name.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Final

import msgspec

from arete.errors import CommandArgsError, UnknownCommandError
from arete.payloads import NonNegFloat, NonNegInt, ShortStr
from arete.terminal import SessionId, TermSize

MAX_COMMAND_TTL_S: Final = 3600.0
"""Commands may live at most an hour; agents remember executed ids at least that long."""

MAX_CLOCK_SKEW_S: Final = 300.0
"""Commands run on an agent whose clock is at most this far from the maestro's; beyond it
they are refused with ``clock_skew``. Within it, a command's expiry is judged by its own
lifetime (``expires_at - issued_at``) on the agent's estimate of the maestro's clock."""


class CommandName(StrEnum):
    RESTART = "restart"
    STOP = "stop"
    SCREENSHOT = "screenshot"
    SHELL = "shell"
    DOCKER_PS = "docker_ps"
    DOCKER_RESTART = "docker_restart"
    METRICS = "metrics"
    TERMINAL = "terminal"
    UPDATE = "update"
    DOCKER_UPDATE = "docker_update"


class _Args(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    pass


class RestartArgs(_Args, kw_only=True, frozen=True):
    """Restart the agent process (a supervisor such as systemd brings it back)."""


class StopArgs(_Args, kw_only=True, frozen=True):
    """Stop the agent process; under systemd it stays stopped (exit status 64)."""


class ScreenshotArgs(_Args, kw_only=True, frozen=True):
    monitor: Annotated[int, msgspec.Meta(ge=0, le=32)] = 0  # 0 = all monitors
    max_bytes: Annotated[int, msgspec.Meta(ge=16 * 1024, le=8 * 1024 * 1024)] = 2 * 1024 * 1024


# The operating system cannot pass a NUL inside an argument or a path (C strings end
# there), so a shell string, argument or cwd holding one is refused as ``bad_args``.
_NO_NUL: Final = r"^[^\x00]*\Z"

ArgvList = Annotated[
    list[Annotated[str, msgspec.Meta(max_length=8192, pattern=_NO_NUL)]],
    msgspec.Meta(min_length=1, max_length=256),
]
ShellString = Annotated[str, msgspec.Meta(min_length=1, max_length=16384, pattern=_NO_NUL)]
DirPath = Annotated[str, msgspec.Meta(max_length=4096, pattern=_NO_NUL)]


class ShellArgs(_Args, kw_only=True, frozen=True):
    """Exactly one of ``argv`` (run directly) or ``command`` (run by ``/bin/sh -c``)."""

    argv: ArgvList | None = None
    command: ShellString | None = None
    cwd: DirPath | None = None
    timeout_s: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 30.0
    max_output: Annotated[int, msgspec.Meta(ge=1024, le=4 * 1024 * 1024)] = 64 * 1024

    def __post_init__(self) -> None:
        if (self.argv is None) == (self.command is None):
            raise ValueError("give exactly one of 'argv' or 'command'")


class DockerPsArgs(_Args, kw_only=True, frozen=True):
    all: bool = False


class DockerRestartArgs(_Args, kw_only=True, frozen=True):
    container: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\Z")]
    timeout_s: Annotated[int, msgspec.Meta(ge=0, le=600)] = 10


class MetricsArgs(_Args, kw_only=True, frozen=True):
    """Take a fresh sample now."""


class TerminalArgs(_Args, kw_only=True, frozen=True):
    """Open a remote terminal (a PTY running a login shell) for ``term/<id>/<session>``.

    The agent answers ``ok`` once the shell runs; the session then lives on the ``term``
    topics (``arete.terminal``) until it is closed, the shell exits, it idles out or the
    agent stops.
    """

    session: SessionId
    cols: TermSize = 80
    rows: TermSize = 24
    idle_timeout_s: Annotated[float, msgspec.Meta(gt=0, le=86400)] = 900.0


# A release version: 1-4 dot-separated numbers ("0.2", "1.4.10"); compared numerically
# (arete.release.compare_versions). Pre-release suffixes are not part of the scheme.
VERSION_PATTERN: Final = r"^[0-9]{1,6}(\.[0-9]{1,6}){0,3}\Z"
Version = Annotated[str, msgspec.Meta(pattern=VERSION_PATTERN, max_length=27)]


class UpdateArgs(_Args, kw_only=True, frozen=True):
    """Update the agent to the signed release ``version`` (docs/updates.md), or, with
    ``rollback``, go back to the version installed before the current one.

    Exactly one of ``version`` or ``rollback=true``. The agent fetches the release from
    the broker, verifies signature, expiry, version order and every artifact's hash, and
    hands it to its host's updater, which installs it beside the current version,
    switches, restarts the agent and rolls back by itself unless the new version reports
    healthy within ``health_deadline_s``.
    """

    version: Version | None = None
    rollback: bool = False
    health_deadline_s: Annotated[float, msgspec.Meta(ge=10, le=3600)] = 120.0

    def __post_init__(self) -> None:
        if (self.version is None) == (not self.rollback):
            raise ValueError("give exactly one of 'version' or 'rollback': true")


_CONTAINER_NAME: Final = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\Z"
# An image reference: [registry[:port]/]path[:tag][@digest], as the engine takes it.
_IMAGE_REF: Final = r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,254}\Z"


class DockerUpdateArgs(_Args, kw_only=True, frozen=True):
    """Pull ``image`` (default: the reference the container was created from), recreate
    the container with the same configuration if the pull brought a different image,
    wait for its health check (or for it to keep running ``stable_s``), and put the
    previous image back if the new one fails."""

    container: Annotated[str, msgspec.Meta(pattern=_CONTAINER_NAME)]
    image: Annotated[str, msgspec.Meta(pattern=_IMAGE_REF)] | None = None
    health_timeout_s: Annotated[int, msgspec.Meta(ge=1, le=1800)] = 60
    stable_s: Annotated[int, msgspec.Meta(ge=0, le=600)] = 10
    stop_timeout_s: Annotated[int, msgspec.Meta(ge=0, le=600)] = 10


CommandArgs = (
    RestartArgs
    | StopArgs
    | ScreenshotArgs
    | ShellArgs
    | DockerPsArgs
    | DockerRestartArgs
    | MetricsArgs
    | TerminalArgs
    | UpdateArgs
    | DockerUpdateArgs
)

ARG_MODELS: Final[dict[CommandName, type[CommandArgs]]] = {
    CommandName.RESTART: RestartArgs,
    CommandName.STOP: StopArgs,
    CommandName.SCREENSHOT: ScreenshotArgs,
    CommandName.SHELL: ShellArgs,
    CommandName.DOCKER_PS: DockerPsArgs,
    CommandName.DOCKER_RESTART: DockerRestartArgs,
    CommandName.METRICS: MetricsArgs,
    CommandName.TERMINAL: TerminalArgs,
    CommandName.UPDATE: UpdateArgs,
    CommandName.DOCKER_UPDATE: DockerUpdateArgs,
}

DEFAULT_TIMEOUT_S: Final[dict[CommandName, float]] = {
    CommandName.RESTART: 10.0,
    CommandName.STOP: 10.0,
    CommandName.SCREENSHOT: 20.0,
    CommandName.SHELL: 30.0,  # the shell's own ``timeout_s`` wins
    CommandName.DOCKER_PS: 30.0,
    CommandName.DOCKER_RESTART: 120.0,
    CommandName.METRICS: 10.0,
    CommandName.TERMINAL: 15.0,  # until the shell runs, not the session's length
    # until the release is fetched, verified and handed to the host's updater; the
    # install and the health check that follow are reported in the agent's status.
    CommandName.UPDATE: 300.0,
    CommandName.DOCKER_UPDATE: 600.0,
}


def command_name(name: str) -> CommandName:
    """Return the allowlisted name or raise :class:`UnknownCommandError`."""
    try:
        return CommandName(name)
    except ValueError:
        raise UnknownCommandError(name) from None


def parse_args(name: str, args: dict[str, Any]) -> CommandArgs:
    """Validate ``args`` against the model of ``name``; raise a typed error otherwise."""
    model = ARG_MODELS[command_name(name)]
    try:
        return msgspec.convert(args, model)
    except msgspec.ValidationError as exc:
        raise CommandArgsError(f"bad arguments for {name}: {exc}") from None


# -- results -----------------------------------------------------------------------------
class Result(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True):
    pass


class MessageResult(Result, kw_only=True, frozen=True):
    message: str


class ScreenshotResult(Result, kw_only=True, frozen=True):
    format: str = "png"
    monitor: NonNegInt
    width: NonNegInt  # of the image sent
    height: NonNegInt
    source_width: NonNegInt  # of the screen captured
    source_height: NonNegInt
    bytes: NonNegInt
    png_b64: str
    # Every pixel the same colour: nothing drawn, a blanked or locked screen, or a session
    # that cannot see the desktop. The image is still sent; the flag says not to trust it.
    blank: bool = False


class ShellResult(Result, kw_only=True, frozen=True):
    exit_code: int | None  # None when killed by the timeout
    stdout: str
    stderr: str
    truncated: bool = False
    timed_out: bool = False
    duration_s: NonNegFloat


class ContainerInfo(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True):
    id: ShortStr
    name: ShortStr
    image: ShortStr
    state: ShortStr  # created, running, exited, ...
    status: ShortStr  # engine's human text, e.g. "Up 3 hours"


class DockerPsResult(Result, kw_only=True, frozen=True):
    containers: list[ContainerInfo]


class DockerRestartResult(Result, kw_only=True, frozen=True):
    id: ShortStr
    name: ShortStr
    state: ShortStr


class TerminalResult(Result, kw_only=True, frozen=True):
    session: ShortStr
    shell: ShortStr  # the program running in the terminal
    pid: NonNegInt
    idle_timeout_s: NonNegFloat  # as granted (the agent may cap the one asked for)


class UpdateResult(Result, kw_only=True, frozen=True):
    """``handed_over``: verified and given to the host's updater (progress follows in the
    agent's status, ``update``); ``up_to_date``: already on that version;
    ``rollback_requested``: the updater is switching back to ``to_version``."""

    state: ShortStr
    from_version: ShortStr
    to_version: ShortStr


class DockerUpdateResult(Result, kw_only=True, frozen=True):
    """``updated``, ``up_to_date`` (the pull brought the image the container runs) or
    ``rolled_back`` (sent with a ``failed`` reply, code ``unhealthy``)."""

    id: ShortStr
    name: ShortStr
    state: ShortStr
    image: ShortStr
    old_image_id: ShortStr
    new_image_id: ShortStr = ""
    message: str = ""
