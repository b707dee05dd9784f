"""Alerts and silences. Acks and silences are audited by the alert service itself."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from maestro.alerts.rules import BUILTIN_RULES, Rule
from maestro.errors import AlertError, StoreError
from web_api.auth.roles import Role
from web_api.deps import CurrentUser, Fleet, Operator, needs
from web_api.errors import ApiError
from web_api.models import (
    AlertPublic,
    AlertSilenceCreate,
    RulePublic,
    SilenceCreate,
    SilencePublic,
)

router = APIRouter(tags=["alerts"])

IdPath = Annotated[str, Path(min_length=1, max_length=64)]


def alert_error(exc: AlertError | StoreError) -> ApiError:
    text = str(exc)
    if isinstance(exc, StoreError):
        return ApiError(422, text, "invalid")
    if text.startswith("no "):
        return ApiError(404, text)
    return ApiError(422, text, "invalid")


def rule_rows(enabled: Sequence[Rule]) -> list[dict[str, Any]]:
    """The enabled rules in their order, then the built-ins switched off."""
    on = {rule.name for rule in enabled}
    off = [rule for rule in BUILTIN_RULES if rule.name not in on]
    return [_rule_row(r, True) for r in enabled] + [_rule_row(r, False) for r in off]


def _rule_row(rule: Rule, enabled: bool) -> dict[str, Any]:
    kind = "metric" if rule.is_metric else "condition" if rule.condition else "state"
    return {
        "name": rule.name,
        "kind": kind,
        "builtin": rule.builtin,
        "enabled": enabled,
        "severity": str(rule.severity),
        "for_s": rule.for_s,
        "clear_for_s": rule.clear_for_s,
        "field": rule.field,
        "op": rule.op,
        "threshold": rule.threshold,
        "labels": dict(rule.labels),
        "states": sorted(rule.states),
        "scope": rule.scope,
        "summary": rule.summary,
    }


@router.get("/alerts", **needs(Role.VIEWER))
async def list_alerts(
    user: CurrentUser,
    m: Fleet,
    phase: Annotated[str | None, Query(max_length=16, description="pending|firing|resolved")] = (
        None
    ),
    agent: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AlertPublic]:
    """Alerts newest first, resolved ones included."""
    try:
        alerts = await m.alerts.list_alerts(phase=phase, agent=agent, limit=limit)
    except (AlertError, StoreError) as exc:
        raise alert_error(exc) from None
    return [AlertPublic.model_validate(a.to_json()) for a in alerts]


@router.get("/alerts/rules", **needs(Role.VIEWER))
async def list_rules(user: CurrentUser, m: Fleet) -> list[RulePublic]:
    """Every alert rule, built-in and custom, with its thresholds and timings; built-ins
    switched off are listed with ``enabled`` false."""
    return [RulePublic.model_validate(row) for row in rule_rows(m.alerts.rules)]


@router.get("/alerts/{alert_id}", **needs(Role.VIEWER, 404))
async def get_alert(user: CurrentUser, m: Fleet, alert_id: IdPath) -> AlertPublic:
    try:
        alert = await m.alerts.get_alert(alert_id)
    except AlertError as exc:
        raise alert_error(exc) from None
    return AlertPublic.model_validate(alert.to_json())


@router.post("/alerts/{alert_id}/ack", **needs(Role.OPERATOR, 404))
async def ack_alert(user: Operator, m: Fleet, alert_id: IdPath) -> AlertPublic:
    """Acknowledge: no more reminders, and everyone sees who took it."""
    try:
        alert = await m.alerts.ack(alert_id, user.actor)
    except AlertError as exc:
        raise alert_error(exc) from None
    return AlertPublic.model_validate(alert.to_json())


@router.post("/alerts/{alert_id}/silence", status_code=201, **needs(Role.OPERATOR, 404))
async def silence_alert(
    user: Operator, m: Fleet, alert_id: IdPath, body: AlertSilenceCreate
) -> SilencePublic:
    """Silence this alert's rule on its agent for ``duration_s``."""
    try:
        silence = await m.alerts.silence_alert(alert_id, body.duration_s, user.actor)
    except AlertError as exc:
        raise alert_error(exc) from None
    return SilencePublic.model_validate(silence.to_json())


@router.get("/silences", **needs(Role.VIEWER))
async def list_silences(user: CurrentUser, m: Fleet) -> list[SilencePublic]:
    """The silences in force, soonest to end first."""
    return [SilencePublic.model_validate(s.to_json()) for s in await m.alerts.list_silences()]


@router.post("/silences", status_code=201, **needs(Role.OPERATOR))
async def create_silence(user: Operator, m: Fleet, body: SilenceCreate) -> SilencePublic:
    """Mute notifications of an agent's alerts, a rule's, or one rule on one agent."""
    try:
        silence = await m.alerts.silence(
            agent=body.agent,
            rule=body.rule,
            duration_s=body.duration_s,
            actor=user.actor,
            reason=body.reason,
        )
    except AlertError as exc:
        raise alert_error(exc) from None
    return SilencePublic.model_validate(silence.to_json())


@router.delete("/silences/{silence_id}", **needs(Role.OPERATOR, 404))
async def end_silence(user: Operator, m: Fleet, silence_id: IdPath) -> SilencePublic:
    try:
        silence = await m.alerts.unsilence(silence_id, user.actor)
    except AlertError as exc:
        raise alert_error(exc) from None
    return SilencePublic.model_validate(silence.to_json())
