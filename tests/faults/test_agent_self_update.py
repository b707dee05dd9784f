"""Self-update under faults (agent side): the broker restarts in the middle of a fetch,
and the agent's state disk is too full to hold the release."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest

from arete.payloads import ReplyState
from tests.faults.conftest import Reliability
from tests.fixtures.agent import ReadyAgent, states
from tests.fixtures.broker import Broker
from tests.fixtures.faults import SmallDisk
from tests.fixtures.mqtt import MqttProbe
from tests.fixtures.procs import wait_for
from tests.fixtures.releases import (
    KEY,
    NEXT,
    FakeUpdater,
    build_release,
    publish,
    update_env,
    wheels,
)

pytestmark = pytest.mark.faults

OK = [ReplyState.ACCEPTED, ReplyState.RUNNING, ReplyState.OK]


def test_a_broker_restart_mid_fetch_does_not_lose_the_update(
    ready_agent: ReadyAgent,
    broker: Broker,
    mqtt: Callable[..., MqttProbe],
    reliability: Reliability,
) -> None:
    agent, commander = ready_agent(env=update_env(ARETE_AGENT_UPDATE__FETCH_TIMEOUT_S="60"))
    release = build_release(KEY, NEXT, wheels(NEXT))
    last = release.chunks.pop()  # the maestro has not finished publishing it yet
    publish(commander, broker, release)
    updater = FakeUpdater(agent.state_dir)
    try:
        cmd = commander.command("update", {"version": NEXT})
        correlation = commander.send(cmd)
        topic = broker.topics.reply(agent.agent_id)
        commander.probe.wait_for_message(
            lambda m: m.topic == topic and b'"running"' in m.payload, 10
        )
        time.sleep(1.5)  # manifest verified, chunks being received
        broker.restart()
        restarted = time.monotonic()
        wait_for(lambda: commander.probe.connected, 15, "the commander back on the broker")
        maestro = mqtt("maestro", broker.maestro_password)
        chunk_topic = broker.topics.release_chunk(NEXT, last[0], last[1])
        assert maestro.publish(chunk_topic, last[2], qos=1, retain=True) in (0, 16)
        replies = commander.wait_final(correlation, 45)
        took = time.monotonic() - restarted
    finally:
        updater.close()
    assert states(replies) == OK, replies[-1].error
    assert replies[-1].result["state"] == "handed_over"
    spooled = agent.state_dir / "updates" / NEXT
    for name, data in release.artifacts.items():
        assert (spooled / name).read_bytes() == data
    reliability.record(
        "broker restart in the middle of an update's fetch",
        detection_s=took,
        notes="the agent subscribes again on reconnect; the retained release is whole again "
        "and the update is handed over (s: broker restart -> ok reply)",
    )


def test_a_state_disk_too_full_for_the_release_fails_cleanly_then_succeeds(
    ready_agent: ReadyAgent,
    broker: Broker,
    small_disk: Callable[..., SmallDisk],
    reliability: Reliability,
) -> None:
    disk = small_disk("4m", name="agent-state")
    env = update_env(ARETE_AGENT_STATE_DIR=str(disk.path))
    _, commander = ready_agent(env=env)
    release = build_release(KEY, NEXT, wheels(NEXT))  # about 270 KiB of wheels
    publish(commander, broker, release)
    disk.fill(leave=128 * 1024)
    started = time.monotonic()
    replies = commander.run("update", {"version": NEXT}, timeout=30)
    took = time.monotonic() - started
    assert replies[-1].state is ReplyState.FAILED
    assert replies[-1].error is not None
    assert replies[-1].error.code == "install_failed"
    assert "No space left" in replies[-1].error.message
    updates = disk.path / "updates"  # the agent's state dir is the small disk
    assert [p.name for p in updates.iterdir()] == [], "no half-written release, no request"
    disk.free()
    updater = FakeUpdater(disk.path)
    try:
        again = commander.run("update", {"version": NEXT}, timeout=30)
    finally:
        updater.close()
    assert states(again) == OK, again[-1].error
    assert json.loads(updater.requests[0])["version"] == NEXT
    reliability.record(
        "agent state disk too full for a release",
        detection_s=took,
        notes="install_failed (No space left), nothing half-written left behind; the same "
        "update succeeds once there is room (s: command -> failed reply)",
    )
