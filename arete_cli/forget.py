"""Forgetting a removed agent on the broker: its retained messages are cleared.

A removed agent's last status stays retained on the broker, so every MQTT client that
subscribes later (a phone app, Home Assistant, a new maestro) would still be told about
it, as offline forever. ``arete agents remove`` therefore clears, as the maestro account:

- the agent's retained status: an empty retained status tells every running maestro
  that the agent was removed (it forgets the agent, resolves its alerts without a page
  and drops its Home Assistant entities, see ``maestro.registry``), so it is published
  even when the broker retained none (it lost its store); and its retained alert state;
- its Home Assistant discovery configs, if any are retained (discovery on), so the
  entities go even when no maestro is running.

Only retained messages that exist are cleared (nothing is published for a discovery
that was never on). The broker drops a still-connected agent when it reloads its
accounts; should it publish that agent's Will (a retained ``offline``) it does so at
the reload, before this runs, but the status is cleared only once it no longer says
``online`` (or after :data:`WILL_WAIT_S`); a Will that still lands after the clear (the
broker was slow to reload) is cleared again within :data:`LATE_WILL_S`, so it cannot
bring the agent back to a maestro that starts later (running maestros ignore it).
"""

from __future__ import annotations

import ipaddress
import secrets
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from arete import clientids
from arete.errors import PayloadError
from arete.homeassistant import DEFAULT_PREFIX, config_topics
from arete.payloads import AgentState, decode_status
from arete.topics import Topics
from mosquitto.acl import MAESTRO
from mosquitto.errors import BrokerError
from mosquitto.layout import Layout
from mosquitto.state import load_info, running_pid

CONNECT_TIMEOUT_S: Final = 10.0
# How long a dropped agent's Will may take (Mosquitto 2.0.11 sends none when it drops
# a client whose account is gone, so this is only a guard against a late one).
WILL_WAIT_S: Final = 2.0
PUBLISH_TIMEOUT_S: Final = 10.0
LATE_WILL_S: Final = 1.0  # how long a Will landing after the clear is watched for


class ForgetError(BrokerError):
    """The broker could not be reached or refused the maestro account."""


def retained_topics(topics: Topics, agent_id: str) -> list[str]:
    """Every topic on which something about ``agent_id`` may be retained."""
    return [
        topics.status(agent_id),
        topics.alerts(agent_id),
        *config_topics(DEFAULT_PREFIX, agent_id),
    ]


def is_online(payload: bytes) -> bool:
    """Whether a status payload says the agent is connected (undecodable: no)."""
    try:
        return decode_status(payload).state is AgentState.ONLINE
    except PayloadError:
        return False


@dataclass(frozen=True, slots=True)
class Broker:
    host: str
    port: int
    root: str
    password: str
    ca_file: Path | None = None  # set: the port speaks TLS


class _Session:
    """A short-lived maestro connection that records the newest payload per topic."""

    def __init__(self, broker: Broker) -> None:
        self.payloads: dict[str, bytes] = {}
        self.changed = threading.Condition()
        self._connected = threading.Event()
        self._refused: list[str] = []
        self._subscribed: dict[int, threading.Event] = {}
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=clientids.client_id(MAESTRO, "agents-remove", secrets.token_hex(4)),
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        client.username_pw_set(MAESTRO, broker.password)
        if broker.ca_file is not None:
            client.tls_set_context(ssl.create_default_context(cafile=str(broker.ca_file)))
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        self.client = client
        self.broker = broker

    def _on_connect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            self._refused.append(str(reason))
        self._connected.set()

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, mid: int, *_rest: Any) -> None:
        self._subscribed.setdefault(mid, threading.Event()).set()

    def _on_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        with self.changed:
            self.payloads[message.topic] = bytes(message.payload)
            self.changed.notify_all()

    def connect(self) -> None:
        where = f"{self.broker.host}:{self.broker.port}"
        try:
            self.client.connect(self.broker.host, self.broker.port, keepalive=30)
        except OSError as exc:
            raise ForgetError(f"cannot reach the broker at {where}: {exc}") from None
        self.client.loop_start()
        if not self._connected.wait(CONNECT_TIMEOUT_S) or self._refused:
            why = self._refused[0] if self._refused else "no answer"
            raise ForgetError(f"the broker at {where} did not let the maestro account in: {why}")

    def subscribe(self, topics: list[str]) -> None:
        """Subscribe and wait for the broker's answer."""
        _, mid = self.client.subscribe([(t, 1) for t in topics])
        if mid is None:
            raise ForgetError("the broker connection was lost")
        if not self._subscribed.setdefault(mid, threading.Event()).wait(CONNECT_TIMEOUT_S):
            raise ForgetError("the broker did not confirm a subscription")

    def clear(self, topics: list[str]) -> None:
        """Publish an empty retained message on each topic; wait for the broker's acks."""
        try:
            sent = [self.client.publish(t, b"", qos=1, retain=True) for t in topics]
            for info in sent:
                info.wait_for_publish(PUBLISH_TIMEOUT_S)
                if not info.is_published():
                    raise ForgetError("the broker did not confirm clearing a retained message")
        except (RuntimeError, ValueError) as exc:  # paho: the connection was lost
            raise ForgetError(f"the broker connection failed: {exc}") from None

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def clear_retained(broker: Broker, agent_id: str, *, removed: bool = True) -> list[str]:
    """Clear what the broker retains about ``agent_id``; the topics that were retained.
    ``removed``: the agent's account was just removed, so its status is cleared even if
    none is retained (the maestros learn of the removal from it)."""
    topics = retained_topics(Topics(broker.root), agent_id)
    status = topics[0]
    session = _Session(broker)
    try:
        session.connect()
        session.subscribe(topics)
        # The broker sends a subscription's retained messages before answering the next
        # SUBSCRIBE: once this second one is confirmed, every retained message is in.
        session.subscribe([status])
        with session.changed:
            # A connected agent is being dropped: its Will's "offline" comes first.
            session.changed.wait_for(
                lambda: not is_online(session.payloads.get(status, b"")), WILL_WAIT_S
            )
            retained = [t for t in topics if session.payloads.get(t)]
            session.payloads[status] = b""  # what the broker holds from now on
        cleared = retained if not removed or status in retained else [status, *retained]
        session.clear(cleared)
        with session.changed:  # a late Will: the broker dropped the agent only now
            late = session.changed.wait_for(
                lambda: bool(session.payloads.get(status)), LATE_WILL_S if cleared else 0
            )
        if late:
            session.clear([status])
        return retained
    finally:
        session.close()


def _local(host: str) -> str:
    """Where this machine reaches a broker bound to ``host`` (a wildcard: loopback)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if address.is_unspecified:
        return "::1" if address.version == 6 else "127.0.0.1"
    return host


def forget_agent(layout: Layout, agent_id: str, *, removed: bool = True) -> list[str] | None:
    """Clear ``agent_id``'s retained messages on this data dir's running broker: the
    topics that were retained, or None when the broker is not running (nothing can be
    cleared). ``removed``: see :func:`clear_retained`."""
    info = load_info(layout)
    if running_pid(layout, info) is None:
        return None
    secret = layout.secret_file(MAESTRO)
    try:
        password = secret.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeError) as exc:
        raise ForgetError(f"cannot read the maestro's broker password {secret}: {exc}") from None
    broker = Broker(_local(info.host), info.port, info.root, password)
    return clear_retained(broker, agent_id, removed=removed)
