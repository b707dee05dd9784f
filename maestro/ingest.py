"""The ingest hot path, on the MQTT network thread: route, decode, store, acknowledge.

Metrics become store rows and are acknowledged to the broker only once the store
committed them (``on_stored``). Heartbeats and metrics record a *contact* for liveness
in a plain dict (read by the registry's clock loop). Statuses, replies and peer
messages are few: they are decoded here and handed to the event loop, and so is the
broker's dropped-message counter (``$SYS``, outside the topic tree: recognised where
the routing finds no route, so the hot path pays nothing for it; see
:mod:`maestro.broker_drops`).

Bad payloads are counted by (kind, reason), logged at most once a minute per agent and
reason, acknowledged (so the broker does not resend them forever) and dropped. Every
number is bounded by the contract (:mod:`arete.payloads`); a sample stamped more than a
day ahead of the maestro's clock or a year behind it is dropped the same way
(``ts_future``, ``ts_past``), the other samples of its message are kept.

The agent's clock is never trusted for ordering: ``latest`` is the sample received last
with the maestro's receive time, and every stored row gets its receive time (``rx_ts``)
from the writer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt

from arete.errors import PayloadError, TopicError
from arete.payloads import (
    MAX_FUTURE_S,
    MAX_METRICS_BYTES,
    MAX_PAST_S,
    AgentState,
    MaestroStatus,
    PeerDigest,
    Reply,
    Sample,
    Status,
    decode_heartbeat,
    decode_maestro_status,
    decode_metrics,
    decode_peer_digest,
    decode_reply,
    decode_status,
    sample_time_fault,
)
from arete.stored import salvage_seqs
from arete.topics import BROKER_DROPPED, Kind, ParsedTopic, TermDirection, Topics
from maestro.broker_drops import parse_counter
from maestro.store.detail import DetailStager
from maestro.store.rows import SampleRow, detail_values, to_row
from maestro.stored_acks import StoredAcks

log = logging.getLogger("arete.maestro.ingest")

LOG_EVERY_S = 60.0
BROKER = "broker"  # the kind and source of the broker's own ($SYS) messages
TOPIC_CACHE_MAX = 200_000


@dataclass(frozen=True, slots=True)
class StatusIn:
    agent_id: str
    status: Status
    at: float
    ack: Callable[[], None] | None = None  # acknowledged once the loop handled it


@dataclass(frozen=True, slots=True)
class RemovedIn:
    """The agent's retained status was cleared (an empty payload): it was removed."""

    agent_id: str
    at: float


@dataclass(frozen=True, slots=True)
class ReplyIn:
    agent_id: str
    reply: Reply
    correlation: bytes | None
    at: float
    ack: Callable[[], None] | None = None


@dataclass(frozen=True, slots=True)
class PeerIn:
    replica: str
    status: MaestroStatus | None = None
    digest: PeerDigest | None = None


@dataclass(frozen=True, slots=True)
class BrokerCounterIn:
    """A reading of the broker's dropped-message counter."""

    dropped: int


Inbound = StatusIn | RemovedIn | ReplyIn | PeerIn | BrokerCounterIn


class LoopInbox:
    """Hands items from the network thread to the event loop, one wake-up per burst."""

    def __init__(self, loop: asyncio.AbstractEventLoop, deliver: Callable[[Inbound], None]):
        self._loop = loop
        self._deliver = deliver
        self._items: deque[Inbound] = deque()
        self._scheduled = False

    def put(self, item: Inbound) -> None:
        self._items.append(item)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        self._scheduled = False
        items = self._items
        while items:
            item = items.popleft()
            try:
                self._deliver(item)
            except Exception:  # one bad item must not stop the others
                log.exception("handling %s failed", type(item).__name__)
            ack = getattr(item, "ack", None)
            if ack is not None:
                ack()


