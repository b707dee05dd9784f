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
    """Which agents a client follows, and the sample time it last got of each."""

    agents: set[str] = field(default_factory=set)
    last_ts: dict[str, float] = field(default_factory=dict)

    def apply(self, verb: str, ids: list[str]) -> None:
        if verb == "subscribe":
            if len(self.agents | set(ids)) > MAX_STREAMS:
                raise ClientMessageError(f"at most {MAX_STREAMS} metric streams per connection")
            self.agents.update(ids)
        else:
            for agent in ids:
                self.agents.discard(agent)
                self.last_ts.pop(agent, None)

    def due(
        self, latest: Callable[[str], Mapping[str, Any] | None], now: float
    ) -> list[dict[str, Any]]:
        """Frames for every followed agent whose latest sample is new since the last one."""
        frames = []
        for agent in sorted(self.agents):
            sample = latest(agent)
            if not sample:
                continue
            ts = sample.get("ts")
            if not isinstance(ts, int | float) or self.last_ts.get(agent) == ts:
                continue
            self.last_ts[agent] = ts
            values = {k: v for k, v in sample.items() if k != "ts"}
            frames.append(
                {"kind": "metrics", "ts": now, "data": {"agent": agent, "ts": ts, "values": values}}
            )
        return frames


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
