"""In-process event stream of the maestro, for the web API's websockets and for tests.

Every liveness transition, alert change and command update is published here (and
stored by its producer). Subscribers get their own bounded queue: a slow subscriber
loses its oldest events (counted in ``dropped``), never slows the producer.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

DEFAULT_QUEUE = 10_000


@dataclass(frozen=True, slots=True)
class Event:
    """``kind`` is ``agent``, ``alert`` or ``command``; ``data`` is JSON-ready."""

    kind: str
    ts: float
    data: dict[str, Any]


@dataclass(eq=False)
class Subscription:
    queue: asyncio.Queue[Event] = field(default_factory=lambda: asyncio.Queue(DEFAULT_QUEUE))
    kinds: frozenset[str] | None = None
    dropped: int = 0

    async def get(self) -> Event:
        return await self.queue.get()

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Event]:
        while True:
            yield await self.queue.get()


class EventBus:
    """Fan-out of :class:`Event` to subscribers; call ``publish`` on the event loop."""

    def __init__(self) -> None:
        self._subscribers: set[Subscription] = set()
        self.published = 0

    def publish(self, kind: str, ts: float, data: dict[str, Any]) -> None:
        event = Event(kind, ts, data)
        self.published += 1
        for sub in self._subscribers:
            if sub.kinds is not None and kind not in sub.kinds:
                continue
            if sub.queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    sub.queue.get_nowait()
                sub.dropped += 1
            sub.queue.put_nowait(event)

    @contextlib.contextmanager
    def subscribe(
        self, kinds: set[str] | None = None, maxsize: int = DEFAULT_QUEUE
    ) -> Iterator[Subscription]:
        sub = Subscription(asyncio.Queue(maxsize), frozenset(kinds) if kinds is not None else None)
        self._subscribers.add(sub)
        try:
            yield sub
        finally:
            self._subscribers.discard(sub)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)
