"""The audit log: who did what to which target, newest first."""

from __future__ import annotations

from functools import partial
from typing import Annotated

from fastapi import APIRouter, Query

from maestro.errors import StoreError
from maestro.store.audit import list_audit
from web_api.auth.roles import Role
from web_api.deps import CurrentUser, Fleet, needs
from web_api.errors import ApiError
from web_api.models import AuditPublic
from web_api.visibility import audit_detail

router = APIRouter(tags=["audit"])


@router.get("/audit", **needs(Role.VIEWER))
async def read_audit(
    *,
    user: CurrentUser,
    m: Fleet,
    actor: Annotated[str | None, Query(max_length=300, description="e.g. user:alice")] = None,
    target: Annotated[str | None, Query(max_length=300)] = None,
    before_id: Annotated[int | None, Query(ge=1, le=2**62, description="Next page")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AuditPublic]:
    try:
        entries = await m.store.read(
            partial(list_audit, actor=actor, target=target, before_id=before_id, limit=limit)
        )
    except StoreError as exc:
        raise ApiError(422, str(exc), "invalid") from None
    return [
        AuditPublic(
            id=e.id,
            ts=e.ts,
            actor=e.actor,
            action=e.action,
            target=e.target,
            detail=audit_detail(user.role, e.action, e.detail),
        )
        for e in entries
    ]
