"""Commands: issue one to an agent (optionally waiting for its end), look them up.

Every command issued here is recorded with ``actor=user:<name>`` and appended to the
audit log (``command.issue``). The role needed depends on the command's name
(``web_api.auth.roles.COMMAND_ROLES``): operator for most, admin for ``shell``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response

from arete.commands import CommandName
from maestro.app import Maestro
from maestro.commands.records import CommandRecord
from maestro.errors import CommandError, StoreError
from web_api.audit import audit
from web_api.auth.roles import Role, role_for_command
from web_api.auth.users import Principal
from web_api.deps import CurrentUser, Fleet, Operator, needs
from web_api.errors import ApiError
from web_api.models import CommandCreate, CommandEventPublic, CommandPublic
from web_api.routers.agents import AgentPath, known_agent
from web_api.visibility import command_view, history_detail

router = APIRouter(tags=["commands"])

CommandPath = Annotated[str, Path(min_length=1, max_length=128)]
Wait = Annotated[
    bool, Query(description="Answer once the command is final (bounded by its timeout).")
]
WAIT_SLACK_S = 5.0
MAX_AUDIT_ARGS = 8192


def command_error(exc: CommandError) -> ApiError:
    code = exc.code or "bad_request"
    status = 404 if code == "not_found" else 422
    return ApiError(status, str(exc), code)


def require_command_role(user: Principal, name: str) -> None:
    """403 unless ``user`` may run the command ``name`` (the one place this is checked)."""
    needed = role_for_command(name)
    if not user.role.allows(needed):
        raise ApiError(403, f"the {name} command needs the {needed.value} role")


async def issue(
    m: Maestro,
    *,
    user: Principal,
    agent_id: str,
    name: str,
    args: dict[str, Any],
    timeout_s: float | None,
    wait: bool,
) -> CommandRecord:
    if name == "terminal":  # a session needs someone attached, and its own audit trail
        raise ApiError(
            422, "open terminals with the websocket /agents/{id}/terminal", "use_websocket"
        )
    require_command_role(user, name)
    known_agent(m, agent_id)
    try:
        record = await m.commands.send(agent_id, name, args, timeout_s=timeout_s, actor=user.actor)
    except CommandError as exc:
        raise command_error(exc) from None
    except StoreError as exc:
        raise ApiError(503, f"the command store failed: {exc}") from None
    shown_args: Any = args if len(repr(args)) <= MAX_AUDIT_ARGS else "(too long to show)"
    await audit(
        m,
        user.actor,
        "command.issue",
        agent_id,
        {"command_id": record.id, "name": name, "args": shown_args},
    )
    if not wait:
        return record
    bound = max(0.0, record.expires_at - time.time()) + m.commands.settings.reply_grace_s
    return await m.commands.wait(record.id, timeout_s=bound + WAIT_SLACK_S)


@router.post("/agents/{agent_id}/command", **needs(Role.OPERATOR, 404))
async def send_command(
    user: Operator, m: Fleet, agent_id: AgentPath, body: CommandCreate, wait: Wait = False
) -> CommandPublic:
    """Send any allowlisted command (``shell`` needs admin)."""
    record = await issue(
        m,
        user=user,
        agent_id=agent_id,
        name=body.name.value,
        args=body.args,
        timeout_s=body.timeout,
        wait=wait,
    )
    return CommandPublic.model_validate(command_view(user.role, record.to_dict()))


def _shortcut(name: CommandName) -> Any:
    async def shortcut(
        user: Operator, m: Fleet, agent_id: AgentPath, wait: Wait = False
    ) -> CommandPublic:
        record = await issue(
            m, user=user, agent_id=agent_id, name=name.value, args={}, timeout_s=None, wait=wait
        )
        return CommandPublic.model_validate(record.to_dict())

    shortcut.__doc__ = f"Send ``{name.value}`` with its default arguments."
    shortcut.__name__ = f"{name.value}_agent"
    return shortcut


for _name in (CommandName.RESTART, CommandName.STOP, CommandName.SCREENSHOT):
    router.add_api_route(
        f"/agents/{{agent_id}}/{_name.value}",
        _shortcut(_name),
        methods=["POST"],
        name=f"{_name.value}_agent",
        **needs(Role.OPERATOR, 404),
    )


@router.get("/commands", **needs(Role.VIEWER))
async def list_commands(
    *,
    user: CurrentUser,
    m: Fleet,
    agent: Annotated[str | None, Query(max_length=128)] = None,
    state: Annotated[str | None, Query(max_length=32)] = None,
    job: Annotated[str | None, Query(max_length=128)] = None,
    before: Annotated[str | None, Query(max_length=128, description="Last id of a page")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[CommandPublic]:
    """Newest first, without results (``has_result`` says whether one exists)."""
    try:
        records = await m.commands.list(agent, state, job, limit, before)
    except CommandError as exc:
        raise command_error(exc) from None
    return [CommandPublic.model_validate(command_view(user.role, r.to_dict())) for r in records]


async def _get(m: Maestro, command_id: str) -> CommandRecord:
    try:
        return await m.commands.get(command_id)
    except CommandError as exc:
        raise command_error(exc) from None


@router.get("/commands/{command_id}", **needs(Role.VIEWER, 404))
async def get_command(user: CurrentUser, m: Fleet, command_id: CommandPath) -> CommandPublic:
    record = await _get(m, command_id)
    return CommandPublic.model_validate(command_view(user.role, record.to_dict()))


@router.get("/commands/{command_id}/history", **needs(Role.VIEWER, 404))
async def command_history(
    user: CurrentUser, m: Fleet, command_id: CommandPath
) -> list[CommandEventPublic]:
    """Every state change of the command, oldest first."""
    record = await _get(m, command_id)
    events = await m.commands.history(command_id)
    return [
        CommandEventPublic(
            ts=e.ts, state=str(e.state), detail=history_detail(user.role, record.name, e.detail)
        )
        for e in events
    ]


@router.get(
    "/commands/{command_id}/screenshot",
    **needs(Role.VIEWER, 404),
    response_class=Response,
)
async def command_screenshot(user: CurrentUser, m: Fleet, command_id: CommandPath) -> Response:
    """The PNG a finished ``screenshot`` command brought back."""
    record = await _get(m, command_id)
    result = record.result if isinstance(record.result, dict) else {}
    encoded = result.get("png_b64")
    if record.name != CommandName.SCREENSHOT.value or not isinstance(encoded, str):
        raise ApiError(404, f"command {command_id!r} has no screenshot", "no_screenshot")
    try:
        png = await asyncio.to_thread(base64.b64decode, encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(404, "the screenshot in this result is damaged", "no_screenshot") from None
    return Response(
        png,
        media_type="image/png",
        headers={"Content-Disposition": f'inline; filename="{record.agent}-{record.id}.png"'},
    )
