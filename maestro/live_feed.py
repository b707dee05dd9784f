"""Every live sample of a followed agent, for this replica's websockets.

The ingest takes metrics through a *shared* subscription: with two replicas each gets
about half of an agent's samples, so a websocket served by one replica would see half
of them. While at least one websocket of this replica follows agent X, the link also
holds a plain (non-shared) QoS 0 subscription to ``metrics/X``, tagged with
:data:`LIVE_SUBSCRIPTION_ID`. Messages carrying that identifier come here only, never
to the ingest: the share stays the only way into the store, nothing is stored twice.
The share's own (live, not replayed) samples of X come here too; :class:`Newest` drops
the copy that arrived second, by ``(epoch, seq)``, so each sample is pushed once and in
order.

At most ``max_agents`` agents hold a plain subscription at a time; the others are
followed through the share alone (about half of their samples with two replicas), which
is logged and counted (``arete_maestro_live_share_only_agents``). The last follower
leaving drops the subscription. A plain subscription nobody follows (a session kept by
the broker across a crash) is dropped when its first message arrives.

Threads: :meth:`LiveFeed.from_share` and :meth:`LiveFeed.from_plain` run on the MQTT
network thread and only look up whether the agent is followed; everything else runs on
the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import paho.mqtt.client as mqtt
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from arete.errors import PayloadError, TopicError
from arete.payloads import Sample, decode_metrics
from arete.topics import Kind, Topics
from maestro.store.rows import detail_values, row_values, to_row

log = logging.getLogger("arete.maestro.live")

MAX_AGENTS: Final = 200  # plain subscriptions per replica
WATCHER_QUEUE: Final = 2000  # samples waiting for one websocket (oldest dropped beyond)
STRAY_RETRY_S: Final = 30.0  # how often an unfollowed plain subscription is dropped again


class LiveLink(Protocol):
    """What the feed needs of :class:`maestro.link.MaestroLink`."""

    def follow_live(self, topic: str) -> None: ...
    def unfollow_live(self, topic: str) -> None: ...


@dataclass(frozen=True, slots=True)
class LiveSample:
    agent_id: str
    epoch: int
    sample: Sample
    rx_ts: float  # the maestro's receive time

    def data(self) -> dict[str, Any]:
        """The ``data`` of the websocket's ``metrics`` frame (docs/api.md)."""
        sample = self.sample
        values: dict[str, Any] = detail_values(sample)
        values |= row_values(to_row(self.agent_id, self.epoch, sample))
        values["rx_ts"] = self.rx_ts
        return {
            "agent": self.agent_id,
            "ts": sample.ts,
            "epoch": self.epoch,
            "seq": sample.seq,
            "values": values,
        }


class Newest:
    """Per agent, the ``(epoch, seq)`` of the last sample let through.

    A sample is new if its seq is higher (seqs grow across reconnects and restarts) or
    its epoch is (an agent whose state was lost starts its seqs again, in a new epoch).
    Anything else came already, by the other subscription, or is older.
    """

    def __init__(self) -> None:
        self._last: dict[str, tuple[int, int]] = {}

    def admit(self, agent_id: str, epoch: int, seq: int) -> bool:
        last = self._last.get(agent_id)
        if last is not None and epoch <= last[0] and seq <= last[1]:
            return False
        self._last[agent_id] = (epoch, seq)
        return True

    def forget(self, agent_id: str) -> None:
        self._last.pop(agent_id, None)


@dataclass(eq=False)
class Watcher:
    """One websocket's view: the agents it follows and the samples waiting for it."""

    feed: LiveFeed
    queue: asyncio.Queue[LiveSample] = field(default_factory=lambda: asyncio.Queue(WATCHER_QUEUE))
    agents: set[str] = field(default_factory=set)
    dropped: int = 0  # samples dropped because the client did not keep up

    def follow(self, agent_ids: list[str]) -> None:
        for agent_id in agent_ids:
            if agent_id not in self.agents:
                self.agents.add(agent_id)
                self.feed._follow(self, agent_id)

    def unfollow(self, agent_ids: list[str]) -> None:
        for agent_id in agent_ids:
            if agent_id in self.agents:
                self.agents.discard(agent_id)
                self.feed._unfollow(self, agent_id)

    def close(self) -> None:
        self.unfollow(list(self.agents))

    def put(self, sample: LiveSample) -> None:
        if self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(sample)

    async def get(self) -> LiveSample:
        return await self.queue.get()


