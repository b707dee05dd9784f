"""The maestro's discovery loop: announce new agents, re-announce after a reconnect or a
change of version, remove cleared ones, and say nothing when nothing changed."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest
from pydantic import ValidationError

from arete.payloads import AgentState, Status
from arete.topics import Topics
from maestro.homeassistant import Discovery, HomeAssistantSettings


@dataclass
class FakeLink:
    connected: bool = True
    connects: int = 1
    sent: list[tuple[str, bytes, bool]] = field(default_factory=list)

    async def publish(self, topic: str, payload: bytes, *, qos: int, retain: bool) -> None:
        assert qos == 1
        self.sent.append((topic, payload, retain))


@dataclass
class FakeRegistry:
    statuses: dict[str, Status] = field(default_factory=dict)
    removed: dict[str, int] = field(default_factory=dict)


def status(version: str = "1.0") -> Status:
    return Status(
        state=AgentState.ONLINE, epoch=1, ts=1.0, version=version, host="h", heartbeat_s=5.0
    )


def make() -> tuple[Discovery, FakeLink, FakeRegistry]:
    link, registry = FakeLink(), FakeRegistry()
    settings = HomeAssistantSettings(enabled=True)
    return Discovery(settings, Topics("arete"), link, registry), link, registry


def removed(registry: FakeRegistry, agent_id: str) -> None:
    """What the registry does when the agent's retained status is cleared."""
    del registry.statuses[agent_id]
    registry.removed[agent_id] = 1


def test_an_agent_is_announced_once_then_again_on_a_new_version_or_connection() -> None:
    discovery, link, registry = make()
    registry.statuses["a1"] = status()
    asyncio.run(discovery.sync())
    assert len(link.sent) == 8
    assert all(retain and payload for _, payload, retain in link.sent)
    asyncio.run(discovery.sync())
    assert len(link.sent) == 8, "nothing changed: nothing sent"
    registry.statuses["a1"] = status("1.1")
    asyncio.run(discovery.sync())
    assert len(link.sent) == 16
    assert b'"sw_version": "1.1"' in link.sent[-1][1]
    link.connects += 1  # the broker may have lost its retained store
    asyncio.run(discovery.sync())
    assert len(link.sent) == 24


def test_a_removed_agent_is_removed_with_empty_retained_configs_and_not_announced_again() -> None:
    discovery, link, registry = make()
    registry.statuses["a1"] = status()
    asyncio.run(discovery.sync())
    announced = {topic for topic, _, _ in link.sent}
    link.sent.clear()
    removed(registry, "a1")
    asyncio.run(discovery.sync())
    assert {topic for topic, _, _ in link.sent} == announced
    assert all(payload == b"" and retain for _, payload, retain in link.sent)
    link.sent.clear()
    link.connects += 1  # a reconnect announces every known agent again: not a removed one
    asyncio.run(discovery.sync())
    asyncio.run(discovery.sync())
    assert link.sent == []


def test_an_agent_removed_before_this_replica_announced_it_is_cleared_once() -> None:
    discovery, link, registry = make()
    registry.removed["a1"] = 1  # announced by another replica, or by this one before a restart
    asyncio.run(discovery.sync())
    assert len(link.sent) == 8
    assert all(payload == b"" and retain and "/a1/" in t for t, payload, retain in link.sent)
    asyncio.run(discovery.sync())
    assert len(link.sent) == 8, "cleared once"


def test_an_agent_added_back_is_announced_again() -> None:
    discovery, link, registry = make()
    registry.statuses["a1"] = status()
    asyncio.run(discovery.sync())
    removed(registry, "a1")
    asyncio.run(discovery.sync())
    link.sent.clear()
    del registry.removed["a1"]  # its new birth
    registry.statuses["a1"] = status()
    asyncio.run(discovery.sync())
    assert len(link.sent) == 8
    assert all(payload and retain for _, payload, retain in link.sent)


def test_nothing_is_sent_while_the_link_is_down() -> None:
    discovery, link, registry = make()
    link.connected = False
    registry.statuses["a1"] = status()
    asyncio.run(discovery.sync())
    assert link.sent == []


def test_a_bad_discovery_prefix_is_refused_with_a_clear_message() -> None:
    with pytest.raises(ValidationError, match="invalid Home Assistant discovery prefix"):
        HomeAssistantSettings(prefix="home assistant/#")