class LiveDetail(Mapping[str, dict[str, float]]):
    """The per-item readings (:func:`~maestro.store.rows.detail_values`) of each agent's
    newest sample, worked out when read and kept until a newer sample comes: a view reads
    them now and then, while thousands of samples a second arrive."""

    def __init__(self, samples: Mapping[str, Sample]) -> None:
        self._samples = samples
        self._cache: dict[str, tuple[Sample, dict[str, float]]] = {}

    def __getitem__(self, agent_id: str) -> dict[str, float]:
        sample = self._samples[agent_id]
        cached = self._cache.get(agent_id)
        if cached is not None and cached[0] is sample:
            return cached[1]
        if len(self._cache) > 2 * len(self._samples) + 100:  # agents removed meanwhile
            self._cache = {a: c for a, c in self._cache.items() if a in self._samples}
        values = detail_values(sample)
        self._cache[agent_id] = (sample, values)
        return values

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._samples))

    def __len__(self) -> int:
        return len(self._samples)


class Ingest:
    """Called by the link for every message; keeps counters for self-observation."""

    def __init__(
        self,
        topics: Topics,
        replica: str,
        submit: Callable[[list[SampleRow], Callable[[], None] | None], None],
        ack: Callable[[int, int], None],
        inbox: Callable[[Inbound], None],
        *,
        clock: Callable[[], float] = time.time,
        acks: StoredAcks | None = None,
        details: DetailStager | None = None,
    ) -> None:
        self._topics = topics
        self._replica = replica
        self._submit = submit
        self._ack = ack
        self._inbox = inbox
        self._clock = clock
        self._acks = acks  # the agents' stored acknowledgements (maestro.stored_acks)
        self._details = details  # stores each sample's per-item readings with it
        self._routes: dict[str, ParsedTopic | None] = {}
        self._logged: dict[tuple[str, str], float] = {}
        # Read by the registry (event loop); written here. Plain dict writes are atomic.
        self.contacts: dict[str, tuple[int, float]] = {}
        # {agent: (receive time, row)} of the sample received last (live before replayed):
        # receive order and the maestro's clock, never the agent's seq or timestamp.
        self.latest: dict[str, tuple[float, SampleRow]] = {}
        # The same newest sample whole (every field), for the Prometheus exporter.
        self.latest_sample: dict[str, Sample] = {}
        # {agent: per-core, per-mount, per-sensor... readings of its newest live sample},
        # worked out when a view asks (not for every message).
        self.detail = LiveDetail(self.latest_sample)
        self.agent_dropped: dict[str, int] = {}
        # Counters (exported to Prometheus at scrape time).
        self.messages: Counter[str] = Counter()
        self.samples = 0
        self.replayed_samples = 0
        self.errors: Counter[tuple[str, str]] = Counter()
        # Set at shutdown: take nothing more (unacknowledged, the broker redelivers it).
        self.paused = False
        # -- terminal hook: (agent_id, session, payload) of ``term/+/+/out``, on this thread
        self.on_term: Callable[[str, str, bytes], None] | None = None
        # (agent_id, epoch, samples, receive time) of each live (not replayed) message,
        # on this thread: the websockets' live feed (maestro.live_feed)
        self.on_live: Callable[[str, int, list[Sample], float], None] | None = None

    # -- entry point (network thread) ----------------------------------------------------
    def handle(self, message: mqtt.MQTTMessage, generation: int) -> None:
        if self.paused:
            return
        topic = message.topic
        route = self._routes.get(topic, _MISSING)
        if route is _MISSING:
            route = self._route(topic)
        if route is None:
            self._unrouted(message, generation)
            return
        kind = route.kind
        self.messages[kind] += 1
        try:
            if kind is Kind.METRICS:
                self._metrics(route.agent_id, message, generation)
                return
            if kind is Kind.HEARTBEAT:
                beat = decode_heartbeat(message.payload)
                self._contact(route.agent_id, beat.epoch)
            elif kind is Kind.STATUS:
                if message.payload:
                    self._status(route.agent_id, message, generation)
                    return
                self._removed(route.agent_id)  # an empty retained message clears the status
            elif kind is Kind.REPLY:
                reply = decode_reply(message.payload)
                props = message.properties
                correlation = getattr(props, "CorrelationData", None) if props else None
                ack = self._later(message, generation)
                self._inbox(ReplyIn(route.agent_id, reply, correlation, self._clock(), ack))
                return
            elif kind is Kind.MAESTRO:
                self._peer(route, message)
            # terminal hook: ``out`` frames to the sessions; ``in`` frames are our own, echoed
            elif kind is Kind.TERM and route.direction is TermDirection.OUT and self.on_term:
                self.on_term(route.agent_id, route.session or "", bytes(message.payload))
        except PayloadError as exc:
            self._drop(str(kind), exc.code, route.agent_id, message, generation, detail=str(exc))
            return
        if message.qos == 1:
            self._ack(generation, message.mid)

    # -- kinds -------------------------------------------------------------------------
    def _metrics(self, agent_id: str, message: mqtt.MQTTMessage, generation: int) -> None:
        try:
            metrics = decode_metrics(message.payload)
        except PayloadError as exc:
            # Handled for good: say so, or the agent would send it again and again.
            self._stored(agent_id, salvage_seqs(message.payload, max_bytes=MAX_METRICS_BYTES))
            self._drop("metrics", exc.code, agent_id, message, generation, detail=str(exc))
            return
        seqs = [sample.seq for sample in metrics.samples]
        epoch = metrics.epoch
        now = self._clock()
        samples = metrics.samples
        low, high = now - MAX_PAST_S, now + MAX_FUTURE_S
        if not all(low <= sample.ts <= high for sample in samples):
            samples = self._refuse_times(agent_id, message, samples, now)
        if not samples:
            self._stored(agent_id, seqs)
            if message.qos == 1:
                self._ack(generation, message.mid)
            return
        rows = [to_row(agent_id, epoch, sample) for sample in samples]
        self.samples += len(rows)
        newest = rows[-1]
        if metrics.replay:
            self.replayed_samples += len(rows)
            # Receive order, not the agent's seq or clock: a replayed batch is older than
            # what the agent sends live, so it stands in only until a live sample comes.
            if agent_id not in self.latest:
                self.latest[agent_id] = (now, newest)
                self.latest_sample[agent_id] = samples[-1]
        else:
            self._contact(agent_id, epoch)
            self.latest[agent_id] = (now, newest)
            self.latest_sample[agent_id] = samples[-1]
            if self.on_live is not None:
                self.on_live(agent_id, epoch, samples, now)
        if metrics.dropped:
            self.agent_dropped[agent_id] = metrics.dropped
        # Once committed (on the store's writer thread): the broker's ack, then the
        # agent's, which covers the refused samples of the message too.
        mid = message.mid if message.qos == 1 else None
        ack, stored, replay = self._ack, self._stored, metrics.replay
        details = self._details
        if details is not None:
            details.hold(agent_id, samples)

        def on_stored() -> None:
            if details is not None:
                details.release(agent_id, seqs)
            if mid is not None:
                ack(generation, mid)
            stored(agent_id, seqs, at_once=replay)

        try:
            self._submit(rows, on_stored)
        except BaseException:
            if details is not None:
                details.release(agent_id, seqs)
            raise

    def _stored(self, agent_id: str, seqs: list[int], *, at_once: bool = True) -> None:
        """Tell the agent these samples are handled: it may forget them (any thread)."""
        if self._acks is not None:
            self._acks.stored(agent_id, seqs, at_once=at_once)

    def _refuse_times(
        self,
        agent_id: str,
        message: mqtt.MQTTMessage,
        samples: list[Sample],
        now: float,
    ) -> list[Sample]:
        """The samples stamped within the bounds; the others are counted and logged."""
        kept = []
        for sample in samples:
            fault = sample_time_fault(sample.ts, now)
            if fault is None:
                kept.append(sample)
            else:
                self.errors[("metrics", fault)] += 1
                self._log_drop("metrics", fault, agent_id, message, f"ts={sample.ts!r}")
        return kept

    def _status(self, agent_id: str, message: mqtt.MQTTMessage, generation: int) -> None:
        status = decode_status(message.payload)
        if status.state is AgentState.STOPPING and self._acks is not None:
            self._acks.prompt(agent_id)  # its last samples: confirm them without delay
        ack = self._later(message, generation)
        self._inbox(StatusIn(agent_id, status, self._clock(), ack))

    def _removed(self, agent_id: str) -> None:
        """``arete agents remove`` cleared the agent's retained status: drop what this
        thread keeps of it, and tell the registry (which forgets the rest)."""
        for table in (self.contacts, self.latest, self.latest_sample):
            table.pop(agent_id, None)
        self.agent_dropped.pop(agent_id, None)
        log.info("agent removed (its retained status was cleared) agent_id=%s", agent_id)
        self._inbox(RemovedIn(agent_id, self._clock()))

    def _later(self, message: mqtt.MQTTMessage, generation: int) -> Callable[[], None] | None:
        """The ack of a message the event loop will handle (bounded by Receive Maximum)."""
        if message.qos != 1:
            return None
        mid, ack = message.mid, self._ack
        return lambda: ack(generation, mid)

    def _contact(self, agent_id: str, epoch: int) -> None:
        self.contacts[agent_id] = (epoch, self._clock())

    def _peer(self, route: ParsedTopic, message: mqtt.MQTTMessage) -> None:
        replica = route.agent_id
        if replica == self._replica or not message.payload:
            return
        if route.digest:
            self._inbox(PeerIn(replica, digest=decode_peer_digest(message.payload)))
        else:
            self._inbox(PeerIn(replica, status=decode_maestro_status(message.payload)))

    def _unrouted(self, message: mqtt.MQTTMessage, generation: int) -> None:
        """A topic outside Areté's tree: the broker's counter ($SYS), or a drop."""
        if message.topic == BROKER_DROPPED:
            self._broker_counter(message, generation)
        else:
            self._drop("unknown", "topic", message.topic, message, generation)

    def _broker_counter(self, message: mqtt.MQTTMessage, generation: int) -> None:
        self.messages[BROKER] += 1
        try:
            dropped = parse_counter(message.payload)
        except PayloadError as exc:
            self._drop(BROKER, exc.code, BROKER, message, generation, detail=str(exc))
            return
        self._inbox(BrokerCounterIn(dropped))
        if message.qos == 1:
            self._ack(generation, message.mid)

    # -- routing and drops -----------------------------------------------------------
    def _route(self, topic: str) -> ParsedTopic | None:
        try:
            route: ParsedTopic | None = self._topics.parse(topic)
        except TopicError:
            route = None
        if len(self._routes) < TOPIC_CACHE_MAX:
            self._routes[topic] = route
        return route

    def _drop(
        self,
        kind: str,
        code: str,
        source: str,
        message: mqtt.MQTTMessage,
        generation: int,
        *,
        detail: str = "",
    ) -> None:
        self.errors[(kind, code)] += 1
        self._log_drop(kind, code, source, message, detail)
        if message.qos == 1:
            self._ack(generation, message.mid)

    def _log_drop(
        self, kind: str, code: str, source: str, message: mqtt.MQTTMessage, detail: str
    ) -> None:
        now = self._clock()
        key = (source, code)
        if now - self._logged.get(key, 0.0) >= LOG_EVERY_S:
            self._logged[key] = now
            if len(self._logged) > 10_000:
                self._logged.clear()
            log.warning(
                "dropped a bad message kind=%s reason=%s source=%s bytes=%d %s",
                kind,
                code,
                source,
                len(message.payload),
                detail[:200],
            )


_MISSING: Any = object()
