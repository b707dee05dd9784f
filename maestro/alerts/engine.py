"""The pure alert engine: ``evaluate(state, event, now) -> (state, actions)``.

No clock, no I/O: the service feeds it events (liveness changes, the latest metrics
every ``eval_every_s``, operator actions) with the time, and performs what it returns
(store, notify, publish). Tests drive it with plain values and a fake clock.

Lifecycle of an incident (one per rule and agent at a time: that is the dedupe):
pending (condition holds, waiting ``for_s``) -> firing -> resolved (condition clear for
``clear_for_s``). A pending alert whose condition clears is dropped unannounced. A
resolved incident whose condition returns within ``reopen_s`` reopens (same id, firing
at once, ``flaps`` + 1) instead of starting a new one.

Notifications follow from comparing each incident with what the channels were last
told (:class:`~maestro.alerts.model.Told`): a firing incident nobody heard of, a
resolved one announced as firing, a reminder every ``repeat_s`` while unacknowledged.
Nothing is announced while a silence matches. An incident announced as resolved that
comes back (flapping) is announced again once ``flap_hold_s`` has passed since that
message: as "firing again" if it still fires, else as one "resolved" that counts the
times it came back. Damping merges messages but never drops an outage. What is due for
one agent waits ``group_wait_s`` and goes out as one
:class:`~maestro.notify.message.Notice`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from arete.payloads import AlertPhase
from maestro.alerts.model import (
    Acknowledge,
    Action,
    AddSilence,
    AgentObserved,
    AgentsKnown,
    AgentView,
    AlertChange,
    AlertChanged,
    AlertRecord,
    Condition,
    ConditionObserved,
    EndSilence,
    EngineConfig,
    EngineState,
    Event,
    MetricsObserved,
    Notify,
    Publish,
    SilenceChanged,
    SilenceRecord,
    Tick,
    Told,
    make_alert_id,
)
from maestro.alerts.rules import LIVE_STATES, MAESTRO_SCOPE, Rule
from maestro.errors import AlertError
from maestro.notify.message import Notice, NoticeItem, NoticeKind


@dataclass
class _Work:
    """A mutable copy of the state for one evaluation, and the actions it produced."""

    config: EngineConfig
    alerts: dict[tuple[str, str], AlertRecord]
    agents: dict[str, AgentView]
    silences: dict[str, SilenceRecord]
    groups: dict[str, float]
    conditions: dict[tuple[str, str], Condition] = field(default_factory=dict)
    actions: list[Action] = field(default_factory=list)
    dirty: set[str] = field(default_factory=set)  # agents whose snapshot changed

    @classmethod
    def of(cls, state: EngineState) -> _Work:
        return cls(
            state.config,
            dict(state.alerts),
            dict(state.agents),
            dict(state.silences),
            dict(state.groups),
            dict(state.conditions),
        )

    def freeze(self) -> tuple[EngineState, list[Action]]:
        actions = self.actions + [Publish(agent) for agent in sorted(self.dirty)]
        return self.view(), actions

    def change(self, alert: AlertRecord, change: AlertChange) -> None:
        self.alerts[alert.key] = alert
        self.actions.append(AlertChanged(alert, change))
        rule = self.config.rule(alert.rule)
        if change != "notified" and (rule is None or rule.scope != MAESTRO_SCOPE):
            self.dirty.add(alert.agent)  # replicas have no alerts/<id> snapshot

    def view(self) -> EngineState:
        return EngineState(
            self.config, self.alerts, self.agents, self.silences, self.groups, self.conditions
        )


def initial_state(config: EngineConfig) -> EngineState:
    return EngineState(config)


def restore(
    config: EngineConfig,
    alerts: list[AlertRecord],
    silences: list[SilenceRecord],
    now: float,
) -> tuple[EngineState, list[Action]]:
    """The state after a restart, from stored records. Alerts of rules that no longer
    exist resolve; every agent with open alerts gets its snapshot republished. Open
    alerts of condition rules start as "clear": their reporters say again what holds
    after a restart (each reports a condition when it starts holding), and one nobody
    reports again within its ``clear_for_s`` resolves."""
    work = _Work(config, {}, {}, {s.id: s for s in silences if s.active(now)}, {})
    for alert in alerts:
        newer = work.alerts.get(alert.key)
        if newer is not None and newer.started_at >= alert.started_at:
            continue  # two stored incidents of one key: keep the newest
        work.alerts[alert.key] = alert
        if alert.is_open:
            work.dirty.add(alert.agent)
    for alert in list(work.alerts.values()):
        rule = config.rule(alert.rule)
        if alert.is_open and rule is None:
            resolved = replace(alert, phase=AlertPhase.RESOLVED, since=now, resolved_at=now)
            work.change(resolved, "resolved")
        elif alert.is_open and rule is not None and rule.condition:
            work.conditions[alert.key] = Condition(False)
    return work.freeze()


def evaluate(state: EngineState, event: Event, now: float) -> tuple[EngineState, list[Action]]:
    """Apply ``event`` at ``now``. Raises :class:`AlertError` for an unknown alert or
    silence id (operator events only)."""
    work = _Work.of(state)
    if isinstance(event, AgentObserved):
        work.agents[event.agent] = AgentView(event.state, event.clean, dict(event.labels))
        _state_rules(work, [event.agent], now)
    elif isinstance(event, AgentsKnown):
        for agent, view in event.agents.items():
            work.agents.setdefault(agent, view)
        _state_rules(work, _agents_to_tick(work), now)
    elif isinstance(event, MetricsObserved):
        if not event.hold:
            _metric_rules(work, event.latest, now)
        _state_rules(work, _agents_to_tick(work), now)
        _condition_rules(work, now)
    elif isinstance(event, ConditionObserved):
        _observe_condition(work, event)
        _condition_rules(work, now)
    elif isinstance(event, Tick):
        _state_rules(work, _agents_to_tick(work), now)
        _condition_rules(work, now)
    elif isinstance(event, Acknowledge):
        _acknowledge(work, event, now)
    elif isinstance(event, AddSilence):
        _add_silence(work, event.silence)
    elif isinstance(event, EndSilence):
        _end_silence(work, event, now)
    _expire_silences(work, now)
    _notify(work, now)
    _forget_resolved(work, now)
    return work.freeze()


# -- conditions --------------------------------------------------------------------------
def _agents_to_tick(work: _Work) -> list[str]:
    """Agents with a state-rule incident: only those have timers to advance (a new
    incident starts from an :class:`AgentObserved`), so a tick stays cheap on big fleets."""
    names = {rule.name for rule in work.config.rules if rule.is_state}
    return sorted({agent for rule, agent in work.alerts if rule in names})


def _state_rules(work: _Work, agents: list[str], now: float) -> None:
    rules = [rule for rule in work.config.rules if rule.is_state]
    for agent in agents:
        view = work.agents.get(agent)
        for rule in rules:
            current = work.alerts.get((rule.name, agent))
            firing = current is not None and current.phase is AlertPhase.FIRING
            condition: bool | None
            if view is None:
                condition = None  # not heard since a restart: hold what we have
            elif not rule.applies_to(view.labels):
                condition = False
            else:
                condition = rule.state_holds(view.state, view.clean, firing=firing)
            _advance(work, rule, agent, condition, value=None, now=now)


def _metric_rules(
    work: _Work, latest: Mapping[str, tuple[float, Mapping[str, Any]]], now: float
) -> None:
    rules = [rule for rule in work.config.rules if rule.is_metric]
    names = {rule.name for rule in rules}
    agents = set(latest) | {agent for (rule, agent) in work.alerts if rule in names}
    for agent in sorted(agents):
        view = work.agents.get(agent)
        sample = latest.get(agent)
        # No CPU alert for a dead box: only online/late agents with a fresh sample count;
        # anything else is "no data", which clears (after clear_for_s) like a low value.
        usable = (
            view is not None
            and view.state in LIVE_STATES
            and sample is not None
            and now - sample[0] <= work.config.stale_after_s
        )
        for rule in rules:
            value = _number(sample[1].get(rule.field or "")) if usable and sample else None
            if view is None or value is None or not rule.applies_to(view.labels):
                _advance(work, rule, agent, False, value=None, now=now)
            else:
                _advance(work, rule, agent, rule.value_holds(value), value=value, now=now)


def _observe_condition(work: _Work, event: ConditionObserved) -> None:
    rule = work.config.rule(event.rule)
    if rule is None or not rule.condition:
        return  # a rule that is disabled (or unknown to this build): nothing to track
    key = (event.rule, event.subject)
    if event.holds:
        work.conditions[key] = Condition(True, event.value, event.detail)
    elif key in work.conditions or key in work.alerts:
        work.conditions[key] = Condition(False)


def _condition_rules(work: _Work, now: float) -> None:
    for (name, subject), condition in sorted(work.conditions.items()):
        rule = work.config.rule(name)
        if rule is None:
            del work.conditions[(name, subject)]
            continue
        view = work.agents.get(subject)
        holds = condition.holds and (view is None or rule.applies_to(view.labels))
        _advance(
            work, rule, subject, holds, value=condition.value, now=now, detail=condition.detail
        )
        alert = work.alerts.get((name, subject))
        if not condition.holds and (alert is None or not alert.is_open):
            del work.conditions[(name, subject)]  # nothing left to time


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


# -- lifecycle ---------------------------------------------------------------------------
def _advance(
    work: _Work,
    rule: Rule,
    agent: str,
    condition: bool | None,
    *,
    value: float | None,
    now: float,
    detail: str = "",
) -> None:
    if condition is None:
        return
    alert = work.alerts.get((rule.name, agent))
    if alert is None or alert.phase is AlertPhase.RESOLVED:
        if condition:
            _open(work, rule, agent, alert, value=value, now=now, detail=detail)
    elif alert.phase is AlertPhase.PENDING:
        if not condition:  # never fired: gone without a word
            work.change(_resolved(alert, now), "resolved")
        elif now - alert.since >= rule.for_s:
            fired = replace(
                alert,
                phase=AlertPhase.FIRING,
                since=now,
                fired_at=now,
                value=value,
                summary=rule.describe(agent, value, detail),
            )
            work.change(fired, "firing")
    elif condition:  # firing and still true: forget a clearing that did not last
        if alert.clear_since is not None:
            work.alerts[alert.key] = replace(alert, clear_since=None)
    else:  # firing: resolve once the condition has stayed clear for clear_for_s
        clear_since = now if alert.clear_since is None else alert.clear_since
        if now - clear_since >= rule.clear_for_s:
            work.change(_resolved(alert, now), "resolved")
        elif alert.clear_since is None:
            work.alerts[alert.key] = replace(alert, clear_since=now)


def _open(
    work: _Work,
    rule: Rule,
    agent: str,
    last: AlertRecord | None,
    *,
    value: float | None,
    now: float,
    detail: str = "",
) -> None:
    """The condition holds and no incident is open: reopen the last one or start one."""
    summary = rule.describe(agent, value, detail)
    if (
        last is not None
        and last.fired_at is not None
        and last.resolved_at is not None
        and now - last.resolved_at < work.config.reopen_s
    ):
        reopened = replace(
            last,
            phase=AlertPhase.FIRING,
            since=now,
            resolved_at=None,
            clear_since=None,
            flaps=last.flaps + 1,
            value=value,
            summary=summary,
        )
        work.change(reopened, "reopened")
        return
    fresh = AlertRecord(
        id=make_alert_id(rule.name, agent, now),
        rule=rule.name,
        agent=agent,
        severity=rule.severity,
        phase=AlertPhase.PENDING,
        started_at=now,
        since=now,
        summary=summary,
        value=value,
    )
    if rule.for_s <= 0:
        work.change(replace(fresh, phase=AlertPhase.FIRING, fired_at=now), "firing")
    else:
        work.change(fresh, "pending")


def _resolved(alert: AlertRecord, now: float) -> AlertRecord:
    return replace(alert, phase=AlertPhase.RESOLVED, since=now, resolved_at=now, clear_since=None)


# -- operator actions --------------------------------------------------------------------
def _acknowledge(work: _Work, event: Acknowledge, now: float) -> None:
    alert = work.view().find(event.alert_id)
    if alert is None:
        raise AlertError(f"no current alert with id {event.alert_id!r}")
    if alert.is_open and alert.acked_by is None:
        work.change(replace(alert, acked_by=event.actor, acked_at=now), "acked")


def _add_silence(work: _Work, silence: SilenceRecord) -> None:
    work.silences[silence.id] = silence
    work.actions.append(SilenceChanged(silence, "added"))
    _touch_matching(work, silence)


def _end_silence(work: _Work, event: EndSilence, now: float) -> None:
    silence = work.silences.get(event.silence_id)
    if silence is None:
        raise AlertError(f"no active silence with id {event.silence_id!r}")
    ended = replace(silence, ended_by=event.actor, ended_at=now)
    del work.silences[silence.id]
    work.actions.append(SilenceChanged(ended, "ended"))
    _touch_matching(work, silence)


def _expire_silences(work: _Work, now: float) -> None:
    for silence in list(work.silences.values()):
        if silence.ends_at <= now:
            del work.silences[silence.id]
            _touch_matching(work, silence)


def _touch_matching(work: _Work, silence: SilenceRecord) -> None:
    """Republish agents whose alerts show this silence."""
    for alert in work.alerts.values():
        if alert.is_open and silence.matches(alert.agent, alert.rule):
            work.dirty.add(alert.agent)


# -- notifications -----------------------------------------------------------------------
def _due(alert: AlertRecord, silenced: bool, now: float, config: EngineConfig) -> NoticeKind | None:
    """The message this incident is owed now, if any."""
    kind: NoticeKind | None = None
    told_at = alert.told_at if alert.told_at is not None else now
    if silenced:
        kind = None
    elif alert.phase is AlertPhase.RESOLVED:
        if alert.told is Told.FIRING:
            kind = NoticeKind.RESOLVED
        elif _owed(alert) and now - told_at >= config.flap_hold_s:
            kind = NoticeKind.RESOLVED  # it came back and went unannounced: say so, merged
    elif alert.phase is not AlertPhase.FIRING:
        kind = None
    elif alert.told is Told.NONE:
        kind = NoticeKind.FIRING
    elif alert.told is Told.RESOLVED:  # flapping: hold it until flap_hold_s after "resolved"
        kind = NoticeKind.REFIRING if now - told_at >= config.flap_hold_s else None
    elif config.repeat_s > 0 and alert.acked_by is None and now - told_at >= config.repeat_s:
        kind = NoticeKind.REMINDER
    return kind


def _owed(alert: AlertRecord) -> bool:
    """Resolved after the channels heard "resolved": an outage they were not told of."""
    return (
        alert.told is Told.RESOLVED
        and alert.told_at is not None
        and alert.resolved_at is not None
        and alert.resolved_at > alert.told_at
    )


def _notify(work: _Work, now: float) -> None:
    view = work.view()
    due: dict[str, list[tuple[AlertRecord, NoticeKind]]] = {}
    for alert in work.alerts.values():
        kind = _due(alert, view.silenced_until(alert, now) is not None, now, work.config)
        if kind is not None:
            due.setdefault(alert.agent, []).append((alert, kind))
    for agent in list(work.groups):
        if agent not in due:  # what was due resolved or got silenced within the window
            del work.groups[agent]
    for agent, items in sorted(due.items()):
        flush_at = work.groups.setdefault(agent, now + work.config.group_wait_s)
        if now < flush_at:
            continue
        del work.groups[agent]
        items.sort(key=lambda item: (item[0].started_at, item[0].rule))
        notice = Notice(agent=agent, ts=now, items=[_item(a, kind) for a, kind in items])
        work.actions.append(Notify(notice))
        for alert, kind in items:
            told = Told.RESOLVED if kind is NoticeKind.RESOLVED else Told.FIRING
            work.change(replace(alert, told=told, told_at=now), "notified")


def _item(alert: AlertRecord, kind: NoticeKind) -> NoticeItem:
    return NoticeItem(
        alert_id=alert.id,
        rule=alert.rule,
        severity=alert.severity,
        kind=kind,
        summary=alert.summary,
        since=alert.started_at,
        value=alert.value,
        acked_by=alert.acked_by,
        flaps=alert.flaps,
    )


def _forget_resolved(work: _Work, now: float) -> None:
    """Drop resolved incidents that can no longer reopen and owe no message."""
    view = work.view()
    for key, alert in list(work.alerts.items()):
        if alert.is_open:
            continue
        resolved_at = alert.resolved_at if alert.resolved_at is not None else alert.since
        if alert.fired_at is not None and now - resolved_at < work.config.reopen_s:
            continue
        if (alert.told is Told.FIRING or _owed(alert)) and view.silenced_until(alert, now) is None:
            continue  # its resolved message is still to go out
        del work.alerts[key]
