"""Retiring a replica for good: take what the broker kept for it, then end its session.

A stopped replica keeps its broker session (``mqtt.session_expiry_s``, a day by
default) so that a restart loses nothing: while it is down the broker goes on queueing
its share of the shared metrics subscription for it, and past ``max_queued_messages``
drops them. That is right for a restart and wrong for a replica that is gone for good.

``arete maestro retire --replica NAME`` runs that replica once more, leaves the shared
subscriptions (the broker gives its share to the other replicas from then on), stores
the backlog its session held, waits until nothing more arrives for ``quiet_s``, and
disconnects with a session expiry of 0, so the broker forgets the session.

It refuses when no other replica is online: with nobody left in the share group, the
broker would discard every agent's metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from arete import clientids
from arete.errors import PayloadError
from arete.payloads import MaestroState, decode_maestro_status
from arete.topics import Topics
from maestro.app import Maestro
from maestro.errors import MaestroError
from maestro.settings import BrokerEndpoint, MaestroSettings, resolve_broker

log = logging.getLogger("arete.maestro.retire")

CONNECT_TIMEOUT_S = 30.0
PEERS_WAIT_S = 2.0  # the retained states of the other replicas arrive right after connect
POLL_S = 0.1


@dataclass(frozen=True, slots=True)
class Retired:
    replica: str
    samples: int  # stored during the retirement: the session's backlog, mostly
    others: tuple[str, ...]  # the online replicas that take over


async def retire(
    settings: MaestroSettings, *, quiet_s: float = 2.0, timeout_s: float = 300.0
) -> Retired:
    """Drain and end replica ``settings.replica``'s session; raise MaestroError if unsafe."""
    broker = resolve_broker(settings)
    state = await asyncio.to_thread(_retained_state, settings, broker)
    if state is MaestroState.ONLINE:
        raise MaestroError(
            f"replica {settings.replica!r} is running (its retained state is online): stop it "
            "first; two clients with one session would take it from each other"
        )
    async with Maestro.running(settings) as maestro:
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                await maestro.link.wait_connected()
        except TimeoutError:
            raise MaestroError(f"could not reach the broker in {CONNECT_TIMEOUT_S:.0f} s") from None
        others = await _other_replicas(maestro)
        if not others:
            raise MaestroError(
                f"no other maestro replica is online: retiring {settings.replica!r} would "
                "leave the agents' metrics with no subscriber (the broker discards them). "
                "Start another replica first; to restart this one, just stop and start it."
            )
        await maestro.link.leave_shares()
        log.info("left the shared subscriptions; taking the backlog the broker kept")
        samples = await _drain(maestro, quiet_s, timeout_s)
        maestro.end_session_on_stop = True
    log.info(
        "replica %s retired: %d samples from its backlog stored in %s; %s take all metrics",
        settings.replica,
        samples,
        settings.database,
        ", ".join(others),
    )
    return Retired(settings.replica, samples, others)


def _retained_state(settings: MaestroSettings, broker: BrokerEndpoint) -> MaestroState | None:
    """The replica's retained state on the broker (None: none), read by a short client."""
    topic = Topics(broker.root).maestro(settings.replica)
    got = threading.Event()
    states: list[MaestroState] = []

    def on_message(client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with contextlib.suppress(PayloadError):
            states.append(decode_maestro_status(message.payload).state)
        got.set()

    def on_connect(client: mqtt.Client, userdata: Any, *rest: Any) -> None:
        client.subscribe(topic, qos=1)

    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=clientids.client_id(broker.username, settings.replica, "retire-check"),
        protocol=MQTTProtocolVersion.MQTTv5,
    )
    client.username_pw_set(broker.username, broker.password)
    if broker.tls:
        client.tls_set_context(ssl.create_default_context(cafile=broker.ca_file))
    client.on_connect = on_connect
    client.on_message = on_message
    try:
        client.connect(broker.host, broker.port, keepalive=10)
    except OSError as exc:
        raise MaestroError(
            f"cannot reach the broker at {broker.host}:{broker.port}: {exc}"
        ) from None
    client.loop_start()
    try:
        got.wait(PEERS_WAIT_S)  # a retained message comes at once after SUBACK
    finally:
        client.disconnect()
        client.loop_stop()
    return states[0] if states else None


async def _other_replicas(maestro: Maestro) -> tuple[str, ...]:
    me = maestro.settings.replica
    deadline = time.monotonic() + PEERS_WAIT_S
    others: list[str] = []
    while time.monotonic() < deadline:
        others = [r for r in maestro.registry.online_replicas() if r != me]
        if others:
            break
        await asyncio.sleep(POLL_S)
    return tuple(others)


async def _drain(maestro: Maestro, quiet_s: float, timeout_s: float) -> int:
    """Wait until no sample arrived for ``quiet_s``; the samples this run took in all."""
    ingest = maestro.ingest
    last = ingest.samples
    began = quiet_since = time.monotonic()
    while True:
        await asyncio.sleep(POLL_S)
        now = time.monotonic()
        if ingest.samples != last:
            last, quiet_since = ingest.samples, now
        elif now - quiet_since >= quiet_s:
            return last
        if now - began > timeout_s:
            raise MaestroError(
                f"samples were still arriving after {timeout_s:.0f} s; the session was kept "
                "(nothing lost): run retire again"
            )
