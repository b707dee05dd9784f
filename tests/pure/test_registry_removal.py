"""An agent whose retained status was cleared (``arete agents remove``) is forgotten by
the registry: no transition, nothing for the alerts to page on, no saved state, and only
a new birth brings it back (a late Will of its old connection does not)."""

from __future__ import annotations

import asyncio
from typing import Any

import paho.mqtt.client as paho

from arete.payloads import AgentState, PeerDigest
from arete.topics import Topics
from maestro.events import EventBus
from maestro.ingest import Ingest, PeerIn, RemovedIn
from maestro.liveness import AgentLive, Transition
from tests.pure.test_registry_watch import Fleet, online_fleet


class Forgets:
    def __init__(self) -> None:
        self.forgotten: list[str] = []

    def observe_agent(self, *_: Any, **__: Any) -> None:
        return None

    def forget_agent(self, agent_id: str, now: float) -> None:
        self.forgotten.append(agent_id)


def removed_fleet(*, settle_s: float = 3.0) -> tuple[Fleet, Forgets]:
    fleet = online_fleet() if settle_s == 3.0 else Fleet(settle_s=settle_s)
    forgets = Forgets()
    fleet.registry.observers.append(forgets)
    return fleet, forgets


def remove(fleet: Fleet, agent: str) -> None:
    """What the ingest does on an empty retained status: drop its own tables, tell the loop."""
    fleet.contacts.pop(agent, None)
    fleet.latest.pop(agent, None)
    fleet.registry.deliver(RemovedIn(agent, fleet.now))


def test_a_removed_agent_is_forgotten_without_a_transition_and_the_others_stay() -> None:
    fleet, forgets = removed_fleet()
    transitions = fleet.registry.transitions
    remove(fleet, "a1")
    fleet.run(30, live={"a2": 21, "a3": 31})  # far past a1's late and critical deadlines
    assert "a1" not in fleet.registry.states
    assert "a1" not in fleet.registry.statuses
    assert [v["id"] for v in fleet.registry.views()] == ["a2", "a3"]
    assert fleet.registry.transitions == transitions, "no transition: nothing pages"
    assert fleet.states_seen("a1") == ["online"], "the alerts heard only its birth"
    assert forgets.forgotten == ["a1"], "the alerts are told to forget it"
    assert {fleet.state(a) for a in ("a2", "a3")} == {"online"}


def test_a_removal_is_announced_on_the_event_bus() -> None:
    fleet, _ = removed_fleet()
    bus: EventBus = fleet.registry.events

    async def heard() -> list[tuple[str, dict[str, Any]]]:
        with bus.subscribe({"agent_removed"}) as sub:
            remove(fleet, "a2")
            event = sub.queue.get_nowait()
            return [(event.kind, event.data)]

    assert asyncio.run(heard()) == [("agent_removed", {"id": "a2"})]


def test_a_will_held_when_the_agent_was_removed_never_applies() -> None:
    fleet, _ = removed_fleet()
    fleet.will("a1", 11)  # held for the settle delay (3 s)
    remove(fleet, "a1")
    fleet.run(10, live={"a2": 21, "a3": 31})
    assert "a1" not in fleet.registry.states
    assert fleet.states_seen("a1") == ["online"], "no offline: no agent_offline page"


def test_a_will_arriving_after_the_removal_is_stale_and_ignored() -> None:
    fleet, _ = removed_fleet()
    remove(fleet, "a1")
    ignored = fleet.registry.stale_ignored
    fleet.will("a1", 11)
    fleet.status("a1", AgentState.OFFLINE, 12, "connection_lost")  # any epoch: not a birth
    fleet.run(10, live={"a2": 21, "a3": 31})
    assert "a1" not in fleet.registry.states
    assert fleet.registry.stale_ignored == ignored + 2
    assert fleet.states_seen("a1") == ["online"]


def test_contacts_from_before_the_removal_do_not_bring_it_back() -> None:
    fleet, _ = removed_fleet()
    remove(fleet, "a1")
    fleet.contacts["a1"] = (11, fleet.now)  # a message in flight when it was removed
    fleet.run(3, live={"a2": 21, "a3": 31})
    assert "a1" not in fleet.registry.states


def test_an_agent_added_back_is_a_new_agent_from_its_birth() -> None:
    fleet, _ = removed_fleet()
    remove(fleet, "a1")
    fleet.run(5, live={"a2": 21, "a3": 31})
    fleet.birth("a1", 1)  # a fresh state dir: its epochs start again
    fleet.run(5, live=ALL_BACK)
    assert fleet.state("a1") == "online"
    assert fleet.registry.views(["a1"])[0]["epoch"] == 1
    assert "a1" not in fleet.registry.removed
    assert fleet.states_seen("a1") == ["online", "online"]
    fleet.run(30, live={"a2": 21, "a3": 31})  # now it is watched like any agent
    assert fleet.state("a1") == "critical"


ALL_BACK = {"a1": 1, "a2": 21, "a3": 31}


def test_the_saved_state_of_a_removed_agent_is_dropped_at_the_next_flush() -> None:
    saved: list[tuple[list[str], list[str]]] = []

    async def persist(
        transitions: list[Transition], records: list[tuple[AgentLive, Any]], removed: list[str]
    ) -> None:
        saved.append(([state.agent_id for state, _ in records], removed))

    fleet, _ = removed_fleet()
    fleet.registry._persist = persist
    asyncio.run(fleet.registry.flush())
    remove(fleet, "a1")
    asyncio.run(fleet.registry.flush())
    assert saved[-1] == ([], ["a1"])
    count = len(saved)
    asyncio.run(fleet.registry.flush())
    assert len(saved) == count, "dropped once: nothing left to store"


def test_a_peer_digest_from_before_the_removal_does_not_bring_it_back() -> None:
    fleet, _ = removed_fleet()
    remove(fleet, "a1")
    digest = PeerDigest(replica="other", ts=fleet.now, seen={"a1": (11, fleet.now)})
    fleet.registry.on_peer(PeerIn("other", digest=digest))
    fleet.run(30, live={"a2": 21, "a3": 31})
    assert "a1" not in fleet.registry.states
    assert fleet.states_seen("a1") == ["online"]


def test_the_ingest_takes_an_empty_retained_status_for_a_removal() -> None:
    inbox: list[object] = []
    ingest = Ingest(
        Topics("arete"), "main", submit=lambda rows, done: None, ack=lambda g, m: None,
        inbox=inbox.append, clock=lambda: 5.0,
    )  # fmt: skip
    ingest.contacts["a1"] = (11, 4.0)
    ingest.contacts["a2"] = (21, 4.0)
    message = paho.MQTTMessage(1, Topics("arete").status("a1").encode())
    message.payload = b""
    message.retain = True
    ingest.handle(message, 1)
    assert inbox == [RemovedIn("a1", 5.0)]
    assert list(ingest.contacts) == ["a2"], "what the ingest kept of a1 is dropped"
