"""The audit log: who did what to which target, newest first."""

from __future__ import annotations

import sqlite3
from typing import Annotated

from fastapi import APIRouter, Query

from maestro.errors import StoreError
from maestro.store.audit import AuditEntry, list_audit
from maestro.store.replicas import schemas_with
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
    before_ts: Annotated[
        float | None, Query(ge=0, le=1e11, description="Next page: ts of the last entry")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AuditPublic]:
    """Newest first, every replica's entries merged (page with ``before_ts`` and
    ``before_id`` of the last entry)."""
    own = m.store.path

    def query(conn: sqlite3.Connection) -> list[AuditEntry]:
        return list_audit(
            conn,
            actor=actor,
            target=target,
            before_id=before_id,
            before_ts=before_ts,
            limit=limit,
            schemas=schemas_with(conn, own, "audit"),
        )

    try:
        entries = await m.store.read(query)
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
