"""Command admission: pure, so every refusal reason is tested with plain inputs.

``admit`` answers whether a raw ``cmd/<id>`` payload may run, in this order: decodes
and matches the schema; the name is on the allowlist; the signature verifies (when
signing is on); the id was never seen; its lifetime is within the agent's limit; the
two clocks agree within :data:`~arete.commands.MAX_CLOCK_SKEW_S`; it has not expired;
the arguments match the command's model. The order puts the checks that need no trust
first and never tells an unsigned sender more than "unsigned".

Time is judged without trusting that the clocks agree. The lifetime is the maestro's
own ``expires_at - issued_at``; the command's age is measured on the maestro's clock,
as this agent estimates it (``offset``, :mod:`edge_agent.clock`). Without an estimate,
the command's age is known only to lie between 0 and its lifetime (the broker drops a
command whose MQTT Message Expiry, set to that lifetime, has passed), and the agent
assumes the smallest clock difference that fits.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass

import msgspec

from arete.commands import (
    MAX_CLOCK_SKEW_S,
    CommandArgs,
    CommandName,
    command_name,
    parse_args,
)
from arete.errors import PayloadError
from arete.payloads import Command, ErrorInfo, ReplyState, decode_command
from arete.signing import signing_bytes

AGE_SLACK_S = 1.0  # a clock estimate is as good as a message's trip: allow that much
TTL_SLACK_S = 1.0  # float rounding between maestro and agent

Verify = Callable[[bytes, bytes], bool]  # (signature, signed bytes) -> valid


@dataclass(frozen=True, slots=True)
class Admitted:
    command: Command
    name: CommandName
    args: CommandArgs
    offset_s: float = 0.0  # this agent's clock minus the maestro's, as judged


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
    offset: float | None = None,
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
        return _reject(command.id, "duplicate", f"command {command.id} was already accepted")
    lifetime = command.expires_at - command.issued_at
    if lifetime > max_ttl_s + TTL_SLACK_S:
        return _reject(
            command.id,
            "ttl_too_long",
            f"command would live {lifetime:.0f}s, past this agent's limit of {max_ttl_s:.0f}s",
        )
    observed = now - command.issued_at  # clock offset + the command's age
    skew = judged_offset(observed, lifetime, offset)
    if abs(skew) > MAX_CLOCK_SKEW_S:
        way = "ahead of" if skew > 0 else "behind"
        return _reject(
            command.id,
            "clock_skew",
            f"this agent's clock is about {abs(skew):.0f}s {way} the maestro's, more than "
            f"the {MAX_CLOCK_SKEW_S:.0f}s tolerated; synchronise the clocks (NTP)",
        )
    late = observed - skew - lifetime
    if lifetime <= 0 or late > AGE_SLACK_S:
        return Refused(
            command.id,
            ReplyState.EXPIRED,
            ErrorInfo("expired", f"command expired {max(late, 0.0):.1f}s ago"),
        )
    try:
        args = parse_args(name, command.args)
    except PayloadError as exc:
        return _reject(command.id, exc.code, str(exc))
    return Admitted(command, name, args, skew)


def judged_offset(observed: float, lifetime: float, known: float | None) -> float:
    """This agent's clock minus the maestro's, as used to judge one command.

    ``observed`` is the agent's now minus the command's ``issued_at``: the offset plus the
    command's age, which is at least 0. With an estimate from recent maestro messages,
    the smaller of the two bounds wins. Without one, the age is between 0 and the
    lifetime, so the offset lies in ``[observed - lifetime, observed]``: take the value
    of that range closest to 0 (clocks that agree, if they can).
    """
    if known is not None:
        return min(known, observed)
    return max(observed - lifetime, min(0.0, observed))


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
