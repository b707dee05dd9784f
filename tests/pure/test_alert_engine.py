"""The alert engine with a fake clock: lifecycle, hysteresis, flapping, silences, acks,
grouping. Every test reads like what an operator sees: alerts and messages."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import pytest

from arete.payloads import AlertPhase, AlertSeverity
from maestro.alerts.engine import evaluate, initial_state, restore
from maestro.alerts.model import (
    Acknowledge,
    AddSilence,
    AgentObserved,
    AgentsKnown,
    AgentView,
    AlertChanged,
    AlertRecord,
    ConditionObserved,
    EndSilence,
    EngineConfig,
    Event,
    MetricsObserved,
    Notify,
    Publish,
    SilenceRecord,
    Tick,
)
from maestro.alerts.rules import BUILTIN_RULES, Rule
from maestro.errors import AlertError
from maestro.notify.message import Notice, NoticeKind

T0 = 1_700_000_000.0


def builtin(name: str, **changes: Any) -> Rule:
    rule = next(r for r in BUILTIN_RULES if r.name == name)
    return replace(rule, **changes)


class Fleet:
    """Drives the engine like the service does: events as they come, a tick a second."""

    def __init__(self, rules: tuple[Rule, ...] = BUILTIN_RULES, **config: Any) -> None:
        settings = {"group_wait_s": 2.0, "repeat_s": 4 * 3600.0, "reopen_s": 600.0} | config
        self.state = initial_state(EngineConfig(rules=rules, **settings))
        self.now = T0
        self.values: dict[str, dict[str, float]] = {}
        self.notices: list[Notice] = []
        self.changes: list[AlertChanged] = []
        self.published: list[str] = []

    def send(self, event: Event) -> None:
        self.state, actions = evaluate(self.state, event, self.now)
        for action in actions:
            if isinstance(action, Notify):
                self.notices.append(action.notice)
            elif isinstance(action, AlertChanged):
                self.changes.append(action)
            elif isinstance(action, Publish):
                self.published.append(action.agent)

    def agent(self, agent: str, state: str, *, clean: bool = False, **labels: str) -> None:
        self.send(AgentObserved(agent, state, clean, labels))

    def latest(self) -> Mapping[str, tuple[float, Mapping[str, float]]]:
        return {agent: (self.now, values) for agent, values in self.values.items()}

    def wait(self, seconds: float, step: float = 1.0) -> None:
        """Let time pass, with the service's once-a-second evaluation."""
        end = self.now + seconds
        while self.now + step <= end + 1e-9:
            self.now += step
            self.send(MetricsObserved(self.latest()))
        self.now = end

    def alert(self, rule: str, agent: str = "a1") -> AlertRecord | None:
        return self.state.alerts.get((rule, agent))

    def phase(self, rule: str, agent: str = "a1") -> AlertPhase | None:
        alert = self.alert(rule, agent)
        return None if alert is None else alert.phase

    def kinds(self) -> list[list[tuple[str, NoticeKind]]]:
        return [[(item.rule, item.kind) for item in n.items] for n in self.notices]


def silence(agent: str | None, rule: str | None, seconds: float, now: float) -> SilenceRecord:
    return SilenceRecord("s1", agent, rule, now, now + seconds, "alice", now)


# -- lifecycle ---------------------------------------------------------------------------
def test_a_lost_connection_fires_at_once_and_pages_after_the_group_wait() -> None:
    fleet = Fleet()
    fleet.agent("a1", "online")
    fleet.agent("a1", "offline", clean=False)
    assert fleet.phase("agent_offline") is AlertPhase.FIRING
    fleet.wait(1)
    assert fleet.notices == [], "the group wait holds the page for 2 s"
    fleet.wait(1)
    assert fleet.kinds() == [[("agent_offline", NoticeKind.FIRING)]]
    assert fleet.notices[0].agent == "a1"
    assert fleet.notices[0].items[0].severity is AlertSeverity.CRITICAL


