"""Signing in with a password (the dashboard's session cookie) and out."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Final

from fastapi import APIRouter, Request, Response

from web_api.audit import audit
from web_api.auth.roles import Role
from web_api.auth.users import Principal, UserError
from web_api.deps import ERRORS, SESSION_COOKIE, CurrentUser, State, needs
from web_api.errors import ApiError
from web_api.models import LoginRequest, Me, PasswordChange
from web_api.ratelimit import retry_after
from web_api.state import AppState

router = APIRouter(prefix="/auth", tags=["auth"])

PUBLIC: Final[dict[str, Any]] = {
    "openapi_extra": {"x-required-role": "none"},
    "responses": {code: ERRORS[code] for code in (401, 422, 429)},
}


def cookie_secure(request: Request, setting: str) -> bool:
    if setting == "auto":
        return request.url.scheme == "https"
    return setting == "always"


def me_of(principal: Principal) -> Me:
    return Me(
        user=principal.name,
        role=principal.role.value,
        must_change_password=principal.must_change_password,
    )


async def start_session(name: str, request: Request, response: Response, state: AppState) -> None:
    """A new session for ``name``, set as the HttpOnly, SameSite=Strict cookie."""
    ttl = state.settings.session_ttl_s
    session_id, _ = await asyncio.to_thread(state.users.create_session, name, ttl)
    response.set_cookie(
        SESSION_COOKIE,
        session_id,
        max_age=int(ttl),
        httponly=True,
        samesite="strict",
        secure=cookie_secure(request, state.settings.cookie_secure),
        path="/",
    )


@router.post("/login", **PUBLIC)
async def login(body: LoginRequest, request: Request, response: Response, state: State) -> Me:
    """Check the password; set the HttpOnly, SameSite=Strict session cookie."""
    client = request.client.host if request.client else "?"
    now = time.monotonic()
    # Per address, and per account from any address: many addresses (or a forged
    # X-Forwarded-For, were it believed) cannot guess one password faster.
    wait = max(
        state.login_limit.take(f"login:{client}", now),
        state.account_login_limit.take(f"login-user:{body.username.lower()}", now),
    )
    if wait > 0:
        raise ApiError(429, "too many sign-in attempts", headers={"Retry-After": retry_after(wait)})
    principal = await asyncio.to_thread(state.users.verify_password, body.username, body.password)
    if principal is None:
        # An unknown name is not recorded: it may be a password typed in the wrong field.
        known = await asyncio.to_thread(state.users.get_user, body.username) is not None
        target = body.username if known else "(unknown user)"
        await audit(state.maestro, "anonymous", "auth.login_failed", target, {"from": client})
        raise ApiError(401, "wrong user name or password")
    await start_session(principal.name, request, response, state)
    await audit(state.maestro, principal.actor, "auth.login", principal.name, {"from": client})
    return me_of(principal)


@router.post("/logout", status_code=204, response_class=Response, **needs(Role.VIEWER))
async def logout(user: CurrentUser, request: Request, state: State) -> Response:
    """End this session (an API token stays valid: DELETE /users/{name}/tokens/{id})."""
    session = request.cookies.get(SESSION_COOKIE)
    if session:
        await asyncio.to_thread(state.users.end_session, session)
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response


@router.get("/me", **needs(Role.VIEWER))
async def me(user: CurrentUser) -> Me:
    return me_of(user)


@router.post("/password", **needs(Role.VIEWER))
async def change_password(
    user: CurrentUser, body: PasswordChange, request: Request, response: Response, state: State
) -> Me:
    """Change your own password (the current one is asked again).

    Every other session of yours ends; a session caller gets a fresh cookie. The first
    admin's password, printed by ``up``, must be changed here before anything else works.
    """
    if body.new_password == body.current_password:
        raise ApiError(422, "the new password must differ from the current one")
    now = time.monotonic()
    wait = state.account_login_limit.take(f"login-user:{user.name.lower()}", now)
    if wait > 0:
        raise ApiError(429, "too many attempts", headers={"Retry-After": retry_after(wait)})
    checked = await asyncio.to_thread(state.users.verify_password, user.name, body.current_password)
    if checked is None:
        await audit(state.maestro, user.actor, "auth.password_failed", user.name)
        raise ApiError(403, "the current password is wrong", "wrong_password")
    try:
        await asyncio.to_thread(state.users.set_password, user.name, body.new_password)
    except UserError as exc:
        raise ApiError(422, str(exc)) from None
    if user.via == "session":
        await start_session(user.name, request, response, state)
    await audit(state.maestro, user.actor, "auth.password", user.name)
    return Me(user=user.name, role=user.role.value, must_change_password=False)
