"""Users (admin only) and their API tokens (admin, or a user for their own). Every
change is audited."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Path, Response

from web_api.audit import audit
from web_api.auth.roles import Role
from web_api.auth.users import LastAdminError, TokenInfo, UserError, UserInfo
from web_api.deps import Admin, SelfOrAdmin, State, needs
from web_api.errors import ApiError
from web_api.models import (
    TokenCreate,
    TokenCreated,
    TokenPublic,
    UserCreate,
    UserCreated,
    UserPublic,
    UserUpdate,
)

router = APIRouter(prefix="/users", tags=["users"])

NamePath = Annotated[str, Path(min_length=1, max_length=64)]
TokenIdPath = Annotated[
    str, Path(pattern=r"^[0-9a-f]{16}$", description="The <id> of arete_<id>_<secret>.")
]


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
    """Remove a user, their tokens and sessions (409 for the last admin)."""
    target = await asyncio.to_thread(state.users.get_user, name)
    if target is None:
        raise ApiError(404, f"no user {name!r}")
    try:
        removed = await asyncio.to_thread(state.users.remove_user, name)
    except LastAdminError as exc:
        raise ApiError(409, str(exc), "last_admin") from None
    if not removed:
        raise ApiError(404, f"no user {name!r}")
    await audit(state.maestro, user.actor, "user.remove", name, {"role": target.role.value})
    return Response(status_code=204)


@router.patch("/{name}", **needs(Role.ADMIN, 404, 409))
async def update_user(user: Admin, state: State, name: NamePath, body: UserUpdate) -> UserPublic:
    """Change a user's role (409 when it would demote the last admin)."""
    try:
        await asyncio.to_thread(state.users.set_role, name, body.role)
    except LastAdminError as exc:
        raise ApiError(409, str(exc), "last_admin") from None
    except UserError as exc:
        raise ApiError(404, str(exc)) from None
    info = await asyncio.to_thread(state.users.get_user, name)
    if info is None:
        raise ApiError(404, f"no user {name!r}")
    await audit(state.maestro, user.actor, "user.role", name, {"role": body.role})
    return public(info)


# -- API tokens --------------------------------------------------------------------------
def token_public(info: TokenInfo) -> TokenPublic:
    return TokenPublic(
        id=info.id, label=info.label, created_at=info.created_at, last_used_at=info.last_used_at
    )


@router.get("/{name}/tokens", **needs(Role.VIEWER, 404, others=Role.ADMIN))
async def list_tokens(user: SelfOrAdmin, state: State, name: NamePath) -> list[TokenPublic]:
    """A user's API tokens, oldest first: id, label, when made and last used (no secret).

    Your own with any role; another user's needs admin.
    """
    try:
        tokens = await asyncio.to_thread(state.users.list_tokens, name)
    except UserError as exc:
        raise ApiError(404, str(exc)) from None
    return [token_public(t) for t in tokens]


@router.post("/{name}/tokens", status_code=201, **needs(Role.VIEWER, 404, others=Role.ADMIN))
async def add_token(
    user: SelfOrAdmin, state: State, name: NamePath, body: TokenCreate
) -> TokenCreated:
    """Make another API token (shown once; only its hash is kept).

    For yourself with any role; for another user needs admin.
    """
    try:
        new = await asyncio.to_thread(state.users.issue_token, name, body.label)
    except UserError as exc:
        status = 404 if str(exc).startswith("no user") else 422
        raise ApiError(status, str(exc)) from None
    await audit(
        state.maestro, user.actor, "token.add", name, {"token_id": new.info.id, "label": body.label}
    )
    return TokenCreated(**token_public(new.info).model_dump(), token=new.token)


@router.delete(
    "/{name}/tokens/{token_id}",
    status_code=204,
    response_class=Response,
    **needs(Role.VIEWER, 404, others=Role.ADMIN),
)
async def revoke_token(
    user: SelfOrAdmin, state: State, name: NamePath, token_id: TokenIdPath
) -> Response:
    """Revoke one API token: its next request gets 401.

    Your own with any role; another user's needs admin.
    """
    if not await asyncio.to_thread(state.users.revoke_token, name, token_id):
        raise ApiError(404, f"user {name!r} has no token {token_id!r}")
    await audit(state.maestro, user.actor, "token.revoke", name, {"token_id": token_id})
    return Response(status_code=204)