def test_cpu_alert_stays_pending_for_its_duration_then_fires() -> None:
    fleet = Fleet()
    fleet.agent("a1", "online")
    fleet.values["a1"] = {"cpu": 97.0, "mem": 20.0, "disk": 10.0}
    fleet.wait(1)  # first seen: pending from here
    assert fleet.phase("cpu_high") is AlertPhase.PENDING
    fleet.wait(299)
    assert fleet.phase("cpu_high") is AlertPhase.PENDING
    assert fleet.notices == []
    fleet.wait(1)
    assert fleet.phase("cpu_high") is AlertPhase.FIRING
    fleet.wait(2)
    assert fleet.kinds() == [[("cpu_high", NoticeKind.FIRING)]]
    assert fleet.notices[0].items[0].value == 97.0


def test_a_dip_while_pending_drops_the_alert_without_a_word_and_restarts_the_wait() -> None:
    fleet = Fleet()
    fleet.agent("a1", "online")
    fleet.values["a1"] = {"cpu": 97.0}
    fleet.wait(200)
    fleet.values["a1"] = {"cpu": 40.0}
    fleet.wait(1)
    assert fleet.alert("cpu_high") is None
    assert [c.change for c in fleet.changes] == ["pending", "resolved"]
    fleet.values["a1"] = {"cpu": 97.0}
    fleet.wait(200)
    assert fleet.phase("cpu_high") is AlertPhase.PENDING, "the 5 minutes start over"
    assert fleet.notices == []


def test_a_firing_alert_resolves_only_after_its_condition_stayed_clear() -> None:
    fleet = Fleet(rules=(builtin("cpu_high", for_s=0.0, clear_for_s=60.0),))
    fleet.agent("a1", "online")
    fleet.values["a1"] = {"cpu": 97.0}
    fleet.wait(3)
    fleet.values["a1"] = {"cpu": 20.0}
    fleet.wait(30)
    fleet.values["a1"] = {"cpu": 95.0}  # back up before clear_for_s: still the same alert
    fleet.wait(1)
    fleet.values["a1"] = {"cpu": 20.0}
    fleet.wait(60)  # clear since the first evaluation of these 60 s
    assert fleet.phase("cpu_high") is AlertPhase.FIRING
    fleet.wait(1)
    assert fleet.phase("cpu_high") is AlertPhase.RESOLVED
    fleet.wait(2)
    assert fleet.kinds() == [[("cpu_high", NoticeKind.FIRING)], [("cpu_high", NoticeKind.RESOLVED)]]


def test_sigcont_back_online_resolves_the_missed_heartbeats_alert() -> None:
    fleet = Fleet()
    fleet.agent("a1", "online")
    fleet.agent("a1", "late")
    fleet.agent("a1", "critical")
    fleet.wait(3)
    assert fleet.kinds() == [[("agent_critical", NoticeKind.FIRING)]]
    fleet.agent("a1", "online")  # SIGCONT: heartbeats again
    fleet.wait(32)
    assert fleet.phase("agent_critical") is AlertPhase.RESOLVED
    assert fleet.kinds()[-1] == [("agent_critical", NoticeKind.RESOLVED)]


def test_an_alert_that_fires_and_clears_within_the_group_wait_sends_nothing() -> None:
    fleet = Fleet(rules=(builtin("agent_offline", clear_for_s=0.0),))
    fleet.agent("a1", "online")
    fleet.agent("a1", "offline")
    fleet.now += 1
    fleet.agent("a1", "online")
    fleet.wait(10)
    assert fleet.phase("agent_offline") is AlertPhase.RESOLVED
    assert fleet.notices == []


def test_one_alert_per_rule_and_agent_however_often_the_condition_is_seen() -> None:
    fleet = Fleet()
    fleet.agent("a1", "online")
    for _ in range(5):
        fleet.agent("a1", "offline")
        fleet.wait(1)
    firing = [c for c in fleet.changes if c.change == "firing"]
    assert len(firing) == 1
    assert len(fleet.state.open_alerts("a1")) == 1


