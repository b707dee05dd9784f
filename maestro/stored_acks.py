"""The maestro's side of the end-to-end acknowledgement: ``stored/<agent_id>`` messages.

Once the store committed a metrics message, :meth:`StoredAcks.stored` is told its
``seq`` numbers (on the writer thread). Replayed batches are confirmed at once: the
agent sends only a few of them ahead of the confirmations, so their pace is the replay's
pace. Live samples are merged per agent and confirmed at most :data:`MERGE_S` later (or
once :data:`MERGE_MAX` are waiting): one message per agent every few seconds instead of
one per sample, which matters at ten thousand agents a second (a publish costs the
maestro ~30 µs of its busiest core). A merged confirmation is only late, never lost:
the samples are stored already; an agent that stops meanwhile gets it at once, because
its ``stopping`` status makes the maestro confirm that agent without delay for a while.
The first confirmation to each agent (since this maestro started) goes out at once, and
so does every confirmation for :data:`PROMPT_S` after the broker link (re)connects: that
is when agents hold samples the broker may have dropped, and they re-send whatever is
still unconfirmed a few seconds after this replica's ``online``.

Publishing is QoS 0 (see docs/topics.md, "stored"): a lost confirmation costs one more
send of the samples, which the store keeps once.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Final

from arete.payloads import encode
from arete.stored import MAX_RANGES, Stored, seq_ranges
from arete.topics import Topics

MERGE_S: Final = 5.0  # live samples are confirmed at most this late
MERGE_MAX: Final = 16  # ... or as soon as this many wait (the agent keeps 30 in memory)
PROMPT_S: Final = 10.0  # after an agent's "stopping", confirm it at once for this long


class StoredAcks:
    """Merges and publishes confirmations; :meth:`stored` and :meth:`prompt` are
    thread-safe, :meth:`run` flushes what waited long enough (event loop)."""

    def __init__(
        self,
        topics: Topics,
        replica: str,
        publish: Callable[[str, bytes], object],
        *,
        merge_s: float = MERGE_S,
        generation: Callable[[], int] = lambda: 0,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._topics = topics
        self._replica = replica
        self._publish = publish
        self.merge_s = merge_s
        self._clock = clock
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._waiting: dict[str, tuple[float, list[int]]] = {}  # agent -> (since, seqs)
        self._prompt: dict[str, float] = {}  # agent -> confirm at once until (monotonic)
        self._topic_of: dict[str, str] = {}
        self._generation = generation  # the broker link's connection count
        self._generation_seen = 0  # MaestroLink.generation before its first connection
        self._all_at_once_until = 0.0
        self.published = 0

    def stored(self, agent_id: str, seqs: list[int], *, at_once: bool = False) -> None:
        """These samples of ``agent_id`` are stored (or refused for good)."""
        if not seqs:
            return
        now = self._monotonic()
        generation = self._generation()
        with self._lock:
            if generation != self._generation_seen:  # a new broker connection
                self._generation_seen = generation
                self._all_at_once_until = now + PROMPT_S
            prompt = self._prompt.get(agent_id)
            if prompt is not None and prompt < now:
                del self._prompt[agent_id]
                prompt = None
            since, waiting = self._waiting.get(agent_id, (now, []))
            waiting = waiting + seqs
            # An agent's first confirmation goes out at once: until it has one, it counts
            # the broker's PUBACK as enough (edge_agent.delivery.AckMode).
            first = agent_id not in self._topic_of
            at_once = at_once or first or prompt is not None or now < self._all_at_once_until
            if not (at_once or self.merge_s <= 0) and len(waiting) < MERGE_MAX:
                self._waiting[agent_id] = (since, waiting)
                return
            self._waiting.pop(agent_id, None)
        self._send(agent_id, waiting)

    def prompt(self, agent_id: str) -> None:
        """The agent is stopping: confirm what waits, and its next samples at once."""
        with self._lock:
            self._prompt[agent_id] = self._monotonic() + PROMPT_S
            _, waiting = self._waiting.pop(agent_id, (0.0, []))
        if waiting:
            self._send(agent_id, waiting)

    def flush(self, *, all_of_them: bool = False) -> int:
        """Publish what waited ``merge_s`` (everything with ``all_of_them``); how many."""
        now = self._monotonic()
        with self._lock:
            due = [
                agent
                for agent, (since, _) in self._waiting.items()
                if all_of_them or now - since >= self.merge_s
            ]
            batches = [(agent, self._waiting.pop(agent)[1]) for agent in due]
            for agent, until in list(self._prompt.items()):
                if until < now:
                    del self._prompt[agent]
        for agent, seqs in batches:
            self._send(agent, seqs)
        return len(batches)

    async def run(self) -> None:
        """Flush merged confirmations as they come due (a task of the maestro)."""
        while True:
            await asyncio.sleep(max(0.05, self.merge_s / 5))
            self.flush()

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def _send(self, agent_id: str, seqs: list[int]) -> None:
        topic = self._topic_of.get(agent_id)
        if topic is None:
            if len(self._topic_of) >= 200_000:  # bounded like the ingest's topic cache
                self._topic_of.clear()
            topic = self._topic_of[agent_id] = self._topics.stored(agent_id)
        ranges = seq_ranges(seqs)
        for start in range(0, len(ranges), MAX_RANGES):
            part = ranges[start : start + MAX_RANGES]
            ack = Stored(replica=self._replica, ts=self._clock(), ranges=part)
            self._publish(topic, encode(ack))
            self.published += 1
