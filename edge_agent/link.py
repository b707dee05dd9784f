"""The agent's MQTT link: paho in its own network thread, one client per connection.

Why not paho's own reconnect loop: every connection needs a new ``epoch`` in both the
online status and the Last Will, and reconnects need jitter. So each attempt builds a
fresh client (fresh Will, fresh message ids, no stale in-flight queue) and the thread
waits with :class:`Backoff` between attempts. Events go to the asyncio loop through
``on_event`` (called from the network thread; it must be thread-safe).
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from arete.backoff import Backoff
from edge_agent.kicks import KickWatch

log = logging.getLogger("arete.agent.link")

STABLE_CONNECTION_S = 5.0  # a connection that lasted this long resets the backoff
SESSION_TAKEN_OVER = 142  # MQTT 5 reason code: another client connected with our client id


@dataclass(frozen=True, slots=True)
class Connected:
    generation: int
    epoch: int
    birth_mid: int = 0  # the online status's message id: its PUBACK says it is retained


@dataclass(frozen=True, slots=True)
class Disconnected:
    generation: int
    reason: str


@dataclass(frozen=True, slots=True)
class Received:
    topic: str
    payload: bytes
    correlation: bytes | None


@dataclass(frozen=True, slots=True)
class Published:
    generation: int
    mid: int
    ok: bool
    reason: str


LinkEvent = Connected | Disconnected | Received | Published


@dataclass(frozen=True, slots=True)
class LinkConfig:
    client_id: str
    host: str
    port: int
    username: str
    password: str | None
    keepalive_s: int
    tls: bool
    ca_file: str | None
    reconnect_min_s: float
    reconnect_max_s: float
    session_expiry_s: int
    subscriptions: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Retained:
    """A retained QoS 1 message built per connection (online status, Last Will)."""

    topic: str
    payload: bytes


def _written_by_the_network_thread(client: mqtt.Client, userdata: Any, sock: Any) -> None:
    """paho's write-wanted hook: nothing to do, client.loop() writes what is queued."""


def _properties(packet_type: int) -> Properties:
    return Properties(packet_type)  # type: ignore[no-untyped-call]  # paho leaves it untyped


