"""Users and their API tokens (admin only). Every change is audited."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Path, Response

from web_api.audit import audit
from web_api.auth.roles import Role
from web_api.auth.users import UserError, UserInfo
from web_api.deps import Admin, State, needs
from web_api.errors import ApiError
from web_api.models import UserCreate, UserCreated, UserPublic

router = APIRouter(prefix="/users", tags=["users"])

NamePath = Annotated[str, Path(min_length=1, max_length=64)]


def public(info: UserInfo) -> UserPublic:
    return UserPublic(
        name=info.name,
        role=info.role.value,
        created_at=info.created_at,
        has_password=info.has_password,
        tokens=info.tokens,
    )


@router.get("", **needs(Role.ADMIN))
async def list_users(user: Admin, state: State) -> list[UserPublic]:
    return [public(u) for u in await asyncio.to_thread(state.users.list_users)]


@router.post("", status_code=201, **needs(Role.ADMIN, 409))
async def add_user(user: Admin, state: State, body: UserCreate) -> UserCreated:
    """Add a user with an API token (shown once); a password lets them use the dashboard."""
    users = state.users
    try:
        info = await asyncio.to_thread(users.add_user, body.name, body.role, body.password)
        token = await asyncio.to_thread(users.create_token, body.name, "created by the API")
    except UserError as exc:
        status = 409 if "already exists" in str(exc) else 422
        raise ApiError(status, str(exc)) from None
    await audit(state.maestro, user.actor, "user.add", body.name, {"role": body.role})
    return UserCreated(
        user=public(UserInfo(info.name, info.role, info.created_at, info.has_password, 1)),
        token=token,
    )


@router.delete("/{name}", status_code=204, response_class=Response, **needs(Role.ADMIN, 404, 409))
async def remove_user(user: Admin, state: State, name: NamePath) -> Response:
    """Remove a user, their tokens and sessions (not the last admin)."""
    users = await asyncio.to_thread(state.users.list_users)
    target = next((u for u in users if u.name == name), None)
    if target is None:
        raise ApiError(404, f"no user {name!r}")
    admins = [u for u in users if u.role is Role.ADMIN]
    if target.role is Role.ADMIN and len(admins) == 1:
        raise ApiError(409, "the last admin cannot be removed")
    await asyncio.to_thread(state.users.remove_user, name)
    state.forget_tokens()
    await audit(state.maestro, user.actor, "user.remove", name, {"role": target.role.value})
    return Response(status_code=204)
