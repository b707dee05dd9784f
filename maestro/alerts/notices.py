"""What the channels are owed: the notification half of the alert engine.

Each incident is compared with what the channels were last told (:class:`Told`); what is
due for one agent waits ``group_wait_s`` and goes out as one :class:`Notice`. A flapping
incident is told again once ``flap_hold_s`` has passed since its resolved message, as
"firing again" or as one "resolved" counting the times it came back: damping merges
messages, it never drops an outage.
"""

from __future__ import annotations

from dataclasses import replace

from arete.payloads import AlertPhase
from maestro.alerts.model import AlertRecord, EngineConfig, Notify, Told
from maestro.alerts.work import Work
from maestro.notify.message import Notice, NoticeItem, NoticeKind


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


def notify(work: Work, now: float) -> None:
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


def forget_resolved(work: Work, now: float) -> None:
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
