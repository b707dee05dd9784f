"""The pure alert engine: ``evaluate(state, event, now) -> (state, actions)``.

No clock, no I/O: the service feeds it events (liveness changes, the latest metrics
every ``eval_every_s``, operator actions) with the time, and performs what it returns
(store, notify, publish). Tests drive it with plain values and a fake clock.

Lifecycle of an incident (one per rule and agent at a time: that is the dedupe):
pending (condition holds, waiting ``for_s``) -> firing -> resolved (condition clear for
``clear_for_s``). A pending alert whose condition clears is dropped unannounced. A
resolved incident whose condition returns within ``reopen_s`` reopens (same id, firing
at once, ``flaps`` + 1) instead of starting a new one.

Notifications (:mod:`maestro.alerts.notices`) follow from comparing each incident with
what the channels were last told (:class:`~maestro.alerts.model.Told`): a firing
incident nobody heard of, a resolved one announced as firing, a reminder every
``repeat_s`` while unacknowledged. Nothing is announced while a silence matches. An
incident announced as resolved that comes back (flapping) is announced again once
``flap_hold_s`` has passed since that message: as "firing again" if it still fires, else
as one "resolved" that counts the times it came back. Damping merges messages but never
drops an outage. What is due for one agent waits ``group_wait_s`` and goes out as one
:class:`~maestro.notify.message.Notice`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from arete.payloads import AlertPhase
from maestro.alerts.model import (
    Acknowledge,
    Action,
    AddSilence,
    AgentObserved,
    AgentRemoved,
    AgentsKnown,
    AgentView,
    AlertRecord,
    Condition,
    ConditionObserved,
    EndSilence,
    EngineConfig,
    EngineState,
    Event,
    MetricsObserved,
    SilenceChanged,
    SilenceRecord,
    Tick,
    Told,
    make_alert_id,
)
from maestro.alerts.notices import forget_resolved, notify
from maestro.alerts.rules import LIVE_STATES, Rule
from maestro.alerts.work import Work
from maestro.errors import AlertError


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
    work = Work(config, {}, {}, {s.id: s for s in silences if s.active(now)}, {})
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
    work = Work.of(state)
    if isinstance(event, AgentObserved):
        work.agents[event.agent] = AgentView(event.state, event.clean, dict(event.labels))
        _state_rules(work, [event.agent], now)
    elif isinstance(event, AgentRemoved):
        _forget_agent(work, event.agent, now)
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
    notify(work, now)
    forget_resolved(work, now)
    return work.freeze()


# -- conditions --------------------------------------------------------------------------
def _agents_to_tick(work: Work) -> list[str]:
    """Agents with a state-rule incident: only those have timers to advance (a new
    incident starts from an :class:`AgentObserved`), so a tick stays cheap on big fleets."""
    names = {rule.name for rule in work.config.rules if rule.is_state}
    return sorted({agent for rule, agent in work.alerts if rule in names})


def _state_rules(work: Work, agents: list[str], now: float) -> None:
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
    work: Work, latest: Mapping[str, tuple[float, Mapping[str, Any]]], now: float
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


def _observe_condition(work: Work, event: ConditionObserved) -> None:
    rule = work.config.rule(event.rule)
    if rule is None or not rule.condition:
        return  # a rule that is disabled (or unknown to this build): nothing to track
    key = (event.rule, event.subject)
    if event.holds:
        work.conditions[key] = Condition(True, event.value, event.detail)
    elif key in work.conditions or key in work.alerts:
        work.conditions[key] = Condition(False)


def _condition_rules(work: Work, now: float) -> None:
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
    work: Work,
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
    work: Work,
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


def _forget_agent(work: Work, agent: str, now: float) -> None:
    """Resolve the agent's open incidents as told (no "resolved" message is owed, now or
    after a restart), then forget the agent: no incident can reopen, nothing is grouped,
    no condition is remembered, and its snapshot is not republished."""
    for key, alert in list(work.alerts.items()):
        if alert.agent != agent:
            continue
        if alert.is_open:
            quiet = replace(_resolved(alert, now), told=Told.RESOLVED, told_at=now)
            work.change(quiet, "resolved")
        del work.alerts[key]
    work.agents.pop(agent, None)
    work.groups.pop(agent, None)
    for key in [k for k in work.conditions if k[1] == agent]:
        del work.conditions[key]
    work.dirty.discard(agent)


# -- operator actions --------------------------------------------------------------------
def _acknowledge(work: Work, event: Acknowledge, now: float) -> None:
    alert = work.view().find(event.alert_id)
    if alert is None:
        raise AlertError(f"no current alert with id {event.alert_id!r}")
    if alert.is_open and alert.acked_by is None:
        work.change(replace(alert, acked_by=event.actor, acked_at=now), "acked")


def _add_silence(work: Work, silence: SilenceRecord) -> None:
    work.silences[silence.id] = silence
    work.actions.append(SilenceChanged(silence, "added"))
    _touch_matching(work, silence)


def _end_silence(work: Work, event: EndSilence, now: float) -> None:
    silence = work.silences.get(event.silence_id)
    if silence is None:
        raise AlertError(f"no active silence with id {event.silence_id!r}")
    ended = replace(silence, ended_by=event.actor, ended_at=now)
    del work.silences[silence.id]
    work.actions.append(SilenceChanged(ended, "ended"))
    _touch_matching(work, silence)


def _expire_silences(work: Work, now: float) -> None:
    for silence in list(work.silences.values()):
        if silence.ends_at <= now:
            del work.silences[silence.id]
            _touch_matching(work, silence)


def _touch_matching(work: Work, silence: SilenceRecord) -> None:
    """Republish agents whose alerts show this silence."""
    for alert in work.alerts.values():
        if alert.is_open and silence.matches(alert.agent, alert.rule):
            work.dirty.add(alert.agent)
