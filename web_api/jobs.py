"""Jobs: one command fanned out to agents chosen by labels or ids, in batches.

A job sends its command to ``batch_size`` agents at a time, waits for that batch to
finish, and stops before the next batch once more than ``max_failures`` commands did
not end ``ok``. Jobs live in memory (the last :data:`KEEP_JOBS`); their commands are
in the command store (``job_id``) and a summary of each job goes to the audit log when
it ends, so a restart loses only the job's progress view, never its record.

A job of kind ``update`` is a fleet rollout (:mod:`web_api.rollout`): canary, batches,
a health gate per batch, an abort threshold and a rollback of what it switched; its
``update`` commands are recorded like any job's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final

from arete.commands import CommandName
from maestro.app import Maestro
from maestro.commands.issue import validate_request
from maestro.commands.lifecycle import CommandState
from maestro.errors import CommandError
from maestro.store.audit import add_audit
from web_api.rollout import Plan, Rollout
from web_api.rollout_run import drive, known_release, seen_now

log = logging.getLogger("arete.web.jobs")

KEEP_JOBS: Final = 1000


def select_agents(
    views: Iterable[Mapping[str, Any]],
    labels: Mapping[str, str],
    agent_ids: Sequence[str] | None,
) -> list[str]:
    """Agents whose labels hold every ``labels`` pair, among ``agent_ids`` if given."""
    wanted = None if agent_ids is None else set(agent_ids)
    chosen = []
    for view in views:
        if wanted is not None and view["id"] not in wanted:
            continue
        have = view.get("labels") or {}
        if all(have.get(key) == value for key, value in labels.items()):
            chosen.append(str(view["id"]))
    return sorted(chosen)


def batches(items: Sequence[str], size: int) -> list[list[str]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def crossed(failures: int, max_failures: int) -> bool:
    """The failure threshold: stop once failures exceed it."""
    return failures > max_failures


@dataclass
class Job:
    id: str
    name: str
    args: dict[str, Any]
    agents: list[str]
    batch_size: int
    max_failures: int
    timeout_s: float | None
    actor: str
    created_at: float
    state: str = "running"  # running | done | stopped | failed (a rollout's threshold)
    finished_at: float | None = None
    failures: int = 0
    stopped_reason: str | None = None
    aborted_by: str | None = None
    rollout: Rollout | None = field(default=None, repr=False)
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def kind(self) -> str:
        return "command" if self.rollout is None else "update"

    def to_dict(self, counts: Mapping[str, int], *, detail: bool = True) -> dict[str, Any]:
        """JSON-ready; ``detail`` adds a rollout's per-agent progress."""
        rollout = None if self.rollout is None else self.rollout.to_dict(with_agents=detail)
        return {
            "id": self.id,
            "kind": self.kind,
            "rollout": rollout,
            "name": self.name,
            "args": self.args,
            "state": self.state,
            "total": len(self.agents),
            "agents": self.agents,
            "counts": dict(counts),
            "failures": self.failures,
            "batch_size": self.batch_size,
            "max_failures": self.max_failures,
            "timeout_s": self.timeout_s,
            "actor": self.actor,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
            "stopped_reason": self.stopped_reason,
        }


