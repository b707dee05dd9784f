"""Signing in with a password (the dashboard's session cookie) and out."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Final

from fastapi import APIRouter, Request, Response

from web_api.audit import audit
from web_api.auth.roles import Role
from web_api.deps import ERRORS, SESSION_COOKIE, CurrentUser, State, needs
from web_api.errors import ApiError
from web_api.models import LoginRequest, Me
from web_api.ratelimit import retry_after

router = APIRouter(prefix="/auth", tags=["auth"])

PUBLIC: Final[dict[str, Any]] = {
    "openapi_extra": {"x-required-role": "none"},
    "responses": {code: ERRORS[code] for code in (401, 422, 429)},
}


def cookie_secure(request: Request, setting: str) -> bool:
    if setting == "auto":
        return request.url.scheme == "https"
    return setting == "always"


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
    ttl = state.settings.session_ttl_s
    session_id, _ = await asyncio.to_thread(state.users.create_session, principal.name, ttl)
    response.set_cookie(
        SESSION_COOKIE,
        session_id,
        max_age=int(ttl),
        httponly=True,
        samesite="strict",
        secure=cookie_secure(request, state.settings.cookie_secure),
        path="/",
    )
    await audit(state.maestro, principal.actor, "auth.login", principal.name, {"from": client})
    return Me(user=principal.name, role=principal.role.value)


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
    return Me(user=user.name, role=user.role.value)
