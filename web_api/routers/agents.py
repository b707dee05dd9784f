"""Agents: the fleet registry's view, and each agent's metric history."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from maestro.app import Maestro
from maestro.errors import QueryError
from web_api.auth.roles import Role
from web_api.deps import CurrentUser, Fleet, needs
from web_api.errors import ApiError
from web_api.models import AgentId, AgentPublic, HistoryPublic

router = APIRouter(tags=["agents"])

AgentPath = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.-]+$")]
DEFAULT_FIELDS = "cpu,mem,disk"
MAX_WINDOW_S = 400 * 86400.0


def agent_view(m: Maestro, agent_id: str) -> dict[str, Any]:
    view = m.registry.view(agent_id)
    view["alerts"] = len(m.alerts.active_alerts(agent_id))
    return view


def known_agent(m: Maestro, agent_id: str) -> str:
    if agent_id not in m.registry.states:
        raise ApiError(404, f"no agent {agent_id!r}")
    return agent_id


def parse_labels(pairs: list[str]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ApiError(422, f"a label filter reads key=value, not {pair!r}", "invalid")
        labels[key] = value
    return labels


@router.get("/agents", **needs(Role.VIEWER))
async def list_agents(
    user: CurrentUser,
    m: Fleet,
    state: Annotated[str | None, Query(max_length=32, description="e.g. online")] = None,
    label: Annotated[
        list[Annotated[str, Query(max_length=300)]],
        Query(max_length=50, description="key=value; repeat for several (all must match)"),
    ] = [],  # noqa: B006 - FastAPI copies defaults per request
) -> list[AgentPublic]:
    """Every known agent, optionally only those in ``state`` and with all ``label`` pairs."""
    wanted = parse_labels(label)
    out = []
    for view in m.registry.views():
        if state is not None and view["state"] != state:
            continue
        if any(view["labels"].get(k) != v for k, v in wanted.items()):
            continue
        view["alerts"] = len(m.alerts.active_alerts(view["id"]))
        out.append(AgentPublic.model_validate(view))
    return out


@router.get("/agents/{agent_id}", **needs(Role.VIEWER, 404))
async def get_agent(user: CurrentUser, m: Fleet, agent_id: AgentPath) -> AgentPublic:
    return AgentPublic.model_validate(agent_view(m, known_agent(m, agent_id)))


@router.get("/agents/{agent_id}/metrics", **needs(Role.VIEWER, 404))
async def agent_metrics(
    *,
    user: CurrentUser,
    m: Fleet,
    agent_id: AgentPath,
    start: Annotated[
        float | None, Query(alias="from", ge=0, le=1e11, description="Unix seconds")
    ] = None,
    end: Annotated[float | None, Query(alias="to", ge=0, le=1e11, description="Unix s")] = None,
    step: Annotated[float, Query(gt=0, le=86400 * 7, description="Bucket seconds")] = 60.0,
    fields: Annotated[
        str,
        Query(
            max_length=2000,
            description="Comma-separated: stored fields (cpu, mem, swap, disk, load1, net_rx_bps,"
            " net_tx_bps, disk_read_bps, disk_write_bps, procs, gpu_util, temp_max), per-item"
            " keys (cpu.3, mount:/data, mount_used:/, temp:nvme, gpu.0.util, uptime_s, ...),"
            " families (cpu.*, mount:*, mount_used:*, mount_total:*, temp:*, gpu.*) or *",
        ),
    ] = DEFAULT_FIELDS,
) -> HistoryPublic:
    """Min/avg/max per bucket of ``step`` seconds over ``[from, to)`` (default: last hour).

    Raw 1 s samples when ``step`` is under a minute and the window is inside raw retention
    (and, for per-item keys, at most 6 h long); otherwise the minute rollups, ``step``
    rounded to whole minutes. A family gives one series per key found in the window. Every
    replica's store is read, so the series is whole whichever replica answers.
    """
    known_agent(m, agent_id)
    until = time.time() if end is None else end
    since = until - 3600.0 if start is None else start
    if not since < until or until - since > MAX_WINDOW_S:
        raise ApiError(422, "'from' must be before 'to', at most 400 days apart", "invalid")
    names = [f.strip() for f in fields.split(",") if f.strip()]
    if not names:
        raise ApiError(422, "name at least one field", "invalid")
    try:
        history = await m.store.history(agent_id, names, since, until, step)
    except QueryError as exc:
        raise ApiError(422, str(exc), "invalid") from None
    return HistoryPublic.model_validate(
        {
            "agent": history.agent,
            "start": history.start,
            "end": history.end,
            "step": history.step,
            "source": history.source,
            "ts": history.ts,
            "series": history.series,
        }
    )


__all__ = ["AgentId", "router"]
