"""A removed agent (``arete agents remove``) ends its incidents without a page, and the
alert engine forgets it: nothing reopens, nothing is owed after a restart, no snapshot."""

from __future__ import annotations

from arete.payloads import AlertPhase
from maestro.alerts.engine import restore
from maestro.alerts.model import AgentRemoved, Told
from tests.pure.test_alert_engine import Fleet


def test_an_outage_of_an_agent_removed_within_the_group_wait_is_never_paged() -> None:
    fleet = Fleet()
    fleet.agent("a1", "online")
    fleet.agent("a2", "online")
    fleet.agent("a1", "offline", clean=False)  # its Will, as the broker drops it
    fleet.agent("a2", "offline", clean=False)
    assert fleet.phase("agent_offline") is AlertPhase.FIRING
    fleet.published.clear()
    fleet.send(AgentRemoved("a1"))
    fleet.wait(600)
    assert [n.agent for n in fleet.notices] == ["a2"], "only the agent that stays is paged"
    assert fleet.alert("agent_offline", "a1") is None
    assert "a1" not in fleet.state.agents
    assert "a1" not in fleet.published, "no alerts/a1 snapshot is published again"
    resolved = [c.alert for c in fleet.changes if c.alert.agent == "a1" and c.change == "resolved"]
    assert [a.phase for a in resolved] == [AlertPhase.RESOLVED]
    assert resolved[0].told is Told.RESOLVED, "stored as told: no message owed"


def test_a_paged_outage_of_a_removed_agent_gets_no_resolved_message_even_after_a_restart() -> None:
    fleet = Fleet()
    fleet.agent("a1", "online")
    fleet.agent("a1", "offline", clean=False)
    fleet.wait(5)
    assert len(fleet.notices) == 1
    fleet.send(AgentRemoved("a1"))
    stored = [c.alert for c in fleet.changes][-1]
    assert stored.phase is AlertPhase.RESOLVED
    fleet.wait(60)
    assert len(fleet.notices) == 1, "no 'resolved' message: it was removed, not repaired"
    state, _ = restore(fleet.state.config, [stored], [], fleet.now)
    fleet.state = state
    fleet.wait(120)
    assert len(fleet.notices) == 1, "nor after a restart of the maestro"


def test_an_agent_added_back_is_judged_afresh() -> None:
    fleet = Fleet()
    fleet.agent("a1", "online")
    fleet.agent("a1", "offline", clean=False)
    fleet.wait(5)
    fleet.send(AgentRemoved("a1"))
    fleet.agent("a1", "online")
    fleet.agent("a1", "offline", clean=False)
    fleet.wait(5)
    incident = fleet.alert("agent_offline", "a1")
    assert incident is not None
    assert incident.flaps == 0, "a new incident, not a reopening"
    assert len(fleet.notices) == 2
