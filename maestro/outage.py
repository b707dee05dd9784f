"""Liveness needs a working broker link: this replica's view of its own link.

* While the link is down nothing can arrive, so silence proves nothing: the registry
  does not judge liveness (no late, no critical) and holds metric rules; when the link
  is back every connected agent gets a fresh grace (:class:`~maestro.liveness.Resume`).
* A broker that stops cleanly publishes the Will of every agent, and a restarted broker
  hands out the retained ones again: a planned broker restart must not page the fleet
  as offline. So a Will (a non-clean ``offline``) waits ``settle_s`` before it counts;
  if this replica's link drops meanwhile it was the broker going away, not the agent.
  Wills of the connections agents had when the link dropped (retained copies delivered
  after it is back, or late ones) are outage artifacts too. Such agents are then judged
  by their heartbeats, from a fresh grace: one that never comes back still goes
  ``critical`` (and pages), an outage does not page N agents.
* The link outage itself is one incident: ``broker_unreachable`` on ``maestro:<replica>``.
* A link cut without a word (a blackhole: no FIN, no RST) stays "connected" until the
  MQTT keepalive runs out (up to 2 x the maestro's keepalive). An agent that is due is
  judged only if *someone* was heard since it was due (with two or more agents): when
  nobody at all was, that is most likely our link, and the judgement waits, for at most
  ``silent_max_s`` (set from the keepalive), by which time the link has dropped (an
  outage as above) or the agents really are all gone (then they are judged, late).

The link is polled (``connected``, ``generation``: the number of connects), so a drop
and reconnect between two polls is still seen.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Final, Literal, Protocol

from arete.payloads import Status

log = logging.getLogger("arete.maestro.outage")

DEFAULT_SETTLE_S: Final = 1.0
DEFAULT_METRICS_HOLD_S: Final = 5.0
DEFAULT_SILENT_MAX_S: Final = 50.0


class LinkState(Protocol):
    @property
    def connected(self) -> bool: ...

    @property
    def generation(self) -> int: ...


@dataclass(frozen=True, slots=True)
class HeldWill:
    status: Status
    at: float  # maestro clock when it arrived
    generation: int  # the link connection it arrived on


LinkChange = Literal["lost", "back"]
WillVerdict = Literal["apply", "hold", "ignore"]


class LinkGate:
    def __init__(
        self,
        link: LinkState | None,
        *,
        settle_s: float = DEFAULT_SETTLE_S,
        metrics_hold_s: float = DEFAULT_METRICS_HOLD_S,
        silent_max_s: float = DEFAULT_SILENT_MAX_S,
    ) -> None:
        self.link = link
        self.settle_s = settle_s
        self.metrics_hold_s = metrics_hold_s
        self.silent_max_s = silent_max_s
        self.silent_since: float | None = None
        self.silences = 0  # times every agent fell silent at once while "connected"
        self.down_since: float | None = None
        self.resumed_at: float | None = None
        self.outages = 0
        self.wills_ignored = 0  # Wills that were outage artifacts
        self._generation: int | None = None
        self._outage_epochs: dict[str, int] = {}
        self._held: dict[str, HeldWill] = {}

    @property
    def up(self) -> bool:
        return self.down_since is None

    @property
    def generation(self) -> int | None:
        """The link connection seen last (None before the first)."""
        return self._generation

    def poll(self, now: float, epochs: dict[str, int]) -> list[LinkChange]:
        """Look at the link; ``epochs`` are the connected agents' current epochs (what
        their connections were when the link went down)."""
        link = self.link
        if link is None:
            return []
        changes: list[LinkChange] = []
        if not link.connected:
            if self.down_since is None:
                self._lost(now, epochs)
                changes.append("lost")
            return changes
        generation = link.generation
        if generation != self._generation:
            if self._generation is not None and self.down_since is None:
                self._lost(now, epochs)  # down and up again between two polls
                changes.append("lost")
            self._generation = generation
        if self.down_since is not None:
            log.info("broker link back after %.1f s", now - self.down_since)
            self.down_since = None
            self.resumed_at = now
            changes.append("back")
        return changes

    def _lost(self, now: float, epochs: dict[str, int]) -> None:
        self.down_since = now
        if self._generation is None:
            return  # not connected yet (startup): retained Wills then are news, not artifacts
        self.outages += 1
        self._outage_epochs = dict(epochs)
        if self._held:
            log.info(
                "broker link lost: %d Wills received just before are not agent incidents",
                len(self._held),
            )
            self.wills_ignored += len(self._held)
            self._held.clear()

    def silent_link(self, now: float) -> bool:
        """A judgement is due but nobody at all was heard since: hold it while the link
        may be silently cut (at most ``silent_max_s`` from the first such hold)."""
        if self.link is None:
            return False
        if self.silent_since is None:
            self.silent_since = now
            self.silences += 1
            log.warning(
                "no agent heard at all while some are due: holding their liveness for up to "
                "%.0f s (the broker link is suspect)",
                self.silent_max_s,
            )
        return now - self.silent_since < self.silent_max_s

    def heard(self, newest: float) -> None:
        """The newest contact from any agent: one after a hold began ends the hold."""
        if self.silent_since is not None and newest > self.silent_since:
            log.info("agents heard again after a fleet-wide silence")
            self.silent_since = None

    def metrics_held(self, now: float) -> bool:
        """Whether metric rules should wait (link down, or samples not flowing again yet)."""
        if self.link is None:
            return False
        if self.down_since is not None:
            return True
        return self.resumed_at is not None and now - self.resumed_at < self.metrics_hold_s

    # -- Wills -----------------------------------------------------------------------------
    def on_will(self, agent_id: str, status: Status, at: float) -> WillVerdict:
        """What to do with a non-clean ``offline`` of the agent's current connection."""
        if status.epoch <= self._outage_epochs.get(agent_id, -1):
            self.wills_ignored += 1
            log.info(
                "ignored a Will from before the broker link outage agent_id=%s epoch=%d",
                agent_id,
                status.epoch,
            )
            return "ignore"
        if self.link is None or self.settle_s <= 0:
            return "apply"
        if self._generation is None:
            return "apply"
        self._held[agent_id] = HeldWill(status, at, self._generation)
        return "hold"

    def forget(self, agent_id: str) -> None:
        """A newer word from the agent supersedes its held Will."""
        self._held.pop(agent_id, None)

    def due(self, now: float) -> list[tuple[str, HeldWill]]:
        """Held Wills that waited out ``settle_s`` on a link that stayed up: they count."""
        if self.down_since is not None:
            return []
        out = [
            (agent_id, held)
            for agent_id, held in self._held.items()
            if now - held.at >= self.settle_s
        ]
        for agent_id, held in out:
            del self._held[agent_id]
            if held.generation != self._generation:  # the link changed in between
                self.wills_ignored += 1
        return [(a, h) for a, h in out if h.generation == self._generation]
