"""The registry with a fake link, a fake clock and a recording observer: what a broker
outage, Wills, forged epochs, skewed clocks, stalled samples and one id on two machines
make the alerts hear."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from arete.payloads import AgentState, Sample, Status
from arete.topics import Topics
from maestro.agent_watch import AgentWatch
from maestro.events import EventBus
from maestro.registry import Registry
from maestro.store.rows import to_row

T0 = 1_700_000_000.0


@dataclass
class FakeLink:
    connected: bool = True
    generation: int = 1


@dataclass
class Heard:
    agents: list[tuple[str, str]] = field(default_factory=list)
    conditions: list[tuple[str, str, bool, float | None, str]] = field(default_factory=list)
    known: dict[str, Any] = field(default_factory=dict)

    def observe_agent(self, agent_id: str, state: str, now: float, **_: Any) -> None:
        self.agents.append((agent_id, state))

    def observe_condition(
        self, rule: str, subject: str, holds: bool, now: float, *, value: float | None,
        detail: str,
    ) -> None:  # fmt: skip
        self.conditions.append((rule, subject, holds, value, detail))

    def observe_known(self, agents: Mapping[str, Any]) -> None:
        self.known.update(agents)

    def holding(self, rule: str) -> set[str]:
        state: dict[str, bool] = {}
        for name, subject, holds, _, _ in self.conditions:
            if name == rule:
                state[subject] = holds
        return {s for s, h in state.items() if h}


class Fleet:
    def __init__(self, *, settle_s: float = 3.0) -> None:
        self.now = T0
        self.link = FakeLink()
        self.contacts: dict[str, tuple[int, float]] = {}
        self.latest: dict[str, tuple[float, Any]] = {}
        self.registry = Registry(
            Topics("arete"),
            "main",
            EventBus(),
            contacts=self.contacts,
            latest=self.latest,
            clock=lambda: self.now,
            link=self.link,
            will_settle_s=settle_s,
        )
        self.heard = Heard()
        self.registry.observers.append(self.heard)
        self.seq: dict[str, int] = {}
        self.registry.tick(self.now)

    def status(
        self, agent: str, state: AgentState, epoch: int, reason: str | None = None,
        host: str = "h1",
    ) -> None:  # fmt: skip
        status = Status(
            state=state, epoch=epoch, ts=self.now, version="t", host=host, heartbeat_s=5,
            reason=reason,
        )  # fmt: skip
        self.registry.on_status(agent, status, self.now)

    def birth(self, agent: str, epoch: int, host: str = "h1") -> None:
        self.status(agent, AgentState.ONLINE, epoch, host=host)

    def will(self, agent: str, epoch: int) -> None:
        self.status(agent, AgentState.OFFLINE, epoch, "connection_lost")

    def beat(self, agent: str, epoch: int) -> None:
        self.contacts[agent] = (epoch, self.now)

    def sample(self, agent: str, epoch: int, skew: float = 0.0, mem: float = 10.0) -> None:
        seq = self.seq[agent] = self.seq.get(agent, 0) + 1
        sample = Sample(ts=self.now + skew, seq=seq, cpu=1.0, mem=mem)
        row = to_row(agent, epoch, sample)
        self.latest[agent] = (self.now, row)  # the ingest's receive time
        self.contacts[agent] = (epoch, self.now)

    def run(self, seconds: float, *, live: dict[str, int] | None = None, skew: float = 0.0,
            samples: bool = True) -> None:  # fmt: skip
        """Let time pass with ticks every 0.5 s; ``live`` agents (id -> epoch) send a
        sample (or a heartbeat) every second."""
        end = self.now + seconds
        while self.now < end - 1e-9:
            self.now += 0.5
            if live and self.now % 1 == 0:
                for agent, epoch in live.items():
                    if samples:
                        self.sample(agent, epoch, skew)
                    else:
                        self.beat(agent, epoch)
            self.registry.tick(self.now)

    def state(self, agent: str) -> str:
        return str(self.registry.states[agent].state)

    def states_seen(self, agent: str) -> list[str]:
        return [state for a, state in self.heard.agents if a == agent]


ALL = {"a1": 11, "a2": 21, "a3": 31}


def online_fleet() -> Fleet:
    fleet = Fleet()
    for agent, epoch in ALL.items():
        fleet.birth(agent, epoch)
    fleet.run(5, live=ALL)
    return fleet


def test_a_broker_outage_judges_no_agent_and_is_one_condition_of_the_replica() -> None:
    fleet = online_fleet()
    fleet.link.connected = False
    fleet.run(20)  # nothing arrives: 20 s is past critical (3 x 5 s + grace)
    assert {fleet.state(a) for a in ALL} == {"online"}
    assert fleet.heard.holding("broker_unreachable") == {"maestro:main"}
    assert fleet.registry.latest_values() is None, "metric rules hold while the link is down"
    fleet.link.connected, fleet.link.generation = True, 2
    fleet.run(1)
    assert fleet.heard.holding("broker_unreachable") == set()
    fleet.run(8, live=ALL)
    assert {fleet.state(a) for a in ALL} == {"online"}
    assert all(states == ["online"] for states in map(fleet.states_seen, ALL))


def test_after_an_outage_an_agent_that_never_returns_goes_critical_from_a_fresh_grace() -> None:
    fleet = online_fleet()
    fleet.link.connected = False
    fleet.run(20)
    fleet.link.connected, fleet.link.generation = True, 2
    fleet.run(6, live={"a1": 11, "a2": 21})
    assert fleet.state("a3") == "online", "a fresh grace from the link's return"
    fleet.run(1, live={"a1": 11, "a2": 21})
    assert fleet.state("a3") == "late", "one heartbeat (5 s) + grace after the link came back"
    fleet.run(10, live={"a1": 11, "a2": 21})
    assert fleet.state("a3") == "critical"
    assert fleet.states_seen("a1") == ["online"]


def test_a_clean_broker_stop_publishing_every_will_pages_no_agent() -> None:
    fleet = online_fleet()
    for agent, epoch in ALL.items():  # the broker stops: every agent's Will first...
        fleet.will(agent, epoch)
    fleet.run(0.5)
    fleet.link.connected = False  # ...then our own link goes
    fleet.run(3)
    assert {fleet.state(a) for a in ALL} == {"online"}
    fleet.link.connected, fleet.link.generation = True, 2
    for agent, epoch in ALL.items():  # retained Wills handed out again after the restart
        fleet.will(agent, epoch)
    fleet.run(1)
    for agent, epoch in ALL.items():  # the agents reconnect
        fleet.birth(agent, epoch + 1)
    fleet.run(10, live={a: e + 1 for a, e in ALL.items()})
    assert {fleet.state(a) for a in ALL} == {"online"}
    assert "offline" not in {state for _, state in fleet.heard.agents}
    assert fleet.registry.gate.wills_ignored == 6


def test_a_real_will_counts_after_the_settle_delay() -> None:
    fleet = online_fleet()
    fleet.will("a2", 21)
    fleet.run(2.5, live={"a1": 11, "a3": 31})
    assert fleet.state("a2") == "online", "held for will_settle_s"
    fleet.run(1, live={"a1": 11, "a3": 31})
    assert fleet.state("a2") == "offline"
    assert fleet.states_seen("a2") == ["online", "offline"]


def test_a_birth_supersedes_a_held_will() -> None:
    fleet = online_fleet()
    fleet.will("a1", 11)
    fleet.birth("a1", 12)  # kicked and reconnected at once
    fleet.run(5, live={"a1": 12})
    assert fleet.states_seen("a1") == ["online", "online"]


def test_a_forged_heartbeat_with_epoch_2_62_leaves_the_agent_online() -> None:
    fleet = online_fleet()
    fleet.beat("a1", 2**62)
    fleet.run(0.5)
    fleet.run(30, live=ALL)
    assert fleet.state("a1") == "online"
    assert fleet.registry.states["a1"].epoch == 11


def test_a_peer_digest_with_a_forged_epoch_does_not_stick() -> None:
    from arete.payloads import PeerDigest
    from maestro.ingest import PeerIn

    fleet = online_fleet()
    digest = PeerDigest(replica="r2", ts=fleet.now, seen={"a1": (2**62, fleet.now)})
    fleet.registry.on_peer(PeerIn("r2", digest=digest))
    digest = PeerDigest(replica="r2", ts=fleet.now + 1, seen={"a1": (11, fleet.now + 1)})
    fleet.registry.on_peer(PeerIn("r2", digest=digest))
    assert fleet.registry._peer_contacts["a1"][0] == 11


def test_metric_freshness_and_clock_offset_use_the_receive_time() -> None:
    fleet = Fleet()
    fleet.birth("a1", 11)
    fleet.run(40, live={"a1": 11}, skew=-7200.0)  # two hours behind
    latest = fleet.registry.latest_values()
    assert latest is not None
    received, _values = latest["a1"]
    assert fleet.now - received <= 1.0, "fresh by the maestro's clock"
    offset = fleet.registry.watch.offset("a1")
    assert offset is not None
    assert -7200.5 < offset <= -7199.5
    assert fleet.registry.view("a1")["clock_offset_s"] == round(offset, 1)
    assert fleet.heard.holding("clock_skew") == {"a1"}
    skew = [c for c in fleet.heard.conditions if c[0] == "clock_skew"][-1]
    assert skew[3] == 7200.0
    assert skew[4] == "behind"


def test_an_agent_with_a_good_clock_raises_no_skew() -> None:
    fleet = Fleet()
    fleet.birth("a1", 11)
    fleet.run(40, live={"a1": 11}, skew=0.3)
    assert fleet.heard.holding("clock_skew") == set()


def test_samples_that_stop_while_heartbeats_go_on_are_stalled() -> None:
    fleet = Fleet()
    fleet.birth("a1", 11)
    fleet.run(10, live={"a1": 11})
    fleet.run(29, live={"a1": 11}, samples=False)
    assert fleet.heard.holding("metrics_stalled") == set()
    fleet.run(3, live={"a1": 11}, samples=False)
    assert fleet.heard.holding("metrics_stalled") == {"a1"}
    assert fleet.state("a1") == "online"
    fleet.run(2, live={"a1": 11})
    assert fleet.heard.holding("metrics_stalled") == set()


def test_a_dead_agent_is_not_stalled_it_is_critical() -> None:
    fleet = Fleet()
    fleet.birth("a1", 11)
    fleet.run(10, live={"a1": 11})
    fleet.run(60)
    assert fleet.state("a1") == "critical"
    assert fleet.heard.holding("metrics_stalled") == set()


def test_one_id_connecting_from_two_machines_in_turn_is_a_conflict() -> None:
    fleet = Fleet()
    epoch = 100
    for host in ("pc-a", "pc-b", "pc-a", "pc-b"):
        epoch += 1
        if epoch > 101:
            fleet.will("a1", epoch - 1)  # kicked by the other one
        fleet.birth("a1", epoch, host=host)
        fleet.run(2, live={"a1": epoch})
    assert fleet.heard.holding("identity_conflict") == {"a1"}
    conflict = [c for c in fleet.heard.conditions if c[0] == "identity_conflict"][-1]
    assert conflict[4] == "pc-a, pc-b"
    assert "offline" not in fleet.states_seen("a1"), "the kicked one's Will was superseded"


def test_an_agent_moved_to_a_new_machine_once_is_no_conflict() -> None:
    fleet = Fleet()
    fleet.birth("a1", 1, host="old")
    fleet.run(2)
    fleet.birth("a1", 2, host="new")
    fleet.run(2)
    assert fleet.heard.holding("identity_conflict") == set()


def test_the_known_agents_are_announced_at_startup() -> None:
    fleet = online_fleet()
    fleet.registry.announce()
    assert set(fleet.heard.known) == set(ALL)
    assert fleet.heard.known["a1"][0] == "online"


def test_agent_watch_ignores_replayed_samples_for_the_offset() -> None:
    watch = AgentWatch()
    for second in range(10):
        watch.on_sample("a1", object(), T0 + second + 5.0, second, T0 + second)
    watch.on_sample("a1", object(), T0 - 3600, 3, T0 + 10)  # a replayed, old sample
    assert watch.offset("a1") == 5.0


def test_at_startup_a_retained_will_of_an_agent_that_died_meanwhile_counts() -> None:
    fleet = Fleet()
    fleet.link.connected = False  # a fresh maestro, not connected yet
    restarted = Registry(
        Topics("arete"), "main", EventBus(), contacts={}, latest={},
        clock=lambda: fleet.now, link=fleet.link, will_settle_s=2.0,
    )  # fmt: skip
    heard = Heard()
    restarted.observers.append(heard)
    from maestro.liveness import AgentLive, Liveness

    restarted.states["a1"] = AgentLive("a1", Liveness.ONLINE, 11, fleet.now, fleet.now, 5.0)
    restarted.tick(fleet.now)  # not connected yet
    fleet.link.connected = True
    status = Status(
        state=AgentState.OFFLINE, epoch=11, ts=fleet.now, version="t", host="h1",
        heartbeat_s=5, reason="connection_lost",
    )  # fmt: skip
    restarted.tick(fleet.now + 0.1)  # connected now
    restarted.on_status("a1", status, fleet.now + 0.2)  # its retained Will
    restarted.tick(fleet.now + 2.5)
    assert str(restarted.states["a1"].state) == "offline"
    assert [s for a, s in heard.agents if a == "a1"] == ["offline"]


def test_a_silent_link_cut_holds_judgement_until_the_link_is_known_down() -> None:
    # A blackhole between the maestro and the broker: the link still says "connected"
    # until its keepalive runs out, while every agent falls silent at once.
    fleet = online_fleet()
    fleet.registry.gate.silent_max_s = 20.0
    fleet.run(12)  # past late (5 s + grace) and critical (15 s + grace) for everyone
    assert {fleet.state(a) for a in ALL} == {"online"}
    assert fleet.registry.gate.silences == 1
    fleet.link.connected = False  # the keepalive ran out: an outage, one condition
    fleet.run(10)
    assert fleet.heard.holding("broker_unreachable") == {"maestro:main"}
    fleet.link.connected, fleet.link.generation = True, 2
    fleet.run(5, live=ALL)
    assert {fleet.state(a) for a in ALL} == {"online"}
    assert all(states == ["online"] for states in map(fleet.states_seen, ALL))


def test_a_fleet_that_really_died_at_once_is_judged_after_the_silent_link_hold() -> None:
    fleet = online_fleet()
    fleet.registry.gate.silent_max_s = 20.0
    fleet.run(26)  # suspect from the late deadline (6.25 s) for 20 s
    assert {fleet.state(a) for a in ALL} == {"online"}
    fleet.run(1)
    assert {fleet.state(a) for a in ALL} == {"critical"}


def test_one_agent_falling_silent_is_judged_at_once() -> None:
    fleet = online_fleet()
    fleet.run(7, live={"a1": 11, "a2": 21})
    assert fleet.state("a3") == "late"
    assert fleet.registry.gate.silences == 0


def peer_status(fleet: Fleet, replica: str, state: str) -> None:
    from arete.payloads import MaestroState, MaestroStatus
    from maestro.ingest import PeerIn

    status = MaestroStatus(replica=replica, state=MaestroState(state), ts=fleet.now, version="t")
    fleet.registry.on_peer(PeerIn(replica, status=status))


def test_a_stopping_broker_publishing_the_leaders_will_does_not_move_leadership() -> None:
    fleet = online_fleet()
    fleet.registry.replica = fleet.registry.peer_view.replica = "r2"
    peer_status(fleet, "main", "online")
    assert not fleet.registry.is_leader()
    peer_status(fleet, "main", "offline")  # the broker stops: main's Will first...
    fleet.run(0.5)
    fleet.link.connected = False  # ...then our own link
    fleet.run(20)
    assert not fleet.registry.is_leader(), "main still leads: one page for the outage"
    fleet.link.connected, fleet.link.generation = True, 2
    peer_status(fleet, "main", "offline")  # its retained Will, handed out again
    fleet.run(3, live=ALL)
    peer_status(fleet, "main", "online")  # main is back too
    fleet.run(15, live=ALL)
    assert not fleet.registry.is_leader()


def test_a_replica_that_really_went_away_hands_over_after_the_settle_delay() -> None:
    fleet = online_fleet()
    fleet.registry.replica = fleet.registry.peer_view.replica = "r2"
    peer_status(fleet, "main", "online")
    peer_status(fleet, "main", "offline")
    fleet.run(9.5, live=ALL)
    assert not fleet.registry.is_leader()
    fleet.run(1, live=ALL)
    assert fleet.registry.is_leader()


def test_after_a_forged_birth_the_real_agent_recovers_without_reconnecting() -> None:
    fleet = online_fleet()
    fleet.birth("a1", 2**53 - 1)  # forged with the agent's credentials (in bounds)
    fleet.run(14, live=ALL)  # the real a1 keeps talking under its own epoch (11)
    assert fleet.state("a1") == "online"
    assert fleet.registry.states["a1"].epoch == 11
    assert fleet.states_seen("a1")[-2:] == ["late", "online"], "late once, then adopted"


def test_a_lone_foreign_heartbeat_is_not_adopted() -> None:
    fleet = online_fleet()
    fleet.run(7, live={"a2": 21, "a3": 31})
    assert fleet.state("a1") == "late"
    fleet.beat("a1", 2**53 - 1)
    fleet.run(20, live={"a2": 21, "a3": 31})
    assert fleet.state("a1") == "critical"
    assert fleet.registry.states["a1"].epoch == 11


def test_an_agent_whose_status_says_its_state_disk_is_full_raises_agent_disk_full() -> None:
    fleet = Fleet()
    fleet.birth("a1", 11)
    fleet.run(3, live={"a1": 11})
    assert fleet.heard.holding("agent_disk_full") == set()
    full = Status(state=AgentState.ONLINE, epoch=11, ts=fleet.now, version="t", host="h1",
                  heartbeat_s=5, disk_full=True)  # fmt: skip
    fleet.registry.on_status("a1", full, fleet.now)
    fleet.run(1, live={"a1": 11})
    assert fleet.heard.holding("agent_disk_full") == {"a1"}
    assert fleet.registry.view("a1")["disk_full"] is True
    fleet.birth("a1", 11)  # the agent publishes its status again once the disk has room
    fleet.run(1, live={"a1": 11})
    assert fleet.heard.holding("agent_disk_full") == set()


def test_a_disconnected_agent_with_a_full_disk_is_not_paged_twice_for_it() -> None:
    fleet = Fleet(settle_s=0.5)
    fleet.birth("a1", 11)
    fleet.run(2, live={"a1": 11})
    full = Status(state=AgentState.ONLINE, epoch=11, ts=fleet.now, version="t", host="h1",
                  heartbeat_s=5, disk_full=True)  # fmt: skip
    fleet.registry.on_status("a1", full, fleet.now)
    fleet.run(1, live={"a1": 11})
    assert fleet.heard.holding("agent_disk_full") == {"a1"}
    fleet.will("a1", 11)
    fleet.run(2)
    assert fleet.state("a1") == "offline"
    assert fleet.heard.holding("agent_disk_full") == set()  # agent_offline says it all


def test_a_steady_fleet_costs_a_tick_nothing_and_a_silent_agent_is_still_late_on_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Agents heard in time are not judged again on every tick (10,000 agents at two ticks
    a second made the tick the maestro's busiest work), yet the one that stops talking
    goes late at its deadline, counted from its last contact."""
    import maestro.liveness
    import maestro.registry as registry_module

    judged: list[str] = []
    real = maestro.liveness.evaluate

    def counting(agent_id: str, *args: Any) -> Any:
        judged.append(agent_id)
        return real(agent_id, *args)

    fleet = Fleet()
    live = {f"s{i}": 1 for i in range(200)}
    for agent, epoch in live.items():
        fleet.birth(agent, epoch)
    fleet.run(4, live=live)
    monkeypatch.setattr(registry_module, "evaluate", counting)
    fleet.run(10, live=live)
    assert judged == []  # 20 ticks x 200 steady agents: none judged
    quiet = dict(live)
    del quiet["s7"]
    last_heard = fleet.now
    late_at = last_heard + fleet.registry.policy.late_deadline(5)
    while fleet.state("s7") == "online":
        fleet.run(0.5, live=quiet)
        assert fleet.now <= late_at + 0.5
    assert fleet.state("s7") == "late"
    assert fleet.now > late_at
    assert set(judged) == {"s7"}
    assert all(fleet.state(agent) == "online" for agent in quiet)
