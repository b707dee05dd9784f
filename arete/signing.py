"""What a command signature covers (pure: the agent verifies, the maestro signs).

The signed document is the command without ``sig``, plus the target agent id (so a
command signed for one agent is worthless on another), encoded as JSON with sorted keys,
no whitespace and numbers in their shortest round-trip form. ``issued_at`` and
``expires_at`` are always written as floats (``1800000000.0``), as the agent decodes them,
so a command built with integer timestamps signs the same bytes the agent verifies.
The signature is Ed25519 over ``SIGNING_CONTEXT + document``, sent base64-encoded.
"""

from __future__ import annotations

import base64
from typing import Final, Protocol

import msgspec

from arete.payloads import Command

SIGNING_CONTEXT: Final = b"arete-command-v1\n"

_canonical = msgspec.json.Encoder(order="sorted")


def signing_bytes(agent_id: str, command: Command) -> bytes:
    document = msgspec.structs.asdict(command)
    document.pop("sig", None)
    document["issued_at"] = float(command.issued_at)
    document["expires_at"] = float(command.expires_at)
    document["agent"] = agent_id
    return SIGNING_CONTEXT + _canonical.encode(document)


class Signer(Protocol):
    """What signs: ``cryptography``'s ``Ed25519PrivateKey`` (imported by the caller)."""

    def sign(self, data: bytes) -> bytes: ...


def sign_command(agent_id: str, command: Command, key: Signer) -> Command:
    """``command`` with ``sig`` set: Ed25519 over :func:`signing_bytes`, base64-encoded."""
    signature = key.sign(signing_bytes(agent_id, command))
    return msgspec.structs.replace(command, sig=base64.b64encode(signature).decode("ascii"))
