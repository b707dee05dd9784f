"""Command admission: pure, so every refusal reason is tested with plain inputs.

``admit`` answers whether a raw ``cmd/<id>`` payload may run, in this order: decodes
and matches the schema; the name is on the allowlist; the signature verifies (when
signing is on); the id was never seen; it has not expired and does not live longer
than the agent allows; the arguments match the command's model. The order puts the
checks that need no trust first and never tells an unsigned sender more than
"unsigned".
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass

import msgspec

from arete.commands import CommandArgs, CommandName, command_name, parse_args
from arete.errors import PayloadError
from arete.payloads import Command, ErrorInfo, ReplyState, decode_command
from arete.signing import signing_bytes

CLOCK_SKEW_S = 60.0  # tolerated difference between the maestro's clock and ours

Verify = Callable[[bytes, bytes], bool]  # (signature, signed bytes) -> valid


@dataclass(frozen=True, slots=True)
class Admitted:
    command: Command
    name: CommandName
    args: CommandArgs


@dataclass(frozen=True, slots=True)
class Refused:
    command_id: str | None
    state: ReplyState  # rejected or expired
    error: ErrorInfo


def admit(  # noqa: PLR0911 - one early return per refusal reason, in order
    payload: bytes,
    *,
    agent_id: str,
    now: float,
    max_ttl_s: float,
    seen: Callable[[str], bool],
    verify: Verify | None,
) -> Admitted | Refused:
    try:
        command = decode_command(payload)
    except PayloadError as exc:
        return _reject(salvage_id(payload), exc.code, str(exc))
    try:
        name = command_name(command.name)
    except PayloadError as exc:
        return _reject(command.id, exc.code, str(exc))
    if verify is not None:
        refusal = _check_signature(command, agent_id, verify)
        if refusal is not None:
            return refusal
    if seen(command.id):
        return _reject(command.id, "duplicate", f"command {command.id} was already received")
    if now > command.expires_at:
        return Refused(
            command.id,
            ReplyState.EXPIRED,
            ErrorInfo("expired", f"command expired {now - command.expires_at:.1f}s ago"),
        )
    if command.expires_at - max(now, command.issued_at) > max_ttl_s + CLOCK_SKEW_S:
        return _reject(
            command.id,
            "ttl_too_long",
            f"command would live past this agent's limit of {max_ttl_s:.0f}s",
        )
    if command.issued_at > now + CLOCK_SKEW_S:
        return _reject(
            command.id, "clock_skew", "command was issued in the future; check the clocks (NTP)"
        )
    try:
        args = parse_args(name, command.args)
    except PayloadError as exc:
        return _reject(command.id, exc.code, str(exc))
    return Admitted(command, name, args)


def _check_signature(command: Command, agent_id: str, verify: Verify) -> Refused | None:
    if not command.sig:
        return _reject(command.id, "unsigned", "this agent only runs signed commands")
    try:
        signature = base64.b64decode(command.sig, validate=True)
    except (binascii.Error, ValueError):
        return _reject(command.id, "bad_signature", "signature is not valid base64")
    if not verify(signature, signing_bytes(agent_id, command)):
        return _reject(command.id, "bad_signature", "signature does not verify")
    return None


def _reject(command_id: str | None, code: str, message: str) -> Refused:
    return Refused(command_id, ReplyState.REJECTED, ErrorInfo(code, message))


_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:-")


def salvage_id(payload: bytes) -> str | None:
    """The command id of a payload that failed validation, if one can be read safely."""
    try:
        document = msgspec.json.decode(payload)
    except (msgspec.DecodeError, RecursionError):
        return None
    if not isinstance(document, dict):
        return None
    value = document.get("id")
    if isinstance(value, str) and 0 < len(value) <= 128 and set(value) <= _ID_CHARS:
        return value
    return None
