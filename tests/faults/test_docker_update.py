"""docker_update under faults: the agent is killed -9 in the middle of an update (podman's
Docker API, docker-registry on loopback, a real agent and broker)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from arete.payloads import AgentState, ReplyState
from tests.faults.conftest import Reliability
from tests.fixtures.agent import AgentProc, Commander, states, wait_status
from tests.fixtures.broker import Broker
from tests.fixtures.procs import wait_for
from tests.fixtures.registry import LocalRegistry

pytestmark = pytest.mark.faults

OK = [ReplyState.ACCEPTED, ReplyState.RUNNING, ReplyState.OK]


def test_an_agent_killed_mid_update_restores_the_container_at_the_next_update(
    broker: Broker,
    start_agent: Callable[..., AgentProc],
    commander_for: Callable[..., Commander],
    registry: LocalRegistry,
    reliability: Reliability,
) -> None:
    env = {"ARETE_AGENT_DOCKER__URL": registry.engine.url}
    commander = commander_for("a1")
    commander.probe.subscribe(broker.topics.status("a1"))
    first = start_agent("a1", env=env)
    online = wait_status(
        commander.probe, broker.topics, "a1", lambda s: s.state is AgentState.ONLINE
    )
    with registry.app() as (name, tag, v1):
        v2 = registry.push(tag, version="2")
        # A long trial, so the kill lands while the old container is parked.
        commander.send(commander.command("docker_update", {"container": name, "stable_s": 600}))
        wait_for(
            lambda: registry.exists(f"{name}.arete-old") and registry.exists(name),
            30,
            "the new container on trial",
            step=0.2,
        )
        first.kill9()
        assert registry.info(f"{name}.arete-old")["State"]["Running"] is False
        assert registry.info(name)["Image"] == v2, "an unproven container holds the name"

        killed = time.monotonic()
        start_agent("a1", env=env, config=first.config, state_dir=first.state_dir)
        wait_status(
            commander.probe,
            broker.topics,
            "a1",
            lambda s: s.state is AgentState.ONLINE and s.epoch > online.epoch,
            timeout=30,
        )
        replies = commander.run("docker_update", {"container": name, "stable_s": 1}, timeout=90)
        took = time.monotonic() - killed
        assert states(replies) == OK, replies[-1].error
        result = replies[-1].result
        assert result["message"].startswith(f"restored {name} from {name}.arete-old")
        assert result["state"] == "updated"
        assert registry.info(name)["Image"] == v2
        assert registry.version_in(name) == "2"
        assert not registry.exists(f"{name}.arete-old")
        assert v1 != v2
    reliability.record(
        "agent kill -9 during a docker_update's trial, agent restarted, docker_update again",
        detection_s=took,
        notes="the next docker_update removed the unproven container, restored the parked "
        "one, then updated it for real; no container lost, none left behind",
    )