# -- flapping ----------------------------------------------------------------------------
def test_an_agent_flapping_ten_times_in_a_minute_yields_one_notification() -> None:
    fleet = Fleet()
    fleet.agent("a1", "online")
    for _ in range(10):
        fleet.agent("a1", "offline")
        fleet.wait(3)
        fleet.agent("a1", "online")
        fleet.wait(3)
    assert fleet.kinds() == [[("agent_offline", NoticeKind.FIRING)]], "one page for the minute"
    ids = {c.alert.id for c in fleet.changes}
    assert len(ids) == 1, "one incident throughout"
    fleet.wait(60)  # settled: one "resolved" once it stayed up for clear_for_s
    assert fleet.kinds()[1:] == [[("agent_offline", NoticeKind.RESOLVED)]]
    fleet.wait(600)
    assert len(fleet.notices) == 2


def test_without_hysteresis_a_flapping_incident_reopens_and_is_told_at_most_once_a_hold() -> None:
    fleet = Fleet(rules=(builtin("agent_offline", clear_for_s=0.0),), reopen_s=300.0)
    fleet.agent("a1", "online")
    fleet.agent("a1", "offline")
    fleet.wait(5)
    first_id = fleet.alert("agent_offline")
    fleet.agent("a1", "online")
    fleet.wait(5)
    for _ in range(9):  # flapping on, for 54 s: each return reopens the same incident
        fleet.agent("a1", "offline")
        fleet.wait(3)
        fleet.agent("a1", "online")
        fleet.wait(3)
    assert fleet.kinds() == [
        [("agent_offline", NoticeKind.FIRING)],
        [("agent_offline", NoticeKind.RESOLVED)],
    ], "within flap_hold_s (60 s) of the resolved message the flaps are held back"
    alert = fleet.alert("agent_offline")
    assert alert is not None
    assert first_id is not None
    assert alert.id == first_id.id
    assert alert.flaps == 9
    fleet.wait(10)  # the hold is over: the flaps it held back are told, merged in one
    assert fleet.kinds()[2:] == [[("agent_offline", NoticeKind.RESOLVED)]]
    assert fleet.notices[-1].items[0].flaps == 9
    fleet.agent("a1", "offline")  # down for good
    fleet.wait(60)
    assert fleet.kinds()[-1] == [("agent_offline", NoticeKind.REFIRING)]
    assert len(fleet.notices) == 4


def test_a_second_real_outage_soon_after_recovery_is_paged() -> None:
    # Issue 14 item 10: outages 130-170 s after their recovery were never paged.
    fleet = Fleet(reopen_s=600.0)
    fleet.agent("a1", "online")
    for outage in range(3):
        fleet.agent("a1", "offline")
        fleet.wait(40)  # a real outage
        fleet.agent("a1", "online")
        fleet.wait(150)  # resolved after clear_for_s (30 s), then up for a while
        firing = [k for k in fleet.kinds() if k[0][1] is not NoticeKind.RESOLVED]
        assert len(firing) == outage + 1, f"outage {outage + 1} was paged"
    assert [k[0][1] for k in fleet.kinds()] == [
        NoticeKind.FIRING,
        NoticeKind.RESOLVED,
        NoticeKind.REFIRING,
        NoticeKind.RESOLVED,
        NoticeKind.REFIRING,
        NoticeKind.RESOLVED,
    ]


def test_a_short_outage_held_back_by_the_flap_hold_is_still_told() -> None:
    fleet = Fleet(reopen_s=600.0)
    fleet.agent("a1", "online")
    fleet.agent("a1", "offline")
    fleet.wait(10)
    fleet.agent("a1", "online")
    fleet.wait(35)  # resolved message out at about +40 s
    assert len(fleet.notices) == 2
    fleet.agent("a1", "offline")  # 10 s later: back within the hold...
    fleet.wait(5)
    fleet.agent("a1", "online")  # ...and over before the hold ends
    fleet.wait(120)
    assert [k[0][1] for k in fleet.kinds()] == [
        NoticeKind.FIRING,
        NoticeKind.RESOLVED,
        NoticeKind.RESOLVED,
    ], "the outage nobody was paged for is told (merged) once the hold is over"
    assert fleet.notices[-1].items[0].flaps == 1
    fleet.wait(700)
    assert len(fleet.notices) == 3


