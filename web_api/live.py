"""Pure parts of the ``/ws`` live stream: client messages, metric streams, event frames."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from maestro.events import Event
from web_api.auth.roles import Role
from web_api.visibility import command_view

MAX_STREAMS: Final = 200


class ClientMessageError(ValueError):
    """A client message the server cannot use (answered with an ``error`` frame)."""


def parse_client_message(message: Any) -> tuple[str, list[str]]:
    """``{"subscribe": [ids]}`` or ``{"unsubscribe": [ids]}`` → (verb, ids)."""
    if not isinstance(message, dict) or len(message) != 1:
        raise ClientMessageError('send {"subscribe": [ids]} or {"unsubscribe": [ids]}')
    verb, ids = next(iter(message.items()))
    if verb not in ("subscribe", "unsubscribe"):
        raise ClientMessageError(f"unknown message {verb!r}")
    if not isinstance(ids, list) or not all(isinstance(i, str) and 0 < len(i) <= 128 for i in ids):
        raise ClientMessageError(f"{verb} takes a list of agent ids")
    return verb, ids


@dataclass
class MetricStreams:
    """Which agents a client follows, and the ``(epoch, seq)`` it last got of each.

    Every live sample of a followed agent comes from the maestro's live feed
    (:mod:`maestro.live_feed`, once each, in order); right after a subscribe, the
    latest known sample comes first so that the page shows values at once.
    """

    agents: set[str] = field(default_factory=set)
    last: dict[str, tuple[int, int]] = field(default_factory=dict)

    def apply(self, verb: str, ids: list[str]) -> list[str]:
        """Follow or unfollow; return the agents whose state changed."""
        if verb == "subscribe":
            if len(self.agents | set(ids)) > MAX_STREAMS:
                raise ClientMessageError(f"at most {MAX_STREAMS} metric streams per connection")
            fresh = [agent for agent in dict.fromkeys(ids) if agent not in self.agents]
            self.agents.update(fresh)
            return fresh
        gone = [agent for agent in dict.fromkeys(ids) if agent in self.agents]
        for agent in gone:
            self.agents.discard(agent)
            self.last.pop(agent, None)
        return gone

    def first(
        self,
        agents: list[str],
        latest: Callable[[str], Mapping[str, Any] | None],
        now: float,
    ) -> list[dict[str, Any]]:
        """Frames of the latest known sample of newly followed ``agents``."""
        frames = []
        for agent in agents:
            sample = latest(agent)
            if sample:
                frame = self.live(dict(sample) | {"agent": agent}, now)
                if frame is not None:
                    frames.append(frame)
        return frames

    def live(self, data: Mapping[str, Any], now: float) -> dict[str, Any] | None:
        """The frame of one sample (``agent``, ``ts``, ``epoch``, ``seq``, ``values``), or
        None if the client does not follow the agent or got it (or a newer one)."""
        agent = data.get("agent")
        epoch, seq = data.get("epoch"), data.get("seq")
        if agent not in self.agents or not isinstance(epoch, int) or not isinstance(seq, int):
            return None
        last = self.last.get(agent)
        if last is not None and epoch <= last[0] and seq <= last[1]:
            return None
        self.last[agent] = (epoch, seq)
        return {"kind": "metrics", "ts": now, "data": dict(data)}


def event_frame(event: Event, role: Role) -> dict[str, Any]:
    """The websocket frame of ``event`` for a client of ``role`` (private commands'
    arguments and output hidden below the role that may run them)."""
    data = command_view(role, event.data) if event.kind == "command" else event.data
    result = data.get("result")
    if event.kind == "command" and data.get("name") == "screenshot" and result:
        # Screenshots are MiBs of base64: the client downloads the PNG when it wants it
        # (GET /commands/{id}/screenshot); the rest (size, ``blank``) goes along.
        kept = (
            {k: v for k, v in result.items() if k != "png_b64"}
            if isinstance(result, dict)
            else None
        )
        data = {**data, "result": kept}
    return {"kind": event.kind, "ts": event.ts, "data": data}
