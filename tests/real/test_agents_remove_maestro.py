"""``arete agents remove`` of a connected agent, as the maestro sees it (real broker,
agents, maestro): the agent leaves the fleet within seconds without a page, and neither a
maestro restart nor a broker reconnect brings it back, nor its Home Assistant entities."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import websockets

from arete.topics import Kind
from maestro.app import Maestro
from tests.fixtures.agent import AgentProc
from tests.fixtures.api import ApiServer
from tests.fixtures.broker import Broker
from tests.fixtures.chat_servers import FakeDiscord
from tests.fixtures.maestro import MaestroThread
from tests.fixtures.mqtt import MqttProbe
from tests.fixtures.procs import wait_for
from tests.real.test_agents_remove import CONFIGS_PER_AGENT, HA, retained_now
from web_api.auth.roles import Role

QUICK_ALERTS = {"group_wait_s": 0.3}


def fleet_ids(client: httpx.Client) -> list[str]:
    answer = client.get("/agents")
    assert answer.status_code == 200, answer.text
    return sorted(agent["id"] for agent in answer.json())


def fleet_states(client: httpx.Client) -> dict[str, str]:
    return {agent["id"]: agent["state"] for agent in client.get("/agents").json()}


def ha_publishes(m: Maestro) -> int:
    assert m.homeassistant is not None
    return m.homeassistant.publishes


def test_a_removed_agent_leaves_the_api_fleet_within_seconds_and_stays_gone_after_a_restart(
    broker: Broker,
    start_agent: Callable[..., AgentProc],
    api_server: Callable[..., ApiServer],
) -> None:
    api = api_server()
    client = api.client(Role.ADMIN)
    start_agent("a1")
    start_agent("a2")
    both = {"a1": "online", "a2": "online"}
    wait_for(lambda: fleet_states(client) == both, 20, "a1 and a2 online", step=0.1)

    url = f"{api.ws_url}/ws?token={api.tokens[Role.VIEWER]}"

    async def removed_live() -> dict[str, Any]:
        """Remove a1 (while it is connected) with the dashboard's live stream open."""
        async with websockets.connect(url) as ws:
            assert json.loads(await ws.recv())["kind"] == "hello"
            await asyncio.to_thread(broker.remove_agent, "a1")
            removed_at.append(time.monotonic())  # the command is done (it starts slowly)
            async with asyncio.timeout(10):
                while True:
                    frame: dict[str, Any] = json.loads(await ws.recv())
                    if frame["kind"] == "agent_removed":
                        return frame

    removed_at: list[float] = []
    frame = asyncio.run(removed_live())
    assert frame["data"] == {"id": "a1"}, "the fleet view is told to drop a1"
    wait_for(lambda: fleet_ids(client) == ["a2"], 10, "a1 gone from /agents", step=0.1)
    assert time.monotonic() - removed_at[0] < 5, "gone within seconds of the command"
    assert client.get("/agents/a1").status_code == 404
    time.sleep(3)  # past the Will's settle delay and the group wait: a page would be out
    assert fleet_states(client) == {"a2": "online"}, "it does not come back as offline"
    incidents = client.get("/alerts", params={"agent": "a1"}).json()
    assert [a for a in incidents if a["phase"] != "resolved"] == [], "nothing open for a1"
    audit = client.get("/audit", params={"target": "a1"}).json()
    assert "agent.removed" in [entry["action"] for entry in audit]

    api.stop()
    again = api_server()
    client = again.client(Role.ADMIN)
    wait_for(lambda: "a2" in fleet_ids(client), 10, "a2 known after the restart", step=0.1)
    time.sleep(1)
    assert fleet_ids(client) == ["a2"], "the restarted maestro does not know a1"