# -- silences and acknowledgement --------------------------------------------------------
def test_a_silence_suppresses_notifications_but_the_alert_still_shows() -> None:
    fleet = Fleet()
    fleet.agent("a1", "online")
    fleet.send(AddSilence(silence("a1", None, 3600, fleet.now)))
    fleet.agent("a1", "offline")
    fleet.wait(60)
    assert fleet.phase("agent_offline") is AlertPhase.FIRING
    alert = fleet.alert("agent_offline")
    assert alert is not None
    assert fleet.state.silenced_until(alert, fleet.now) == T0 + 3600
    assert fleet.notices == []
    fleet.wait(3600)  # the silence ends while it still fires: now it pages
    assert fleet.kinds() == [[("agent_offline", NoticeKind.FIRING)]]


def test_a_silence_of_one_rule_leaves_the_agents_other_alerts_alone() -> None:
    fleet = Fleet(rules=(builtin("cpu_high", for_s=0.0), builtin("mem_high", for_s=0.0)))
    fleet.agent("a1", "online")
    fleet.send(AddSilence(silence("a1", "cpu_high", 3600, fleet.now)))
    fleet.values["a1"] = {"cpu": 99.0, "mem": 99.0}
    fleet.wait(3)
    assert fleet.kinds() == [[("mem_high", NoticeKind.FIRING)]]


def test_ending_a_silence_early_lets_the_page_out() -> None:
    fleet = Fleet()
    fleet.agent("a1", "online")
    fleet.send(AddSilence(silence(None, "agent_offline", 3600, fleet.now)))
    fleet.agent("a1", "offline")
    fleet.wait(10)
    assert fleet.notices == []
    fleet.send(EndSilence("s1", "bob"))
    fleet.wait(3)
    assert fleet.kinds() == [[("agent_offline", NoticeKind.FIRING)]]
    with pytest.raises(AlertError):
        fleet.send(EndSilence("s1", "bob"))


def test_unacknowledged_alerts_are_repeated_and_an_ack_stops_that() -> None:
    fleet = Fleet(repeat_s=3600.0)
    fleet.agent("a1", "online")
    fleet.agent("a2", "online")
    fleet.agent("a1", "offline")
    fleet.agent("a2", "offline")
    fleet.wait(3)
    a2 = fleet.alert("agent_offline", "a2")
    assert a2 is not None
    fleet.send(Acknowledge(a2.id, "telegram:alice"))
    fleet.wait(3602)  # an hour after the first page, plus the group wait
    reminders = [(n.agent, n.items[0].kind) for n in fleet.notices[2:]]
    assert reminders == [("a1", NoticeKind.REMINDER)]
    acked = fleet.alert("agent_offline", "a2")
    assert acked is not None
    assert acked.acked_by == "telegram:alice"


def test_acknowledging_an_unknown_alert_is_an_error() -> None:
    fleet = Fleet()
    with pytest.raises(AlertError, match="nope"):
        fleet.send(Acknowledge("nope", "alice"))


def test_an_acknowledged_alert_still_sends_its_resolved_message() -> None:
    fleet = Fleet()
    fleet.agent("a1", "online")
    fleet.agent("a1", "offline")
    fleet.wait(3)
    alert = fleet.alert("agent_offline")
    assert alert is not None
    fleet.send(Acknowledge(alert.id, "alice"))
    fleet.agent("a1", "online")
    fleet.wait(33)
    assert fleet.kinds()[-1] == [("agent_offline", NoticeKind.RESOLVED)]
    assert fleet.notices[-1].items[0].acked_by == "alice"


# -- grouping ----------------------------------------------------------------------------
def test_alerts_of_one_agent_within_the_group_wait_share_one_message() -> None:
    fleet = Fleet()
    fleet.agent("a1", "online")
    fleet.agent("a1", "critical")
    fleet.now += 1
    fleet.agent("a1", "offline")
    fleet.wait(2)
    assert fleet.kinds() == [
        [("agent_critical", NoticeKind.FIRING), ("agent_offline", NoticeKind.FIRING)]
    ]
    fleet.agent("a1", "online")
    fleet.wait(40)
    assert fleet.kinds()[1:] == [
        [("agent_critical", NoticeKind.RESOLVED), ("agent_offline", NoticeKind.RESOLVED)]
    ]


