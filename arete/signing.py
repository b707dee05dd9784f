"""What a command signature covers (pure: the agent verifies, the maestro signs).

The signed document is the command without ``sig``, plus the target agent id (so a
command signed for one agent is worthless on another), encoded as JSON with sorted keys,
no whitespace and numbers in their shortest round-trip form. ``issued_at`` and
``expires_at`` are always written as floats (``1800000000.0``), as the agent decodes them,
so a command built with integer timestamps signs the same bytes the agent verifies.
The signature is Ed25519 over ``SIGNING_CONTEXT + document``, sent base64-encoded.
"""

from __future__ import annotations

from typing import Final

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
