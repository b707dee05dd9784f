"""The maestro's MQTT link: one paho client (MQTT 5) in its own network thread.

- A persistent session (``clean_start=False``, session expiry) under a fixed client id
  per replica: messages that arrive while the maestro restarts wait in the broker, and
  QoS 1 messages it received but had not acknowledged are delivered again.
- Manual acknowledgements: the ingest acknowledges a metrics message only after the
  store committed it (:meth:`ack`). Message ids are per connection, so an ack carries the
  connection generation it belongs to and is dropped if the connection changed (the
  broker redelivers that message; the store's (agent, seq) key makes it a no-op).
- ``Receive Maximum`` bounds how many unacknowledged messages the broker sends: that is
  the ingest's back-pressure when the store falls behind.
- The replica's retained state on ``maestro/<replica>`` with a Last Will, published
  right after the subscriptions at every connect: agents take a fresh ``online`` as the
  sign to re-send what was not confirmed stored, so the subscriptions must exist first.
- Reconnects: paho's backoff (``reconnect_min_s`` doubling to ``reconnect_max_s``), but
  at most ``reconnect_recent_max_s`` apart while the broker was up less than
  :data:`RECENT_BROKER_S` ago. A restarted broker drops what agents publish until the
  maestro subscribes again, so the maestro must be back within a second or two.
- :meth:`publish_nowait` (QoS 0, from any thread) sends the stored acknowledgements.
- Live subscriptions (:meth:`follow_live`): plain QoS 0 subscriptions tagged with
  :data:`LIVE_SUBSCRIPTION_ID`, for the websockets (:mod:`maestro.live_feed`). A message
  carrying that identifier goes to ``on_live`` only, never to the ingest: the shared
  subscription stays the only way into the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from arete import clientids
from arete.payloads import MaestroState, MaestroStatus, encode
from arete.topics import Topics
from arete.version import __version__
from maestro.errors import LinkError
from maestro.pubacks import queue_pubacks

log = logging.getLogger("arete.maestro.link")

# A PUBACK can beat publish() to its bookkeeping by microseconds; one older than this is
# the ack of an earlier publish whose message id paho has since reused.
EARLY_ACK_MAX_AGE_S = 5.0
# A broker seen up less than this ago is probably restarting: retry it quickly.
RECENT_BROKER_S = 300.0

MessageHandler = Callable[[mqtt.MQTTMessage, int], None]
"""Called on the network thread with each message and the connection generation."""

# MQTT 5 subscription identifier of the live (plain, per-agent metrics) subscriptions;
# the broker keeps it with the subscription, in the session too. No other subscription
# of the maestro has one.
LIVE_SUBSCRIPTION_ID: Final = 7


@dataclass(frozen=True, slots=True)
class LinkConfig:
    replica: str
    host: str
    port: int
    username: str
    password: str | None = field(repr=False)
    topics: Topics
    subscriptions: tuple[tuple[str, int], ...]  # (filter, qos)
    keepalive_s: int = 30
    session_expiry_s: int = 86_400
    receive_maximum: int = 20_000
    tls: bool = False
    ca_file: str | None = None
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0
    reconnect_recent_max_s: float = 2.0

    @property
    def client_id(self) -> str:
        # The broker lets an account use only its own ids (arete.clientids).
        return clientids.client_id(self.username, self.replica)


def _code(value: ReasonCode | int) -> int:
    return value.value if isinstance(value, ReasonCode) else int(value)


class MaestroLink:
    """Start with :meth:`start` (from the event loop), stop with :meth:`stop`."""

    def __init__(
        self,
        config: LinkConfig,
        on_message: MessageHandler,
        *,
        on_connection: Callable[[bool], None] | None = None,
        on_live: Callable[[mqtt.MQTTMessage], None] | None = None,
    ) -> None:
        self.config = config
        self._on_message_cb = on_message
        self.on_live = on_live  # messages of the live subscriptions (never the ingest's)
        self.live_topics: set[str] = set()  # plain live subscriptions held now
        self._on_connection = on_connection
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        self._gathering = threading.local()  # .acks: a store batch's acks (gathered_acks)
        self._generation = 0
        self._connected = threading.Event()
        self._async_connected: asyncio.Event | None = None
        self._pending: dict[int, asyncio.Future[None]] = {}
        # PUBACKs that came before their publish() registered (mid -> (code, when)).
        self._early: dict[int, tuple[int, float]] = {}
        self._unsubscribing: dict[int, asyncio.Future[None]] = {}
        self._shares_left = False  # after leave_shares(): never subscribe to them again
        self.connects = 0
        self.disconnects = 0
        self.disk_full = False  # carried by the retained presence payload
        self.refused_publishes = 0
        self._untracked: set[int] = set()  # QoS 0 publishes nobody waits for
        self._lost_at: float | None = None  # monotonic time the broker link was lost
        self._client = self._make_client()

    # -- lifecycle -------------------------------------------------------------------
    def _make_client(self) -> mqtt.Client:
        cfg = self.config
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=cfg.client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
            manual_ack=True,
        )
        client.username_pw_set(cfg.username, cfg.password)
        if cfg.tls:
            context = ssl.create_default_context(cafile=cfg.ca_file)
            client.tls_set_context(context)
        will = self._state_payload(MaestroState.OFFLINE)
        client.will_set(cfg.topics.maestro(cfg.replica), will, qos=1, retain=True)
        self._backoff(client, recent=False)
        client.max_queued_messages_set(0)
        client.max_inflight_messages_set(1000)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        client.on_unsubscribe = self._on_unsubscribe
        client.on_connect_fail = self._on_connect_fail
        return client

    def _backoff(self, client: mqtt.Client, *, recent: bool) -> None:
        """Retry delays: short caps while the broker was up a moment ago."""
        cfg = self.config
        low = max(0.1, cfg.reconnect_min_s)
        high = cfg.reconnect_max_s
        if recent:
            high = min(high, cfg.reconnect_recent_max_s)
        # paho's type says int; its arithmetic and sleeps take floats.
        client.reconnect_delay_set(low, max(low, high))  # type: ignore[arg-type]

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        lost = self._lost_at
        if lost is not None and time.monotonic() - lost > RECENT_BROKER_S:
            self._lost_at = None  # once: from now on the usual, longer backoff
            log.warning("the broker is still unreachable; retrying less often")
            self._backoff(client, recent=False)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._async_connected = asyncio.Event()
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # paho leaves it untyped
        props.SessionExpiryInterval = self.config.session_expiry_s
        props.ReceiveMaximum = self.config.receive_maximum
        self._client.connect_async(
            self.config.host,
            self.config.port,
            keepalive=self.config.keepalive_s,
            clean_start=False,
            properties=props,
        )
        self._client.loop_start()

    def set_password(self, password: str) -> None:
        """Use a new broker password (rotated in the secrets manager): the connection is
        cut so that paho reconnects at once, with it; the session is kept."""
        self.config = replace(self.config, password=password)
        self._client.username_pw_set(self.config.username, password)
        sock = self._client.socket()
        if isinstance(sock, socket.socket):  # an ssl.SSLSocket too
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # paho sees a lost link and reconnects

    async def wait_connected(self) -> None:
        """Wait until the link is up (wrap in ``asyncio.timeout`` to bound it)."""
        if self._async_connected is None:
            raise LinkError("the link was not started")
        await self._async_connected.wait()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def generation(self) -> int:
        return self._generation

    def _shared(self) -> list[str]:
        return [topic for topic, _ in self.config.subscriptions if Topics.is_shared(topic)]

    async def leave_shares(self, timeout_s: float = 10.0) -> None:
        """Unsubscribe from the shared subscriptions (and stay out after reconnects).

        The broker stops giving this replica a share of new messages; what it already
        queued for this session still arrives and is handled as usual.
        """
        shared = self._shared()
        self._shares_left = True
        if not shared:
            return
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        with self._lock:  # the UNSUBACK callback takes the lock: it finds ``done`` registered
            code, mid = self._client.unsubscribe(shared)
            if code != mqtt.MQTT_ERR_SUCCESS or mid is None:
                raise LinkError(f"could not unsubscribe from {shared}: {mqtt.error_string(code)}")
            self._unsubscribing[mid] = done
        try:
            await asyncio.wait_for(done, timeout_s)
        except TimeoutError:
            raise LinkError(
                f"the broker did not confirm the unsubscribe in {timeout_s} s"
            ) from None
        finally:
            self._unsubscribing.pop(mid, None)

    def _on_unsubscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        with self._lock:
            done = self._unsubscribing.get(mid)
        if done is None or self._loop is None:
            return
        refused = [str(code) for code in reason_codes if _code(code) >= 128]
        error = LinkError(f"the broker refused the unsubscribe: {refused}") if refused else None
        self._loop.call_soon_threadsafe(_resolve, done, error)

    async def stop(self, grace_s: float = 5.0, *, end_session: bool = False) -> None:
        """Publish the replica's clean ``offline`` state, then disconnect.

        The broker keeps the session (and queues this replica's share of messages for
        it) for ``session_expiry_s``, so a restart loses nothing; ``end_session`` ends it
        at once instead (see :mod:`maestro.retire`).
        """
        clean = True
        if self.connected:
            try:
                await asyncio.wait_for(
                    self.publish(
                        self.config.topics.maestro(self.config.replica),
                        self._state_payload(MaestroState.OFFLINE),
                        retain=True,
                    ),
                    grace_s,
                )
            except (TimeoutError, LinkError) as exc:
                log.warning("could not publish the offline state: %s", exc)
                clean = False
        props = None
        if end_session:
            props = Properties(PacketTypes.DISCONNECT)  # type: ignore[no-untyped-call]  # paho leaves it untyped
            props.SessionExpiryInterval = 0
        if clean:
            self._client.disconnect(properties=props)
        else:  # let the broker publish the Will, so peers do not think we are up
            will = ReasonCode(PacketTypes.DISCONNECT, identifier=4)
            self._client.disconnect(reasoncode=will, properties=props)
        await asyncio.to_thread(self._client.loop_stop)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(LinkError("the MQTT link was stopped"))
        self._pending.clear()

    # -- publishing ------------------------------------------------------------------
    async def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        expiry_s: int | None = None,
        response_topic: str | None = None,
        correlation: bytes | None = None,
    ) -> None:
        """Publish; for QoS 1 return once the broker acknowledged it.

        While the link is down paho keeps the message and sends it after reconnecting,
        so this simply waits longer. A refusal (e.g. not authorised) raises LinkError.
        """
        props: Properties | None = None
        if expiry_s is not None or response_topic is not None or correlation is not None:
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            if expiry_s is not None:
                props.MessageExpiryInterval = max(1, int(expiry_s))
            if response_topic is not None:
                props.ResponseTopic = response_topic
            if correlation is not None:
                props.CorrelationData = correlation
        info = self._client.publish(topic, payload, qos=qos, retain=retain, properties=props)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            raise LinkError(f"cannot publish on {topic}: {mqtt.error_string(info.rc)}")
        if qos == 0:
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            early = self._early.pop(info.mid, None)
            if early is not None and time.monotonic() - early[1] > EARLY_ACK_MAX_AGE_S:
                early = None  # an old ack of an earlier publish that used this mid
            if early is None:
                self._pending[info.mid] = future
        if early is not None:
            self._settle(future, early[0], topic)
        else:
            try:
                await future
            finally:
                with self._lock:
                    self._pending.pop(info.mid, None)

    def publish_nowait(self, topic: str, payload: bytes) -> bool:
        """Publish at QoS 0 from any thread; False when not connected (nothing queued)."""
        info = self._client.publish(topic, payload, qos=0)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            return False
        with self._lock:  # paho may already have reported it sent (see _on_publish)
            if self._early.pop(info.mid, None) is None:
                self._untracked.add(info.mid)
        return True

    def _settle(self, future: asyncio.Future[None], code: int, topic: str = "") -> None:
        if future.done():
            return
        if code >= 128:
            self.refused_publishes += 1
            future.set_exception(
                LinkError(
                    f"the broker refused the publish{' on ' + topic if topic else ''} "
                    f"(reason code {code})"
                )
            )
        else:
            future.set_result(None)

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        code = _code(reason_code)
        with self._lock:
            if mid in self._untracked:
                self._untracked.discard(mid)
                return
            future = self._pending.pop(mid, None)
            if future is None:
                now = time.monotonic()
                self._early[mid] = (code, now)
                while self._early:  # QoS 0 and abandoned publishes leave entries behind
                    oldest = next(iter(self._early))
                    if now - self._early[oldest][1] <= EARLY_ACK_MAX_AGE_S:
                        break
                    del self._early[oldest]
                return
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._settle, future, code)

    # -- receiving -------------------------------------------------------------------
    def ack(self, generation: int, mid: int) -> None:
        """Acknowledge a QoS 1 message of connection ``generation`` (thread-safe); inside
        :meth:`gathered_acks` on this thread, at the end of that block."""
        gathered: list[tuple[int, int]] | None = getattr(self._gathering, "acks", None)
        if gathered is not None:
            gathered.append((generation, mid))
            return
        with self._lock:
            if generation != self._generation or not self._connected.is_set():
                return  # the broker redelivers it on the new connection
            self._client.ack(mid, 1)

    @contextlib.contextmanager
    def gathered_acks(self) -> Iterator[None]:
        """The acks this thread makes inside the block go out as one write at its end
        (a store batch's: :mod:`maestro.pubacks`)."""
        self._gathering.acks = []
        try:
            yield
        finally:
            gathered: list[tuple[int, int]] = self._gathering.acks
            self._gathering.acks = None
            with self._lock:
                if self._connected.is_set():
                    current = self._generation
                    queue_pubacks(self._client, [m for g, m in gathered if g == current])

    # -- live subscriptions (event loop) ------------------------------------------------
    def follow_live(self, topic: str) -> None:
        """Hold a plain QoS 0 subscription to ``topic`` (again after every reconnect)."""
        with self._lock:
            self.live_topics.add(topic)
        if self.connected:
            self._subscribe_live(self._client, [topic])

    def unfollow_live(self, topic: str) -> None:
        """Drop a live subscription (no wait for the broker's UNSUBACK)."""
        with self._lock:
            self.live_topics.discard(topic)
        if self.connected:
            self._client.unsubscribe(topic)

    def _subscribe_live(self, client: mqtt.Client, topics: list[str]) -> None:
        props = Properties(PacketTypes.SUBSCRIBE)  # type: ignore[no-untyped-call]  # paho leaves it untyped
        props.SubscriptionIdentifier = LIVE_SUBSCRIPTION_ID
        client.subscribe([(topic, 0) for topic in topics], properties=props)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        props = message.properties
        ids = getattr(props, "SubscriptionIdentifier", None) if props is not None else None
        if ids and LIVE_SUBSCRIPTION_ID in ids:
            try:
                if self.on_live is not None:
                    self.on_live(message)
            except Exception:
                log.exception("live handler failed on %s", message.topic)
            return  # QoS 0, nothing to acknowledge; never the ingest's
        try:
            self._on_message_cb(message, self._generation)
        except Exception:  # one bad message must never stop the network thread
            log.exception("message handler failed on %s", message.topic)
            if message.qos == 1:
                self.ack(self._generation, message.mid)

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        code = _code(reason_code)
        if code >= 128:
            log.error("broker refused the maestro connection: %s (code %s)", reason_code, code)
            return
        with self._lock:
            self._generation += 1
        self.connects += 1
        cfg = self.config
        log.info(
            "connected to mqtt://%s:%s as %s (session present: %s)",
            cfg.host,
            cfg.port,
            cfg.client_id,
            flags.session_present,
        )
        with self._lock:
            self._untracked.clear()  # QoS 0 packets of the old connection are gone
        # Subscribe first: the broker handles our packets in order, so by the time agents
        # see this "online" (and re-send what was not confirmed) the subscriptions exist.
        left = set(self._shared()) if self._shares_left else set()
        client.subscribe([(topic, qos) for topic, qos in cfg.subscriptions if topic not in left])
        with self._lock:
            live = sorted(self.live_topics)
        if live:
            self._subscribe_live(client, live)
        client.publish(
            cfg.topics.maestro(cfg.replica),
            self._state_payload(MaestroState.ONLINE),
            qos=1,
            retain=True,
        )
        self._connected.set()
        self._notify(True)

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if self._connected.is_set():
            self.disconnects += 1
            log.warning("disconnected from the broker: %s", reason_code)
            self._lost_at = time.monotonic()
            self._backoff(client, recent=True)
        self._connected.clear()
        self._notify(False)

    def _notify(self, up: bool) -> None:
        loop = self._loop
        if loop is None:
            return
        loop.call_soon_threadsafe(self._set_async_state, up)

    def _set_async_state(self, up: bool) -> None:
        if self._async_connected is not None:
            if up:
                self._async_connected.set()
            else:
                self._async_connected.clear()
        if self._on_connection is not None:
            self._on_connection(up)

    def _state_payload(self, state: MaestroState) -> bytes:
        return encode(
            MaestroStatus(
                replica=self.config.replica,
                state=state,
                ts=time.time(),
                version=__version__,
                disk_full=self.disk_full and state is MaestroState.ONLINE,
            )
        )

    def set_disk_full(self, full: bool) -> None:
        """Say on the retained ``maestro/<replica>`` whether this replica's data disk is
        full (event loop or any thread; sent again at every connect)."""
        if full == self.disk_full:
            return
        self.disk_full = full
        if self._connected.is_set():
            self._client.publish(
                self.config.topics.maestro(self.config.replica),
                self._state_payload(MaestroState.ONLINE),
                qos=1,
                retain=True,
            )


def _resolve(future: asyncio.Future[None], error: Exception | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)