def test_a_removed_agent_is_never_paged_and_its_entities_stay_gone_after_reconnects(
    broker: Broker,
    start_agent: Callable[..., AgentProc],
    maestro_thread: Callable[..., MaestroThread],
    mqtt: Callable[..., MqttProbe],
    fake_discord: FakeDiscord,
) -> None:
    options = {
        "homeassistant": {"enabled": True, "interval_s": 0.2},
        "notify": {"discord": {"webhook_url": fake_discord.webhook_url}, "retry_min_s": 0.2},
        "alerts": QUICK_ALERTS,
    }
    maestro = maestro_thread(**options)
    start_agent("a1")
    start_agent("a2")
    maestro.wait_state("a1", "online", timeout=20)
    maestro.wait_state("a2", "online", timeout=20)
    wait_for(
        lambda: (
            len([t for t in retained_now(mqtt, broker, "before") if t.startswith(f"{HA}/")])
            == 2 * CONFIGS_PER_AGENT
        ),
        20,
        "both agents' entities",
    )

    broker.remove_agent("a1")
    wait_for(lambda: "a1" not in maestro.states(), 5, "the maestro forgets a1")
    time.sleep(3)  # a Will, the settle delay and the group wait would page by now
    assert fake_discord.delivered() == [], "no page for a removed agent"
    assert maestro.states() == {"a2": "online"}

    def a1_retained(name: str) -> list[str]:
        """a1's retained status, alert state and entities a client subscribing now gets."""
        probe = mqtt("viewer", broker.viewer_password, client_id=f"viewer:{name}")
        for kind in (Kind.STATUS, Kind.ALERTS):
            probe.subscribe(broker.topics.all_of(kind))
        probe.subscribe(f"{HA}/#")
        probe.expect_no_message(lambda m: False, within=1.0)  # the retained ones arrive
        topics = {m.topic for m in probe.messages if m.retain and m.payload}
        return sorted(t for t in topics if "/a1/" in t or t.endswith("/a1"))

    assert a1_retained("removed") == [], "no status, alert state or entity of a1 is retained"

    published = maestro.sync(ha_publishes)
    broker.restart()  # the maestro reconnects and announces its agents again
    wait_for(
        lambda: maestro.sync(ha_publishes) >= published + CONFIGS_PER_AGENT,
        30,
        "a2 announced again after the reconnect",
    )
    assert a1_retained("reconnected") == []

    maestro.stop()
    restarted = maestro_thread(**options)
    wait_for(lambda: restarted.state_of("a2") == "online", 20, "a2 online after the restart")
    time.sleep(1)  # a few discovery rounds
    assert "a1" not in restarted.states(), "its saved state is gone"
    assert a1_retained("restarted") == []
    assert fake_discord.delivered() == [], "nor is it paged after a restart"


def test_a_maestro_stopped_during_the_removal_forgets_the_agent_when_it_is_back(
    broker: Broker,
    start_agent: Callable[..., AgentProc],
    maestro_thread: Callable[..., MaestroThread],
) -> None:
    maestro = maestro_thread()
    start_agent("a1")
    start_agent("a2")
    maestro.wait_state("a1", "online", timeout=20)
    maestro.wait_state("a2", "online", timeout=20)
    maestro.stop()
    broker.remove_agent("a1")  # the broker keeps the maestro's session: the clear waits
    back = maestro_thread()
    wait_for(lambda: "a1" not in back.states(), 10, "the maestro back forgets a1")
    back.wait_state("a2", "online", timeout=10)
    assert "a1" not in back.states()


def test_every_replica_forgets_a_removed_agent(
    broker: Broker,
    start_agent: Callable[..., AgentProc],
    maestro_thread: Callable[..., MaestroThread],
) -> None:
    replicas = [maestro_thread("main"), maestro_thread("second")]
    start_agent("a1")
    start_agent("a2")
    for replica in replicas:
        replica.wait_state("a1", "online", timeout=20)
        replica.wait_state("a2", "online", timeout=20)
    broker.remove_agent("a1")
    for replica in replicas:

        def forgot(r: MaestroThread = replica) -> bool:
            return "a1" not in r.states()

        wait_for(forgot, 5, f"{replica.replica} forgets a1")
    time.sleep(2)  # peer digests go on: none brings a1 back
    assert [r.states() for r in replicas] == [{"a2": "online"}] * 2
