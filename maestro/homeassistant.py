"""Opt-in Home Assistant MQTT discovery: the maestro announces each agent.

For every agent with a status it publishes the retained configs of
:mod:`arete.homeassistant` (connectivity and main metrics, which Home Assistant then
reads straight from the agent's own topics), again when the agent's host or version
changes and after every MQTT reconnect (the broker may have restarted without its
retained store). When an agent's retained status is cleared (``arete agents remove``)
the registry forgets it: its configs are cleared (empty retained messages, which remove
the entities) once, even if another replica announced them, and never published again
unless the agent is added back and connects (a new birth). Off unless
``homeassistant.enabled`` (``ARETE_MAESTRO_HOMEASSISTANT__ENABLED=true``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from arete.errors import AreteError
from arete.homeassistant import (
    DEFAULT_PREFIX,
    AgentInfo,
    discovery_messages,
    removal_messages,
    validate_prefix,
)
from arete.topics import Topics
from maestro.errors import MaestroError

log = logging.getLogger("arete.maestro.homeassistant")


class HomeAssistantSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(False, description="Publish Home Assistant MQTT discovery configs.")
    prefix: str = Field(DEFAULT_PREFIX, description="Home Assistant's discovery_prefix.")
    interval_s: float = Field(2.0, gt=0, le=300, description="How often agents are checked.")

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        try:
            return validate_prefix(value)
        except AreteError as exc:
            raise ValueError(str(exc)) from None


class Discovery:
    """Keeps the broker's retained discovery configs in step with the known agents."""

    def __init__(
        self, settings: HomeAssistantSettings, topics: Topics, link: Any, registry: Any
    ) -> None:
        self.settings = settings
        self._topics = topics
        self._link = link
        self._registry = registry
        self.published: dict[str, AgentInfo] = {}
        self.cleared: set[str] = set()  # removed agents whose configs were cleared
        self._connects = -1
        self.publishes = 0

    def wanted(self) -> dict[str, AgentInfo]:
        removed = self._registry.removed
        return {
            agent_id: AgentInfo(agent_id, status.host, status.version)
            for agent_id, status in list(self._registry.statuses.items())
            if agent_id not in removed
        }

    async def sync(self) -> None:
        if not self._link.connected:
            return
        if self._link.connects != self._connects:  # a new connection: announce all again
            self._connects = self._link.connects
            self.published = {}
        prefix = self.settings.prefix
        wanted = self.wanted()
        for agent_id, info in sorted(wanted.items()):
            if self.published.get(agent_id) != info:
                await self._send(discovery_messages(prefix, self._topics, info))
                self.published[agent_id] = info
                log.info("home assistant discovery published", extra={"kv": {"agent": agent_id}})
        removed = set(self._registry.removed)
        self.cleared &= removed  # added back: cleared again should it be removed again
        gone = (set(self.published) - set(wanted)) | (removed - self.cleared)
        for agent_id in sorted(gone):
            await self._send(removal_messages(prefix, agent_id))
            self.published.pop(agent_id, None)
            if agent_id in removed:
                self.cleared.add(agent_id)
            log.info("home assistant discovery removed", extra={"kv": {"agent": agent_id}})

    async def _send(self, messages: dict[str, bytes]) -> None:
        for topic, payload in messages.items():
            await self._link.publish(topic, payload, qos=1, retain=True)
            self.publishes += 1

    async def run(self) -> None:
        while True:
            try:
                await self.sync()
            except (
                AreteError,
                MaestroError,
                OSError,
            ) as exc:  # a refused publish (ACL): try again later
                log.warning(
                    "home assistant discovery failed, retrying",
                    extra={"kv": {"error": str(exc)}},
                )
            await asyncio.sleep(self.settings.interval_s)
