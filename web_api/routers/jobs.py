"""Jobs: a command fanned out to many agents in batches, or a fleet rollout of a
release (kind ``update``; see ``web_api.jobs`` and ``web_api.rollout``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from maestro.errors import CommandError
from web_api.audit import audit
from web_api.auth.roles import Role
from web_api.deps import CurrentUser, Fleet, Jobs, Operator, needs
from web_api.errors import ApiError
from web_api.jobs import Job, JobRunner
from web_api.models import JobCreate, JobPublic, UpdateJobCreate
from web_api.routers.commands import command_error, require_command_role
from web_api.visibility import job_view

router = APIRouter(tags=["jobs"])


async def _public(runner: JobRunner, job: Job, role: Role, *, detail: bool = True) -> JobPublic:
    counts = await runner.counts(job)
    return JobPublic.model_validate(job_view(role, job.to_dict(counts, detail=detail)))


@router.post("/jobs", status_code=201, **needs(Role.OPERATOR))
async def create_job(user: Operator, m: Fleet, runner: Jobs, body: JobCreate) -> JobPublic:
    """Start a job; it runs on after the answer. Follow it with ``GET /jobs/{id}``."""
    require_command_role(user, body.name.value)
    try:
        job = runner.create(
            name=body.name.value,
            args=body.args,
            labels=body.labels,
            agent_ids=body.agents,
            batch_size=body.batch_size,
            max_failures=body.max_failures,
            timeout_s=body.timeout,
            actor=user.actor,
        )
    except CommandError as exc:
        raise command_error(exc) from None
    await audit(
        m,
        user.actor,
        "job.start",
        job.id,
        {"name": job.name, "agents": len(job.agents), "batch_size": job.batch_size},
    )
    return await _public(runner, job, user.role)


@router.post("/jobs/update", status_code=201, **needs(Role.OPERATOR))
async def create_update_job(
    user: Operator, m: Fleet, runner: Jobs, body: UpdateJobCreate
) -> JobPublic:
    """Roll a release out to the agents chosen by ``labels`` (and/or ``agents``): a canary
    first, then batches, each gated on every agent's health; more than ``max_failures``
    failures halt it (state ``failed``) and, with ``rollback_on_abort``, the agents it
    switched are sent back. Follow it with ``GET /jobs/{id}`` (``rollout``); 422
    ``no_release`` when the release store does not hold ``version``."""
    require_command_role(user, "update")
    try:
        job = runner.create_update(
            version=body.version,
            labels=body.labels,
            agent_ids=body.agents,
            canary=body.canary,
            batch_size=body.batch_size,
            health_timeout_s=body.health_timeout_s,
            max_failures=body.max_failures,
            rollback_on_abort=body.rollback_on_abort,
            health_deadline_s=body.health_deadline_s,
            actor=user.actor,
        )
    except CommandError as exc:
        raise command_error(exc) from None
    await audit(
        m,
        user.actor,
        "job.start",
        job.id,
        {
            "name": job.name,
            "version": body.version,
            "labels": body.labels,
            "agents": len(job.agents),
            "canary": body.canary,
            "batch_size": body.batch_size,
            "max_failures": body.max_failures,
            "rollback_on_abort": body.rollback_on_abort,
        },
    )
    return await _public(runner, job, user.role)


@router.get("/jobs", **needs(Role.VIEWER))
async def list_jobs(user: CurrentUser, runner: Jobs) -> list[JobPublic]:
    """Jobs this process ran since it started, newest first."""
    jobs = sorted(runner.jobs.values(), key=lambda j: j.created_at, reverse=True)
    return [await _public(runner, job, user.role, detail=False) for job in jobs[:100]]


@router.get("/jobs/{job_id}", **needs(Role.VIEWER, 404))
async def get_job(
    user: CurrentUser, runner: Jobs, job_id: Annotated[str, Path(max_length=128)]
) -> JobPublic:
    job = runner.get(job_id)
    if job is None:
        raise ApiError(404, f"no job {job_id!r} (jobs are kept in memory until a restart)")
    return await _public(runner, job, user.role)


@router.post("/jobs/{job_id}/abort", **needs(Role.OPERATOR, 404, 409))
async def abort_job(
    user: Operator, m: Fleet, runner: Jobs, job_id: Annotated[str, Path(max_length=128)]
) -> JobPublic:
    """Stop a running job: no further command is sent (those already sent finish or
    time out on their own). A rollout lets its current batch settle, then sends the
    agents it switched back (unless rollback_on_abort is off); ``finished_at`` is set
    once that is over. 409 if it had already ended or been halted."""
    job = runner.get(job_id)
    if job is None:
        raise ApiError(404, f"no job {job_id!r} (jobs are kept in memory until a restart)")
    require_command_role(user, job.name)
    if not runner.abort(job, user.actor):
        if job.finished_at is None:  # a halted rollout, still settling or rolling back
            raise ApiError(
                409, f"job {job_id!r} is already halted ({job.state}): {job.stopped_reason}"
            )
        raise ApiError(409, f"job {job_id!r} already ended ({job.state})")
    await audit(m, user.actor, "job.abort", job.id, {"name": job.name})
    return await _public(runner, job, user.role)
