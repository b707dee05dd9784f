"""FastAPI dependencies as ``Annotated`` aliases: who calls, with which role, on what.

``CurrentUser`` (viewer or more), ``Operator``, ``Admin`` authenticate the request
(session cookie or ``Authorization: Bearer``), apply the per-user rate limit and check
the role; ``SelfOrAdmin`` lets a user act on their own ``{name}`` and an admin on
anyone's; ``Fleet`` is the running maestro. Routes declare their role with
``**needs(Role.X)`` too, which documents it in the OpenAPI (``x-required-role``) and
lists the 401/403/429 answers; the role-matrix test reads it from there.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Final

from fastapi import Depends, Request

from maestro.app import Maestro
from web_api.auth.roles import Role
from web_api.auth.users import Principal
from web_api.errors import ApiError
from web_api.jobs import JobRunner
from web_api.models import ErrorBody
from web_api.origin import origin_allowed
from web_api.ratelimit import retry_after
from web_api.state import AppState

SESSION_COOKIE: Final = "arete_session"
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
PASSWORD_CHANGE_REQUIRED: Final = "password_change_required"  # noqa: S105 - an error code
# What a user whose password must change may still call (see Principal).
PASSWORD_CHANGE_PATHS: Final = frozenset({"/auth/password", "/auth/me", "/auth/logout"})


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "model": ErrorBody}


ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    401: _error("Not signed in, or the token is wrong"),
    403: _error("The user's role is below what this needs"),
    422: _error("The request is not valid; detail says why"),
    429: _error("Too many requests; see Retry-After"),
}
EXTRA: Final[dict[int, dict[str, Any]]] = {
    404: _error("No such resource"),
    409: _error("In conflict with the current state"),
    503: _error("The maestro or its store is not available"),
}


def needs(role: Role, *codes: int, others: Role | None = None) -> dict[str, Any]:
    """Route keyword arguments documenting the role a route needs (and more answers).

    ``others``: a route of ``SelfOrAdmin`` needs ``role`` for the caller's own
    ``{name}`` and ``others`` (admin) for anyone else's (``x-required-role-for-others``).
    """
    responses = dict(ERRORS) | {code: EXTRA[code] for code in codes}
    extra = {"x-required-role": role.value}
    if others is not None:
        extra["x-required-role-for-others"] = others.value
    return {"openapi_extra": extra, "responses": responses}


def app_state(request: Request) -> AppState:
    state: AppState = request.app.state.arete
    return state


State = Annotated[AppState, Depends(app_state)]


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


async def authenticate(request: Request, state: State) -> Principal:
    token = bearer_token(request)
    principal: Principal | None = None
    if token is not None:
        principal = await state.principal_for_token(token)
    else:
        session = request.cookies.get(SESSION_COOKIE)
        if session:
            principal = await state.principal_for_session(session)
            # A session rides on a cookie the browser sends by itself: a write from a
            # page of another origin must not borrow it (SameSite=Strict is the first line).
            if (
                principal is not None
                and request.method not in SAFE_METHODS
                and not origin_allowed(
                    request.headers.get("origin"),
                    request.headers.get("host"),
                    state.settings.allowed_origins,
                    missing_ok=True,
                )
            ):
                raise ApiError(403, "cross-origin write refused", "bad_origin")
    if principal is None:
        raise ApiError(
            401,
            "sign in, or send 'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if principal.must_change_password and request.url.path not in PASSWORD_CHANGE_PATHS:
        raise ApiError(
            403,
            "change the password you were given first: POST /auth/password",
            PASSWORD_CHANGE_REQUIRED,
        )
    wait = state.user_limit.take(f"user:{principal.name}", time.monotonic())
    if wait > 0:
        raise ApiError(
            429, "too many requests for this user", headers={"Retry-After": retry_after(wait)}
        )
    return principal


def _require(role: Role) -> Any:
    async def check(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
        if not principal.role.allows(role):
            raise ApiError(403, f"this needs the {role.value} role; you are {principal.role}")
        return principal

    return check


CurrentUser = Annotated[Principal, Depends(_require(Role.VIEWER))]
Operator = Annotated[Principal, Depends(_require(Role.OPERATOR))]
Admin = Annotated[Principal, Depends(_require(Role.ADMIN))]


async def _self_or_admin(principal: CurrentUser, request: Request) -> Principal:
    # A dependency, not a check in the route: like the role, it comes before the
    # request's other parameters are judged. The route declares (and validates) ``name``.
    name = request.path_params.get("name")
    if principal.name != name and not principal.role.allows(Role.ADMIN):
        raise ApiError(
            403, f"only an admin may act for another user ({name!r}); you are {principal.role}"
        )
    return principal


SelfOrAdmin = Annotated[Principal, Depends(_self_or_admin)]


def fleet(state: State) -> Maestro:
    if state.maestro is None:
        raise ApiError(503, "the maestro is not running", "unavailable")
    return state.maestro


Fleet = Annotated[Maestro, Depends(fleet)]


def job_runner(state: State) -> JobRunner:
    if state.jobs is None:
        raise ApiError(503, "the maestro is not running", "unavailable")
    return state.jobs


Jobs = Annotated[JobRunner, Depends(job_runner)]
