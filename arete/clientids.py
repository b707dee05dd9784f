"""Which MQTT client ids a broker account may use. Pure: no I/O.

An account owns the client id ``<username>`` and every id ``<username>:<anything>``,
and no other. ``:`` can never be part of a username (Mosquitto's password file is
``username:hash``), so the ids of two accounts never overlap: nobody can connect with
an agent's or the maestro's client id, knock it off the broker or resume its session.

The broker enforces the rule with a small plugin (``mosquitto/c/arete_clientid.c``,
the same rule in C); every Areté client builds its id here.
"""

from __future__ import annotations

from typing import Final

SEPARATOR: Final = ":"
# MQTT allows 65535 bytes; Mosquitto and most clients are happy far below that.
MAX_CLIENT_ID_BYTES: Final = 256


def client_id(username: str, *parts: str) -> str:
    """The client id ``username:part1:part2...`` (just ``username`` without parts)."""
    if not username or SEPARATOR in username:
        raise ValueError(f"cannot build a client id for the username {username!r}")
    if any(not part for part in parts):
        raise ValueError(f"empty part in a client id for {username!r}: {parts!r}")
    built = SEPARATOR.join((username, *parts))
    if len(built.encode()) > MAX_CLIENT_ID_BYTES:
        raise ValueError(f"client id {built!r} is longer than {MAX_CLIENT_ID_BYTES} bytes")
    return built


def owns(username: str, candidate: str) -> bool:
    """Whether the account ``username`` may connect with the client id ``candidate``."""
    if not username:
        return False
    return candidate == username or candidate.startswith(username + SEPARATOR)
