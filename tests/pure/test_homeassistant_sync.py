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


@dataclass
class FakeIngest:
    cleared: set[str] = field(default_factory=set)


def status(version: str = "1.0") -> Status:
    return Status(
        state=AgentState.ONLINE, epoch=1, ts=1.0, version=version, host="h", heartbeat_s=5.0
    )


def make() -> tuple[Discovery, FakeLink, FakeRegistry, FakeIngest]:
    link, registry, ingest = FakeLink(), FakeRegistry(), FakeIngest()
    settings = HomeAssistantSettings(enabled=True)
    return Discovery(settings, Topics("arete"), link, registry, ingest), link, registry, ingest


def test_an_agent_is_announced_once_then_again_on_a_new_version_or_connection() -> None:
    discovery, link, registry, _ = make()
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


def test_a_cleared_agent_is_removed_with_empty_retained_configs() -> None:
    discovery, link, registry, ingest = make()
    registry.statuses["a1"] = status()
    asyncio.run(discovery.sync())
    announced = {topic for topic, _, _ in link.sent}
    link.sent.clear()
    ingest.cleared.add("a1")
    asyncio.run(discovery.sync())
    assert {topic for topic, _, _ in link.sent} == announced
    assert all(payload == b"" and retain for _, payload, retain in link.sent)


def test_nothing_is_sent_while_the_link_is_down() -> None:
    discovery, link, registry, _ = make()
    link.connected = False
    registry.statuses["a1"] = status()
    asyncio.run(discovery.sync())
    assert link.sent == []


def test_a_bad_discovery_prefix_is_refused_with_a_clear_message() -> None:
    with pytest.raises(ValidationError, match="invalid Home Assistant discovery prefix"):
        HomeAssistantSettings(prefix="home assistant/#")
