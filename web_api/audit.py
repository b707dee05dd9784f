"""Appending the web API's own actions (commands, user changes, logins) to the audit log."""

from __future__ import annotations

import logging
import time
from functools import partial
from typing import Any

from maestro.app import Maestro
from maestro.late_writes import LateWrites
from maestro.store.audit import add_audit

log = logging.getLogger("arete.web.audit")


async def audit(
    maestro: Maestro | None,
    actor: str,
    action: str,
    target: str = "",
    detail: dict[str, Any] | None = None,
) -> None:
    """Store one entry; without a maestro (no store) the entry is logged instead.

    If the store refuses it (the maestro's disk is full) the entry is kept in memory and
    stored once it can be (:class:`~maestro.late_writes.LateWrites`): the request that
    did the action does not fail for its record."""
    if maestro is None:
        log.warning("no store for the audit actor=%s action=%s target=%s", actor, action, target)
        return
    await LateWrites.of(maestro.store).write(
        partial(add_audit, ts=time.time(), actor=actor, action=action, target=target, detail=detail)
    )