def test_alerts_of_different_agents_go_out_in_separate_messages() -> None:
    fleet = Fleet()
    for agent in ("a1", "a2"):
        fleet.agent(agent, "online")
        fleet.agent(agent, "offline")
    fleet.wait(3)
    assert sorted(n.agent for n in fleet.notices) == ["a1", "a2"]


# -- rules -------------------------------------------------------------------------------
def test_metric_rules_ignore_agents_that_are_not_online_or_late() -> None:
    fleet = Fleet(rules=(builtin("cpu_high", for_s=0.0),))
    fleet.values = {"dead": {"cpu": 99.0}, "stuck": {"cpu": 99.0}, "slow": {"cpu": 99.0}}
    fleet.agent("dead", "offline")
    fleet.agent("stuck", "critical")
    fleet.agent("slow", "late")
    fleet.wait(5)
    assert fleet.alert("cpu_high", "dead") is None
    assert fleet.alert("cpu_high", "stuck") is None
    assert fleet.phase("cpu_high", "slow") is AlertPhase.FIRING


def test_a_box_that_dies_while_its_cpu_alert_fires_gets_that_alert_resolved() -> None:
    fleet = Fleet(rules=(builtin("cpu_high", for_s=0.0, clear_for_s=10.0),))
    fleet.agent("a1", "online")
    fleet.values["a1"] = {"cpu": 99.0}
    fleet.wait(3)
    fleet.agent("a1", "offline")  # its last sample is still in "latest"
    fleet.wait(11)
    assert fleet.phase("cpu_high") is AlertPhase.RESOLVED


def test_a_stale_sample_is_no_data() -> None:
    fleet = Fleet(rules=(builtin("cpu_high", for_s=0.0),), stale_after_s=30.0)
    fleet.agent("a1", "online")
    fleet.send(MetricsObserved({"a1": (fleet.now - 60, {"cpu": 99.0})}))
    assert fleet.alert("cpu_high") is None


def test_a_clean_stop_does_not_page_but_a_lost_connection_does() -> None:
    fleet = Fleet()
    fleet.agent("a1", "online")
    fleet.agent("a1", "stopping")
    fleet.agent("a1", "offline", clean=True)
    fleet.agent("a2", "online")
    fleet.agent("a2", "offline", clean=False)
    fleet.wait(5)
    assert fleet.alert("agent_offline", "a1") is None
    assert [n.agent for n in fleet.notices] == ["a2"]


def test_clean_stops_page_when_the_rule_says_so() -> None:
    fleet = Fleet(rules=(builtin("agent_offline", clean_stops=True),))
    fleet.agent("a1", "online")
    fleet.agent("a1", "offline", clean=True)
    assert fleet.phase("agent_offline") is AlertPhase.FIRING


def test_rule_labels_restrict_which_agents_it_watches() -> None:
    db_disk = Rule(
        "db_disk",
        AlertSeverity.CRITICAL,
        for_s=0.0,
        clear_for_s=0.0,
        labels={"role": "db"},
        field="disk",
        op=">=",
        threshold=80.0,
    )
    fleet = Fleet(rules=(db_disk,))
    fleet.agent("db1", "online", role="db")
    fleet.agent("web1", "online", role="web")
    fleet.values = {"db1": {"disk": 80.0}, "web1": {"disk": 99.0}}
    fleet.wait(1)
    assert fleet.phase("db_disk", "db1") is AlertPhase.FIRING
    assert fleet.alert("db_disk", "web1") is None


def test_a_non_numeric_or_missing_field_is_no_data() -> None:
    fleet = Fleet(rules=(builtin("cpu_high", for_s=0.0),))
    fleet.agent("a1", "online")
    fleet.agent("a2", "online")
    fleet.values = {"a1": {"cpu": "lots"}, "a2": {"mem": 99.0}}  # type: ignore[dict-item]
    fleet.wait(2)
    assert fleet.state.open_alerts() == []


