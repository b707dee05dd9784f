"""Notifier health: the channels alerts are sent to, and how delivery goes."""

from __future__ import annotations

from fastapi import APIRouter

from web_api.auth.roles import Role
from web_api.deps import Fleet, Operator, needs
from web_api.models import NotifierPublic, NotifiersPublic

router = APIRouter(tags=["alerts"])


@router.get("/notifiers", **needs(Role.OPERATOR))
async def notifier_health(user: Operator, m: Fleet) -> NotifiersPublic:
    """Each configured channel: status (ok, retrying, failing), last delivery, last
    failure and its reason, and how many notifications wait in its queue. Operators and
    admins only: it names the chats alerts go to."""
    channels = [NotifierPublic.model_validate(h.to_json()) for h in await m.notifier.health()]
    return NotifiersPublic(configured=bool(channels), channels=channels)