class JobRunner:
    def __init__(self, maestro: Maestro) -> None:
        self.maestro = maestro
        self.jobs: dict[str, Job] = {}

    def create(
        self,
        *,
        name: str,
        args: dict[str, Any],
        labels: Mapping[str, str],
        agent_ids: Sequence[str] | None,
        batch_size: int,
        max_failures: int,
        timeout_s: float | None,
        actor: str,
    ) -> Job:
        """Check the request, choose the agents and start the job.

        Raises :class:`CommandError` (``no_agents``, ``too_many``, or the codes of a
        bad command) before anything is sent.
        """
        if name == "terminal":
            raise CommandError(
                "terminals are opened one at a time on WS /agents/{id}/terminal",
                code="use_websocket",
            )
        agents = select_agents(self.maestro.registry.views(), labels, agent_ids)
        if not agents:
            raise CommandError("no known agent matches these labels and ids", code="no_agents")
        settings = self.maestro.commands.settings
        if batch_size > settings.max_fanout:
            raise CommandError(
                f"batch_size is at most max_fanout ({settings.max_fanout})", code="too_many"
            )
        job_id = f"job-{int(time.time())}-{secrets.token_hex(4)}"
        validate_request(
            agents[0],
            name,
            args,
            timeout_s=timeout_s,
            actor=actor,
            job_id=job_id,
            settings=settings,
        )
        job = Job(
            id=job_id,
            name=name,
            args=args,
            agents=agents,
            batch_size=batch_size,
            max_failures=max_failures,
            timeout_s=timeout_s,
            actor=actor,
            created_at=time.time(),
        )
        self._keep(job)
        job.task = asyncio.create_task(self._run(job), name=f"job-{job_id}")
        return job

    def create_update(
        self,
        *,
        version: str,
        labels: Mapping[str, str],
        agent_ids: Sequence[str] | None,
        canary: int,
        batch_size: int,
        health_timeout_s: float,
        max_failures: int,
        rollback_on_abort: bool,
        actor: str,
        health_deadline_s: float | None = None,
    ) -> Job:
        """Start a rollout of ``version`` (a job of kind ``update``).

        Raises :class:`CommandError` (``no_agents``, ``too_many``, ``no_release``, or the
        codes of bad ``update`` arguments) before anything is sent.
        """
        agents = select_agents(self.maestro.registry.views(), labels, agent_ids)
        if not agents:
            raise CommandError("no known agent matches these labels and ids", code="no_agents")
        settings = self.maestro.commands.settings
        if max(batch_size, canary) > settings.max_fanout:
            raise CommandError(
                f"batch_size and canary are at most max_fanout ({settings.max_fanout})",
                code="too_many",
            )
        if known_release(self.maestro, version) is False:
            raise CommandError(
                f"the release store has no release {version!r} (see GET /releases)",
                code="no_release",
            )
        job_id = f"job-{int(time.time())}-{secrets.token_hex(4)}"
        args: dict[str, Any] = {"version": version}
        if health_deadline_s is not None:
            args["health_deadline_s"] = health_deadline_s
        name = CommandName.UPDATE.value
        validate_request(
            agents[0], name, args, timeout_s=None, actor=actor, job_id=job_id, settings=settings
        )
        plan = Plan(
            version=version,
            agents=tuple(agents),
            canary=canary,
            batch_size=batch_size,
            health_timeout_s=health_timeout_s,
            max_failures=max_failures,
            rollback_on_abort=rollback_on_abort,
            health_deadline_s=health_deadline_s,
        )
        now = time.time()
        job = Job(
            id=job_id,
            name=name,
            args=args,
            agents=agents,
            batch_size=batch_size,
            max_failures=max_failures,
            timeout_s=None,
            actor=actor,
            created_at=now,
            rollout=Rollout(plan, seen_now(self.maestro, agents), now),
        )
        self._keep(job)
        job.task = asyncio.create_task(self._run(job), name=f"job-{job_id}")
        return job

    def get(self, job_id: str) -> Job | None:
        return self.jobs.get(job_id)

    def abort(self, job: Job, actor: str) -> bool:
        """Stop a running job: no further command is sent; those already sent finish
        or time out on their own. False if the job had already ended."""
        if job.rollout is not None:  # it settles its batch and rolls back on its own
            if not job.rollout.abort(actor, time.time()):
                return False
            job.aborted_by = actor
            job.state = "stopped"
            job.stopped_reason = job.rollout.stop_reason
            return True
        if job.state != "running":
            return False
        job.state = "stopped"
        job.aborted_by = actor
        job.stopped_reason = f"aborted by {actor}"
        if job.task is not None and not job.task.done():
            job.task.cancel()
        return True

    async def counts(self, job: Job) -> dict[str, int]:
        counts = await self.maestro.commands.job_counts(job.id)
        return {str(state): n for state, n in counts.items()}

    async def close(self) -> None:
        tasks = [j.task for j in self.jobs.values() if j.task is not None and not j.task.done()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def _keep(self, job: Job) -> None:
        self.jobs[job.id] = job
        if len(self.jobs) > KEEP_JOBS:
            for old in [j for j in self.jobs.values() if j.state != "running"][: KEEP_JOBS // 10]:
                del self.jobs[old.id]

    async def _run(self, job: Job) -> None:
        commands = self.maestro.commands
        try:
            if job.rollout is not None:
                await drive(self.maestro, job)
                return
            for batch in batches(job.agents, job.batch_size):
                records = await commands.fan_out(
                    batch,
                    job.name,
                    job.args,
                    timeout_s=job.timeout_s,
                    actor=job.actor,
                    job_id=job.id,
                    wait=True,
                )
                job.failures += sum(1 for r in records if r.state is not CommandState.OK)
                if crossed(job.failures, job.max_failures):
                    job.state = "stopped"
                    job.stopped_reason = (
                        f"{job.failures} failures, more than max_failures={job.max_failures}"
                    )
                    break
            else:
                job.state = "done"
        except asyncio.CancelledError:
            if job.aborted_by is None:
                job.state = "stopped"
                job.stopped_reason = "the web API stopped"
                raise  # shutting down
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()  # an abort: the summary below is still written
        except Exception as exc:  # a store or link failure ends the job, visibly
            log.exception("job failed job_id=%s", job.id)
            job.state = "stopped"
            job.stopped_reason = f"error: {exc}"
        finally:
            job.finished_at = time.time()
            await self._audit_summary(job)

    async def _audit_summary(self, job: Job) -> None:
        try:
            counts = await self.counts(job)
            detail = {
                "name": job.name,
                "state": job.state,
                "total": len(job.agents),
                "counts": counts,
                "stopped_reason": job.stopped_reason,
            }
            if job.rollout is not None:
                detail["version"] = job.rollout.plan.version
                detail["phases"] = job.rollout.phases()
            await self.maestro.store.write(
                partial(
                    add_audit,
                    ts=time.time(),
                    actor=job.actor,
                    action="job.finish",
                    target=job.id,
                    detail=detail,
                )
            )
        except Exception:  # the summary is a convenience; the commands are recorded
            log.exception("could not audit the end of job_id=%s", job.id)