def test_after_reopen_s_a_new_incident_gets_a_new_id() -> None:
    fleet = Fleet(rules=(builtin("agent_offline", clear_for_s=0.0),), reopen_s=60.0)
    fleet.agent("a1", "online")
    fleet.agent("a1", "offline")
    fleet.wait(3)
    first = fleet.alert("agent_offline")
    fleet.agent("a1", "online")
    fleet.wait(61)
    assert fleet.alert("agent_offline") is None, "forgotten once it can no longer reopen"
    fleet.agent("a1", "offline")
    second = fleet.alert("agent_offline")
    assert first is not None
    assert second is not None
    assert first.id != second.id


# -- publishing and restarts -------------------------------------------------------------
def test_every_visible_change_republishes_the_agents_snapshot() -> None:
    fleet = Fleet()
    fleet.agent("a1", "online")
    assert fleet.published == []
    fleet.agent("a1", "offline")
    assert fleet.published == ["a1"]
    fleet.wait(3)  # the page went out: bookkeeping only, nothing visible changed
    assert fleet.published == ["a1"]
    alert = fleet.alert("agent_offline")
    assert alert is not None
    fleet.send(Acknowledge(alert.id, "alice"))
    assert fleet.published == ["a1", "a1"]


def test_a_restart_keeps_open_alerts_and_resolves_those_of_removed_rules() -> None:
    fleet = Fleet()
    fleet.agent("a1", "online")
    fleet.agent("a1", "offline")
    fleet.values["a1"] = {"cpu": 99.0}
    fleet.agent("a2", "online")
    fleet.wait(3)
    stored = list(fleet.state.alerts.values())
    config = EngineConfig(rules=(builtin("agent_offline"),), group_wait_s=2.0)
    state, actions = restore(config, stored, [], fleet.now)
    assert set(state.alerts) == {("agent_offline", "a1")}
    resolved = [a.alert.rule for a in actions if isinstance(a, AlertChanged)]
    assert resolved == []
    cpu = replace(stored[0], id="x", rule="gone_rule", phase=AlertPhase.FIRING)
    state, actions = restore(config, [*stored, cpu], [], fleet.now)
    changes = [(a.alert.rule, a.change) for a in actions if isinstance(a, AlertChanged)]
    assert changes == [("gone_rule", "resolved")]
    assert {a.agent for a in actions if isinstance(a, Publish)} == {"a1"}
    # The restored alert was paged already: no second page after the restart.
    state, actions = evaluate(state, Tick(), fleet.now + 10)
    assert not [a for a in actions if isinstance(a, Notify)]


# -- conditions reported by the maestro --------------------------------------------------
def test_a_broker_outage_is_one_incident_of_the_replica_not_of_agents() -> None:
    fleet = Fleet()
    for agent in ("a1", "a2", "a3"):
        fleet.agent(agent, "online")
    fleet.send(ConditionObserved("broker_unreachable", "maestro:main", True))
    fleet.wait(14)
    assert fleet.notices == [], "a short outage (a planned restart) pages nothing"
    fleet.wait(4)
    assert fleet.kinds() == [[("broker_unreachable", NoticeKind.FIRING)]]
    assert fleet.notices[0].agent == "maestro:main"
    assert "maestro:main" not in fleet.published, "a replica has no alerts/<id> snapshot"
    fleet.send(ConditionObserved("broker_unreachable", "maestro:main", False))
    fleet.wait(8)  # clear for clear_for_s (5 s), then the group wait
    assert fleet.kinds()[1:] == [[("broker_unreachable", NoticeKind.RESOLVED)]]


def test_a_condition_that_clears_before_for_s_says_nothing() -> None:
    fleet = Fleet()
    fleet.send(ConditionObserved("broker_unreachable", "maestro:main", True))
    fleet.wait(5)
    fleet.send(ConditionObserved("broker_unreachable", "maestro:main", False))
    fleet.wait(60)
    assert fleet.notices == []
    assert fleet.state.conditions == {}, "nothing left to track"