class LiveFeed:
    """Start with :meth:`start` on the event loop; websockets use :meth:`watching`."""

    def __init__(
        self,
        topics: Topics,
        link: LiveLink,
        *,
        max_agents: int = MAX_AGENTS,
        known: Callable[[str], bool] = lambda agent_id: True,
    ) -> None:
        """``known``: whether an agent exists (only those get a plain subscription, so
        that made-up ids cannot use up the limit)."""
        self._topics = topics
        self._link = link
        self._known = known
        self.max_agents = max_agents
        self._loop: asyncio.AbstractEventLoop | None = None
        # Loop-owned; the network thread only tests membership (atomic in CPython).
        self._followers: dict[str, set[Watcher]] = {}
        self.plain: set[str] = set()  # agents with a plain subscription now
        self.share_only: set[str] = set()  # followed beyond max_agents: the share alone
        self._newest = Newest()
        self._stray: dict[str, float] = {}  # agent -> when its stray subscription was dropped
        self.plain_messages = 0  # messages through the plain subscriptions
        self.pushed = 0  # samples handed to websockets (once each)
        self.duplicates = 0  # samples that came both ways, dropped the second time

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()

    # -- websockets (event loop) --------------------------------------------------------
    @contextlib.contextmanager
    def watching(self) -> Iterator[Watcher]:
        watcher = Watcher(self)
        try:
            yield watcher
        finally:
            watcher.close()

    def followed(self) -> set[str]:
        return set(self._followers)

    def _follow(self, watcher: Watcher, agent_id: str) -> None:
        followers = self._followers.get(agent_id)
        if followers is not None:
            followers.add(watcher)
            return
        self._followers[agent_id] = {watcher}
        try:
            topic = self._topics.metrics(agent_id)
        except TopicError:
            return  # not an agent id: nothing will ever come
        if not self._known(agent_id):
            return  # no such agent (yet): whatever the share brings
        if len(self.plain) >= self.max_agents:
            self.share_only.add(agent_id)
            log.warning(
                "live: %d agents followed already; agent_id=%s gets only this replica's"
                " share of its samples (raise the limit or add no more followers)",
                len(self.plain),
                agent_id,
            )
            return
        self.plain.add(agent_id)
        self._link.follow_live(topic)

    def _unfollow(self, watcher: Watcher, agent_id: str) -> None:
        followers = self._followers.get(agent_id)
        if followers is None:
            return
        followers.discard(watcher)
        if followers:
            return
        del self._followers[agent_id]
        self._newest.forget(agent_id)
        self.share_only.discard(agent_id)
        if agent_id in self.plain:
            self.plain.discard(agent_id)
            self._link.unfollow_live(self._topics.metrics(agent_id))
            if self.share_only:  # a slot is free: one of the share-only agents gets it
                promoted = min(self.share_only)
                self.share_only.discard(promoted)
                self.plain.add(promoted)
                self._link.follow_live(self._topics.metrics(promoted))

    # -- samples (network thread) -------------------------------------------------------
    def from_share(self, agent_id: str, epoch: int, samples: list[Sample], rx_ts: float) -> None:
        """The ingest's live (not replayed) samples of ``agent_id``."""
        if agent_id in self._followers:
            self._schedule(self._push, agent_id, epoch, samples, rx_ts, False)

    def from_plain(self, message: mqtt.MQTTMessage) -> None:
        """A message of a plain live subscription (never stored, never acknowledged)."""
        try:
            route = self._topics.parse(message.topic)
            if route.kind is not Kind.METRICS:
                return
            agent_id = route.agent_id
            if agent_id not in self._followers:
                self._schedule(self._drop_stray, agent_id)
                return
            metrics = decode_metrics(message.payload)
        except (TopicError, PayloadError):
            return  # the ingest counts bad messages through its share
        if not metrics.replay:
            self._schedule(self._push, agent_id, metrics.epoch, metrics.samples, time.time(), True)

    def _schedule(self, fn: Any, *args: Any) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(fn, *args)

    # -- samples (event loop) -----------------------------------------------------------
    def _push(
        self, agent_id: str, epoch: int, samples: list[Sample], rx_ts: float, plain: bool
    ) -> None:
        if plain:
            self.plain_messages += 1
        followers = self._followers.get(agent_id)
        if not followers:
            return
        for sample in samples:
            if not self._newest.admit(agent_id, epoch, sample.seq):
                self.duplicates += 1
                continue
            self.pushed += 1
            live = LiveSample(agent_id, epoch, sample, rx_ts)
            for watcher in followers:
                watcher.put(live)

    def _drop_stray(self, agent_id: str) -> None:
        self.plain_messages += 1
        if agent_id in self._followers:
            return
        now = time.monotonic()
        if now - self._stray.get(agent_id, -STRAY_RETRY_S) < STRAY_RETRY_S:
            return
        self._stray[agent_id] = now
        if len(self._stray) > 10 * self.max_agents:
            self._stray.clear()
        log.info("live: dropping a plain subscription nobody follows agent_id=%s", agent_id)
        self._link.unfollow_live(self._topics.metrics(agent_id))

    # -- observation ----------------------------------------------------------------------
    def metrics(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "arete_maestro_live_plain_subscriptions",
            "Followed agents whose every sample reaches this replica's websockets"
            " (a plain subscription beside the shared one)",
            value=len(self.plain),
        )
        yield GaugeMetricFamily(
            "arete_maestro_live_share_only_agents",
            "Followed agents beyond the limit of plain subscriptions: their websockets get"
            " only this replica's share of their samples",
            value=len(self.share_only),
        )
        yield CounterMetricFamily(
            "arete_maestro_live_samples_pushed",
            "Samples handed to this replica's websockets (each once)",
            value=self.pushed,
        )
