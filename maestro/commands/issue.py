"""Turning a request into a command message (pure: the caller gives the time and the key).

Every check happens here, before anything is recorded or published, and each failure is
a :class:`~maestro.errors.CommandError` whose ``code`` a caller can map to an answer:
``bad_agent``, ``unknown_command``, ``bad_args``, ``bad_timeout``, ``bad_actor``,
``bad_job``, ``too_large``.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from typing import Any, Final

from arete.commands import DEFAULT_TIMEOUT_S, CommandArgs, ShellArgs, command_name, parse_args
from arete.errors import PayloadError, TopicError
from arete.payloads import MAX_COMMAND_BYTES, Command, encode
from arete.signing import Signer, sign_command
from arete.topics import validate_agent_id
from maestro.commands.settings import CommandSettings
from maestro.errors import CommandError

# The agent kills a shell command at most ~6 s after its own ``timeout_s``; the extra
# seconds cover the trip there and back, so a default timeout never cuts a shell short.
SHELL_SLACK_S: Final = 10.0
MIN_TIMEOUT_S: Final = 0.1
MAX_ACTOR_CHARS: Final = 256
_JOB_ID_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}\Z")
_ID_PREFIX: Final = "c-"


@dataclass(frozen=True, slots=True)
class Request:
    """A validated request: what gets recorded and then published."""

    agent_id: str
    name: str
    args: dict[str, Any]
    timeout_s: float
    actor: str
    job_id: str | None


def validate_request(
    agent_id: str,
    name: str,
    args: dict[str, Any] | None,
    *,
    timeout_s: float | None,
    actor: str,
    job_id: str | None,
    settings: CommandSettings,
) -> Request:
    """Check every part of a request; raise :class:`CommandError` with a code otherwise."""
    agent = check_agent_id(agent_id)
    values = {} if args is None else args
    parsed = check_args(name, values)
    values = dict(values)  # the caller may reuse its dict; the record keeps what was sent
    return Request(
        agent_id=agent,
        name=name,
        args=values,
        timeout_s=resolve_timeout(name, parsed, timeout_s, settings),
        actor=check_actor(actor),
        job_id=check_job_id(job_id),
    )


def check_agent_id(agent_id: str) -> str:
    try:
        return validate_agent_id(agent_id)
    except TopicError as exc:
        raise CommandError(str(exc), code="bad_agent") from None


def check_args(name: str, args: object) -> CommandArgs:
    if not isinstance(name, str):
        raise CommandError(f"command name must be a string, not {name!r}", code="unknown_command")
    if not isinstance(args, dict) or not all(isinstance(key, str) for key in args):
        raise CommandError("command arguments must be a JSON object", code="bad_args")
    try:  # what cannot be sent as JSON text (a lone surrogate, a set) fails here, not later
        json.dumps(args, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except UnicodeEncodeError:
        raise CommandError(
            "command arguments must be valid Unicode text (they hold a lone surrogate)",
            code="bad_args",
        ) from None
    except (TypeError, ValueError) as exc:
        raise CommandError(f"command arguments are not JSON: {exc}", code="bad_args") from None
    try:
        return parse_args(name, args)
    except PayloadError as exc:  # UnknownCommandError or CommandArgsError, with their code
        raise CommandError(str(exc), code=exc.code) from None


def resolve_timeout(
    name: str, args: CommandArgs, requested: float | None, settings: CommandSettings
) -> float:
    """The command's lifetime: the caller's, else the command's default, else the setting's.

    A ``shell`` command's default lasts long enough for its own ``timeout_s``.
    """
    if requested is None:
        timeout = DEFAULT_TIMEOUT_S.get(command_name(name), settings.default_timeout_s)
        if isinstance(args, ShellArgs):
            timeout = max(timeout, args.timeout_s + SHELL_SLACK_S)
        return min(timeout, settings.max_timeout_s)
    if isinstance(requested, bool) or not isinstance(requested, int | float):
        raise CommandError(
            f"timeout must be a number of seconds, not {requested!r}", code="bad_timeout"
        )
    if not MIN_TIMEOUT_S <= requested <= settings.max_timeout_s:
        raise CommandError(
            f"timeout must be between {MIN_TIMEOUT_S} and {settings.max_timeout_s:g} seconds,"
            f" not {requested!r}",
            code="bad_timeout",
        )
    return float(requested)


def check_actor(actor: str) -> str:
    """Who sent the command (for the audit): a user, ``api-key:<name>``, ``job:<id>``..."""
    if (
        not isinstance(actor, str)
        or not actor.strip()
        or len(actor) > MAX_ACTOR_CHARS
        or not actor.isprintable()
    ):
        raise CommandError(
            f"actor must be 1-{MAX_ACTOR_CHARS} printable characters, not {actor!r}",
            code="bad_actor",
        )
    return actor


def check_job_id(job_id: str | None) -> str | None:
    if job_id is not None and (not isinstance(job_id, str) or not _JOB_ID_RE.fullmatch(job_id)):
        raise CommandError(
            f"job id must be 1-128 letters, digits, '_', '.', ':' or '-', not {job_id!r}",
            code="bad_job",
        )
    return job_id


class CommandIds:
    """Unique ids that sort by creation time: ``c-<µs since epoch, hex>-<random hex>``.

    The time part never repeats or goes back within one process, so ids made here sort
    in the order they were made even when the clock steps back.
    """

    def __init__(self) -> None:
        self._last_us = 0

    def new(self, now: float) -> str:
        micros = max(int(now * 1_000_000), self._last_us + 1)
        self._last_us = micros
        return f"{_ID_PREFIX}{micros:014x}-{secrets.token_hex(5)}"


def build_message(
    request: Request,
    *,
    command_id: str,
    issued_at: float,
    expires_at: float,
    key: Signer | None,
) -> tuple[Command, bytes]:
    """The command (signed when a key is given) and its encoded payload."""
    command = Command(
        id=command_id,
        name=request.name,
        args=request.args,
        issued_at=float(issued_at),
        expires_at=float(expires_at),
    )
    if key is not None:
        command = sign_command(request.agent_id, command, key)
    payload = encode(command)
    if len(payload) > MAX_COMMAND_BYTES:
        raise CommandError(
            f"the command is {len(payload)} bytes, over the {MAX_COMMAND_BYTES}-byte limit",
            code="too_large",
        )
    return command, payload