def test_clock_skew_fires_after_its_for_s_with_the_offset_in_the_summary() -> None:
    fleet = Fleet()
    fleet.agent("a1", "online")
    fleet.send(ConditionObserved("clock_skew", "a1", True, 7200.0, "ahead"))
    fleet.wait(59)
    assert fleet.phase("clock_skew") is AlertPhase.PENDING
    fleet.wait(4)
    assert fleet.phase("clock_skew") is AlertPhase.FIRING
    alert = fleet.alert("clock_skew")
    assert alert is not None
    assert "ahead by 7200 s" in alert.summary
    assert "a1" in fleet.published


def test_a_disabled_condition_rule_ignores_its_reports() -> None:
    fleet = Fleet(rules=(builtin("agent_offline"),))
    fleet.send(ConditionObserved("identity_conflict", "a1", True, None, "h1, h2"))
    fleet.wait(5)
    assert fleet.state.alerts == {}
    assert fleet.state.conditions == {}


def test_metric_rules_cover_agents_known_at_startup_without_a_liveness_change() -> None:
    fleet = Fleet(rules=(builtin("mem_high", for_s=2.0),))
    fleet.values["a1"] = {"mem": 100.0}
    fleet.wait(5)
    assert fleet.alert("mem_high") is None, "an agent the engine never heard of"
    fleet.send(AgentsKnown({"a1": AgentView("online")}))
    fleet.wait(3)
    assert fleet.phase("mem_high") is AlertPhase.FIRING


def test_known_agents_never_override_what_was_observed() -> None:
    fleet = Fleet()
    fleet.agent("a1", "offline")
    fleet.send(AgentsKnown({"a1": AgentView("online")}))
    assert fleet.state.agents["a1"].state == "offline"


def test_metric_rules_hold_while_the_link_is_down() -> None:
    fleet = Fleet(rules=(builtin("mem_high", for_s=0.0, clear_for_s=5.0),))
    fleet.agent("a1", "online")
    fleet.values["a1"] = {"mem": 100.0}
    fleet.wait(3)
    assert fleet.phase("mem_high") is AlertPhase.FIRING
    for _ in range(30):  # no data, but the link is down: no verdict either way
        fleet.now += 1
        fleet.send(MetricsObserved({}, hold=True))
    assert fleet.phase("mem_high") is AlertPhase.FIRING
    assert [k for k in fleet.kinds() if k[0][1] is NoticeKind.RESOLVED] == []


def test_freshness_is_judged_by_the_receive_time_given() -> None:
    fleet = Fleet(rules=(builtin("mem_high", for_s=0.0),))
    fleet.agent("a1", "online")
    # The latest map carries the maestro's receive time, whatever the agent's clock said.
    fleet.send(MetricsObserved({"a1": (fleet.now - 1, {"mem": 99.0})}))
    assert fleet.phase("mem_high") is AlertPhase.FIRING
    fleet.wait(120)
    fleet.send(MetricsObserved({"a1": (fleet.now - 31, {"mem": 99.0})}))
    fleet.wait(61)
    assert fleet.phase("mem_high") is AlertPhase.RESOLVED


def test_after_a_restart_a_condition_nobody_reports_again_resolves() -> None:
    fleet = Fleet()
    fleet.agent("a1", "online")
    fleet.send(ConditionObserved("clock_skew", "a1", True, 50.0, "ahead"))
    fleet.send(ConditionObserved("identity_conflict", "a1", True, None, "h1, h2"))
    fleet.wait(70)
    stored = list(fleet.state.alerts.values())
    assert {a.rule for a in stored if a.phase is AlertPhase.FIRING} == {
        "clock_skew",
        "identity_conflict",
    }
    fleet.state, _ = restore(fleet.state.config, stored, [], fleet.now)
    fleet.send(ConditionObserved("clock_skew", "a1", True, 50.0, "ahead"))  # still true
    fleet.wait(400)
    assert fleet.phase("clock_skew") is AlertPhase.FIRING
    assert fleet.phase("identity_conflict") is AlertPhase.RESOLVED
