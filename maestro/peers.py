"""The other maestro replicas as this one sees them, and who leads (sends notifications).

A replica's ``online`` counts at once. Its ``offline`` (a stop, or its Will) counts only
once it waited ``PEER_SETTLE_S`` on a link of ours that stayed up: a stopping broker
publishes every replica's Will too, and leadership must not move for it, or two
replicas would page the same outage.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

log = logging.getLogger("arete.maestro.registry")

PEER_SETTLE_S: Final = 10.0


@dataclass(frozen=True, slots=True)
class PeerState:
    replica: str
    online: bool
    since: float


class Peers:
    def __init__(self, replica: str, link_generation: Callable[[], int | None] | None) -> None:
        """``link_generation``: our link's current connection (None: no link to watch)."""
        self.replica = replica
        self.states: dict[str, PeerState] = {}
        self._generation = link_generation
        self._held: dict[str, tuple[float, int | None]] = {}  # replica -> (at, link gen)

    def on_status(self, replica: str, online: bool, now: float) -> None:
        known = self.states.get(replica)
        if online:
            self._held.pop(replica, None)
        elif known is not None and known.online and self._generation is not None:
            self._held.setdefault(replica, (now, self._generation()))
            return
        if known is None or known.online != online:
            self._set(replica, online, now)

    def settle(self, now: float) -> None:
        """Held offlines that waited out the delay on an unchanged link count now."""
        if self._generation is None:
            return
        generation = self._generation()
        for replica, (at, held_on) in list(self._held.items()):
            if held_on != generation:
                del self._held[replica]  # our link changed meanwhile: the broker's doing
            elif now - at >= PEER_SETTLE_S:
                del self._held[replica]
                self._set(replica, False, now)

    def _set(self, replica: str, online: bool, now: float) -> None:
        log.info("maestro replica %s is %s", replica, "online" if online else "offline")
        self.states[replica] = PeerState(replica, online, now)

    def online_replicas(self) -> list[str]:
        return sorted({self.replica} | {p.replica for p in self.states.values() if p.online})

    def is_leader(self) -> bool:
        """The online replica with the smallest name sends notifications."""
        return self.online_replicas()[0] == self.replica
