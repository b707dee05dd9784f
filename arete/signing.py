"""What a command signature covers (pure: the agent verifies, the maestro signs).

The signed document is the command without ``sig``, plus the target agent id (so a
command signed for one agent is worthless on another), encoded as JSON with sorted keys,
no whitespace and numbers in their shortest round-trip form (as ``JSON.stringify``).
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
    document["agent"] = agent_id
    return SIGNING_CONTEXT + _canonical.encode(document)
