"""Replies and acknowledgements written at the same instant over TLS.

An agent answers a command from its own thread while its network thread acknowledges
the command (PUBACK) and keeps sending samples. paho writes a message at once from the
thread that publishes unless a network loop of its own runs, so two threads could write
the same TLS connection at the same time: OpenSSL then sends garbage, the broker closes
the connection, and the replies in flight are lost. On the deployed fleet (TLS on every
agent) this lost the replies of ``restart`` and ``stop`` commands (issue 12).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from arete.payloads import AgentState, ReplyState
from tests.fixtures.agent import AgentProc, Commander, statuses, wait_status
from tests.fixtures.broker import Broker
from tests.fixtures.mqtt import MqttProbe

BURST = 120


def test_a_burst_of_commands_over_tls_never_drops_the_agents_connection(
    tls_broker: Broker,
    mqtt: Callable[..., MqttProbe],
    start_agent: Callable[..., AgentProc],
    reliability: Any,
) -> None:
    config = tls_broker.add_agent("tls-burst", tls=True)
    topics = tls_broker.topics
    watcher = mqtt("viewer", tls_broker.viewer_password, port=tls_broker.port)
    watcher.subscribe(topics.status("tls-burst"))
    agent = start_agent("tls-burst", config=config, env={"ARETE_AGENT_INTERVAL_S": "0.1"})
    first = wait_status(
        watcher, topics, "tls-burst", lambda s: s.state is AgentState.ONLINE, timeout=20
    )
    probe = mqtt("maestro", tls_broker.maestro_password, port=tls_broker.port)
    probe.subscribe(topics.reply("tls-burst"))
    commander = Commander(probe, topics, "tls-burst")
    started = time.monotonic()
    sent = [
        commander.send(commander.command("metrics"), correlation=uuid.uuid4().bytes)
        for _ in range(BURST)
    ]
    finals: dict[bytes, ReplyState] = {}
    deadline = time.monotonic() + 90
    while len(finals) < BURST and time.monotonic() < deadline:
        for correlation in sent:
            if correlation not in finals:
                done = [r.state for r in commander.replies(correlation) if r.state.is_final]
                if done:
                    finals[correlation] = done[-1]
        time.sleep(0.2)
    took_s = time.monotonic() - started
    # Every command answered ok on the first connection: no reconnect, no lost reply.
    assert len(finals) == BURST, f"{BURST - len(finals)} commands got no final reply"
    assert set(finals.values()) == {ReplyState.OK}
    epochs = {s.epoch for s in statuses(watcher, topics, "tls-burst")}
    assert epochs == {first.epoch}, f"the agent reconnected: epochs {sorted(epochs)}"
    assert "mqtt disconnected" not in agent.output()
    reliability.record(
        f"{BURST} commands at once to an agent on TLS sampling every 0.1 s",
        lost=0,
        duplicates=0,
        notes=f"all ok on one connection in {took_s:.1f} s (replies and acks from two threads)",
    )
