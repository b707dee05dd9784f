"""Automatic rollouts per label group, as Watchtower polled for new images.

``[web] auto_update = [{selector = {role = "web"}, every_s = 300}]``: every ``every_s``
the group's agents are compared with the newest *published* release of the maestro's
store; when one of them runs an older version and no rollout of that group is under
way, a rollout starts (actor ``auto-update``, the group's canary, batch size and abort
threshold). A version whose automatic rollout did not end ``done`` is not tried again
automatically (it would halt and roll back every ``every_s``): a newer release, or a
person (``arete fleet update``), moves the group on.

:func:`decide` is the pure rule; :class:`AutoUpdater` runs it and starts the jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from arete.release import compare_versions, parse_version
from maestro.errors import CommandError
from web_api.audit import audit
from web_api.jobs import JobRunner, select_agents
from web_api.settings import AutoUpdateGroup

log = logging.getLogger("arete.web.auto_update")

ACTOR: Final = "auto-update"
TICK_S: Final = 1.0


def older(version: str | None, newest: str) -> bool:
    """Whether an agent on ``version`` is behind ``newest`` (an unreadable version is not:
    nothing is rolled over an agent whose version cannot be compared)."""
    if version is None:
        return False
    try:
        parse_version(version)
    except ValueError:
        return False
    return compare_versions(newest, version) > 0


@dataclass
class GroupState:
    next_at: float = 0.0
    job_id: str | None = None
    job_version: str | None = None
    given_up: set[str] = field(default_factory=set)  # versions whose rollout failed


def decide(
    group: AutoUpdateGroup,
    state: GroupState,
    *,
    newest: str | None,
    views: Iterable[Mapping[str, Any]],
    job_state: str | None,
    now: float,
) -> str | None:
    """The version to roll out to the group now, or None. ``job_state``: the state of
    the group's last automatic rollout (None if none or it is forgotten)."""
    if now < state.next_at:
        return None
    state.next_at = now + group.every_s
    if job_state == "running":
        return None
    if job_state is not None and job_state != "done" and state.job_version is not None:
        state.given_up.add(state.job_version)
    state.job_id = None
    if newest is None or newest in state.given_up:
        return None
    seen = list(views)
    chosen = set(select_agents(seen, group.selector, None))
    if any(older(v.get("version"), newest) for v in seen if v["id"] in chosen):
        return newest
    return None


class AutoUpdater:
    """Looks at every group each :data:`TICK_S` and starts the rollouts :func:`decide` asks."""

    def __init__(self, runner: JobRunner, groups: Iterable[AutoUpdateGroup]) -> None:
        self.runner = runner
        self.groups = [(group, GroupState()) for group in groups]
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self.run(), name="auto-update")

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    async def run(self) -> None:
        while True:
            try:
                await self.check(time.time())
            except Exception:  # a bad scan must not end the watcher
                log.exception("auto-update check failed")
            await asyncio.sleep(TICK_S)

    async def check(self, now: float) -> None:
        maestro = self.runner.maestro
        store = getattr(maestro, "releases", None)
        published = [r.version for r in store.releases() if r.published] if store else []
        newest = max(published, key=parse_version, default=None)
        views = maestro.registry.views()
        for group, state in self.groups:
            job = self.runner.get(state.job_id) if state.job_id else None
            version = decide(
                group,
                state,
                newest=newest,
                views=views,
                # A halted rollout is under way until its rollback is over.
                job_state=None
                if job is None
                else "running"
                if job.finished_at is None
                else job.state,
                now=now,
            )
            if version is not None:
                await self._start(group, state, version)

    async def _start(self, group: AutoUpdateGroup, state: GroupState, version: str) -> None:
        try:
            job = self.runner.create_update(
                version=version,
                labels=group.selector,
                agent_ids=None,
                canary=group.canary,
                batch_size=group.batch_size,
                health_timeout_s=group.health_timeout_s,
                max_failures=group.max_failures,
                rollback_on_abort=True,
                actor=ACTOR,
            )
        except CommandError as exc:
            log.warning("auto-update of %s to %s not started: %s", group.selector, version, exc)
            return
        state.job_id, state.job_version = job.id, version
        log.info("auto-update job_id=%s version=%s selector=%s", job.id, version, group.selector)
        detail = {"name": job.name, "version": version, "labels": group.selector}
        await audit(
            self.runner.maestro, ACTOR, "job.start", job.id, detail | {"agents": len(job.agents)}
        )
