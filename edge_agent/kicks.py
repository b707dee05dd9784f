"""Telling "someone else uses this agent's identity" from an ordinary flaky link.

The broker lets one connection hold a client id: a second client with the same id (the
agent's config copied to another machine, or started twice) closes the first one's
connection, and the two knock each other off in a loop. MQTT 5 has a reason code for
that (142, session taken over), but Mosquitto 2.0.11 closes the old connection without
sending it. So the agent watches the pattern instead: connections that the broker
accepted and then closed, again and again, while every reconnect succeeds at once. A
broker restart or a cut link shows failed connection attempts in between, which clears
the count.
"""

from __future__ import annotations

from collections import deque
from typing import Final

WINDOW_S: Final = 300.0
LOSSES_TO_SUSPECT: Final = 3


class KickWatch:
    """Counts accepted connections lost (not by us) in a row within :data:`WINDOW_S`."""

    def __init__(self, window_s: float = WINDOW_S, threshold: int = LOSSES_TO_SUSPECT) -> None:
        self._window_s = window_s
        self._threshold = threshold
        self._losses: deque[float] = deque(maxlen=threshold * 4)
        self._warned = False

    def lost(self, now: float) -> bool:
        """An accepted connection was closed; True when that starts a suspicion (log it)."""
        self._losses.append(now)
        if self.suspected(now) and not self._warned:
            self._warned = True
            return True
        return False

    def connect_failed(self) -> None:
        """The broker could not be reached or refused us: an outage, not a second client."""
        self._losses.clear()
        self._warned = False

    def suspected(self, now: float) -> bool:
        while self._losses and now - self._losses[0] > self._window_s:
            self._losses.popleft()
        if len(self._losses) < self._threshold:
            self._warned = False
            return False
        return True

    @property
    def losses(self) -> int:
        return len(self._losses)