class MqttLink:
    def __init__(
        self,
        config: LinkConfig,
        *,
        next_epoch: Callable[[], int],
        will: Callable[[int], Retained],
        birth: Callable[[int], Retained],
        on_event: Callable[[LinkEvent], None],
    ) -> None:
        self._config = config
        self._next_epoch = next_epoch
        self._will = will
        self._birth = birth
        self._on_event = on_event
        # Re-entrant: paho calls on_publish from inside publish() for QoS 0 messages.
        self._lock = threading.RLock()
        self._client: mqtt.Client | None = None
        self._generation = 0
        self._connected = False
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="arete-mqtt", daemon=True)
        self._backoff = Backoff(config.reconnect_min_s, config.reconnect_max_s)
        self._taken_over = False
        self._kicks = KickWatch()  # closed right after connecting, again and again
        self._extra: set[str] = set()  # subscriptions made at run time (subscribe())

    # -- called from the agent's thread ----------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    @property
    def connected(self) -> bool:
        return self._connected

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int,
        retain: bool = False,
        correlation: bytes | None = None,
    ) -> tuple[int, int] | None:
        """Send now; returns ``(generation, mid)`` or None when not connected."""
        with self._lock:
            client = self._client
            if client is None or not self._connected:
                return None
            properties = None
            if correlation is not None:
                properties = _properties(PacketTypes.PUBLISH)
                properties.CorrelationData = correlation
            info = client.publish(topic, payload, qos=qos, retain=retain, properties=properties)
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return None
            return self._generation, info.mid

    def subscribe(self, topic_filter: str) -> bool:
        """Subscribe (QoS 1) now and after every reconnect, until :meth:`unsubscribe`.

        False when not connected (it is sent at the next connection)."""
        with self._lock:
            self._extra.add(topic_filter)
            client = self._client
            # paho's own state, not ``_connected``: on_connect may be taking its list
            # of subscriptions right now, on the network thread.
            if client is None or not client.is_connected():
                return False
            rc, _ = client.subscribe(topic_filter, qos=1)
            return bool(rc == MQTTErrorCode.MQTT_ERR_SUCCESS)

    def unsubscribe(self, topic_filter: str) -> None:
        with self._lock:
            self._extra.discard(topic_filter)
            client = self._client
            if client is not None and client.is_connected():
                client.unsubscribe(topic_filter)

    def close(self, timeout: float = 5.0) -> None:
        """Disconnect cleanly (DISCONNECT reason 0: the broker drops the Will) and join."""
        self._stopping.set()
        with self._lock:
            client = self._client
            if client is not None:
                # Run-time subscriptions (a release being fetched) must not outlive this
                # process in the broker's copy of the session.
                for topic_filter in self._extra:
                    client.unsubscribe(topic_filter)
                client.disconnect()
        self._thread.join(timeout)

    # -- network thread ----------------------------------------------------------------
    def _run(self) -> None:
        while not self._stopping.is_set():
            started = time.monotonic()
            was_connected = self._connect_once()
            if self._stopping.is_set():
                break
            now = time.monotonic()
            if not was_connected:
                self._kicks.connect_failed()
            elif self._kicks.lost(now):
                log.error(
                    "another client uses this agent's identity: the broker closed "
                    f"{self._kicks.losses} connections in a row right after accepting them; "
                    "is this agent's config running on two machines? reconnecting only "
                    f"every {self._config.reconnect_max_s:g} s",
                    extra={"kv": {"client_id": self._config.client_id}},
                )
            if was_connected and now - started >= STABLE_CONNECTION_S:
                self._backoff.reset()
            delay = self._backoff.next()
            if self._taken_over or self._kicks.suspected(now):
                # Two agents share one id: don't let them kick each other off in a loop.
                self._taken_over = False
                delay = self._config.reconnect_max_s
            log.info("mqtt reconnect scheduled", extra={"kv": {"in_s": round(delay, 2)}})
            self._stopping.wait(delay)

    def _connect_once(self) -> bool:
        cfg = self._config
        epoch = self._next_epoch()
        client = self._new_client(epoch)
        with self._lock:
            self._generation += 1
            generation = self._generation
            self._client = client
        client.user_data_set(generation)  # callbacks of this client report its generation
        props = _properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = cfg.session_expiry_s
        try:
            client.connect(cfg.host, cfg.port, cfg.keepalive_s, clean_start=False, properties=props)
        except (OSError, ssl.SSLError, ValueError) as exc:
            log.warning(
                "mqtt connect failed",
                extra={"kv": {"host": cfg.host, "port": cfg.port, "error": str(exc)}},
            )
            self._drop_client(client)
            return False
        ever_connected = False
        while not self._stopping.is_set() or client.is_connected():
            rc = client.loop(timeout=1.0)
            ever_connected = ever_connected or self._connected
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                break
        was_connected = self._connected
        with self._lock:
            self._connected = False
        self._drop_client(client)
        if was_connected:
            self._on_event(Disconnected(generation, f"connection closed ({rc.name})"))
        return ever_connected

    def _drop_client(self, client: mqtt.Client) -> None:
        with self._lock:
            if self._client is client:
                self._client = None

    def _new_client(self, epoch: int) -> mqtt.Client:
        cfg = self._config
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=cfg.client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        client.username_pw_set(cfg.username, cfg.password)
        if cfg.tls:
            client.tls_set(ca_certs=cfg.ca_file, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        will = self._will(epoch)
        client.will_set(will.topic, will.payload, qos=1, retain=True)
        client.max_inflight_messages_set(100)
        client.on_connect = self._make_on_connect(epoch)
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        # Only the network thread may write the socket. Without a callback here paho
        # writes a message at once from whichever thread publishes it (the agent's loop,
        # for replies and samples) while the network thread writes acknowledgements: two
        # threads writing one TLS connection corrupt it and the broker drops it (issue
        # 12: lost replies to restart/stop). With it, publish() only queues the message
        # and wakes client.loop(), which writes it (tests/faults/test_agent_tls_writes.py).
        client.on_socket_register_write = _written_by_the_network_thread
        return client

    def _make_on_connect(self, epoch: int) -> Callable[..., None]:
        def on_connect(
            client: mqtt.Client,
            userdata: Any,
            flags: Any,
            reason_code: ReasonCode,
            properties: Properties | None,
        ) -> None:
            if reason_code.is_failure:
                log.error(
                    "mqtt connection refused",
                    extra={"kv": {"reason": str(reason_code), "username": self._config.username}},
                )
                client.disconnect()
                return
            # Subscribe and announce first, from this thread, so that no command that
            # arrives before the agent's loop runs is missed and "online" goes out first.
            with self._lock:
                extra = sorted(self._extra)
            for topic in (*self._config.subscriptions, *extra):
                client.subscribe(topic, qos=1)
            birth = self._birth(epoch)
            info = client.publish(birth.topic, birth.payload, qos=1, retain=True)
            with self._lock:
                self._connected = True
                generation = self._generation
            log.info(
                "mqtt connected",
                extra={
                    "kv": {"host": self._config.host, "port": self._config.port, "epoch": epoch}
                },
            )
            self._on_event(Connected(generation, epoch, info.mid))

        return on_connect

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: Any,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.value == SESSION_TAKEN_OVER:
            self._taken_over = True
            log.error(
                "another agent connected with this agent's id; is it running twice?",
                extra={"kv": {"client_id": self._config.client_id}},
            )
        elif not self._stopping.is_set():
            log.warning("mqtt disconnected", extra={"kv": {"reason": str(reason_code)}})

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        correlation = None
        props = message.properties
        if props is not None and hasattr(props, "CorrelationData"):
            correlation = bytes(props.CorrelationData)
        self._on_event(Received(message.topic, bytes(message.payload), correlation))

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._on_event(Published(int(userdata), mid, not reason_code.is_failure, str(reason_code)))
