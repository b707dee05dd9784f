"""The role matrix, generated from the app's routes: every protected operation answers
401 without credentials and 403 to a role below the one it documents; one that a user
may use on their own ``{name}`` answers 403 to a role below ``x-required-role-for-others``
on another user's. That the documented role IS allowed (and gets the real answer) is
tests/real/test_api_roles_allowed.py, against a working maestro."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from web_api.app import create_app
from web_api.auth.roles import Role
from web_api.auth.users import UserStore
from web_api.settings import WebSettings

FAST: dict[str, Any] = {"rate_per_client": 1e4, "burst_per_client": 1e4}
FAST |= {"rate_per_user": 1e4, "burst_per_user": 1e4}


@pytest.fixture(scope="module")
def client_and_tokens(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[TestClient, dict[Role, str]]]:
    tmp_path = tmp_path_factory.mktemp("roles")
    store = UserStore(tmp_path / "web" / "users.db")
    tokens = {}
    for role in Role:
        store.add_user(role.value, role.value)
        tokens[role] = store.create_token(role.value)
    store.close()
    app = create_app(WebSettings(data_dir=tmp_path, **FAST), start_maestro=False)
    with TestClient(app) as client:
        yield client, tokens


Route = tuple[str, str, Role, Role | None]


def protected_routes() -> list[Route]:
    """(method, path, role, role for others) of every operation in the OpenAPI document.

    The path keeps ``{name}`` (a user: the fixture's users are named after their roles);
    every other parameter is ``a1``.
    """
    app = create_app(WebSettings(data_dir=Path("/nonexistent")), start_maestro=False)
    out = []
    for template, item in app.openapi()["paths"].items():
        for method, operation in item.items():
            role = operation.get("x-required-role")
            assert role is not None, f"{method} {template} does not document the role it needs"
            if role == "none":
                continue
            others = operation.get("x-required-role-for-others")
            path = re.sub(r"\{(?!name\})[^}]+\}", "a1", template)
            out.append((method.upper(), path, Role(role), None if others is None else Role(others)))
    return sorted(out, key=lambda r: (r[1], r[0]))


def as_user(path: str, name: str = "a1") -> str:
    return path.replace("{name}", name)


ROUTES = protected_routes()


def test_the_matrix_covers_the_api() -> None:
    paths = {as_user(path) for _, path, _, _ in ROUTES}
    assert {"/agents", "/agents/a1/command", "/users", "/audit", "/jobs"} <= paths
    assert {"/users/a1/tokens", "/users/a1/tokens/a1"} <= paths
    needs = {(m, as_user(p)): (r, o) for m, p, r, o in ROUTES}
    assert needs[("POST", "/agents/a1/restart")] == (Role.OPERATOR, None)
    assert needs[("POST", "/users")] == (Role.ADMIN, None)
    assert needs[("DELETE", "/users/a1")] == (Role.ADMIN, None)
    assert needs[("GET", "/agents")] == (Role.VIEWER, None)
    assert needs[("GET", "/alerts/rules")] == (Role.VIEWER, None)
    assert needs[("GET", "/notifiers")] == (Role.OPERATOR, None)
    assert needs[("POST", "/jobs/a1/abort")] == (Role.OPERATOR, None)
    # Anyone manages their own API tokens; only an admin those of others.
    assert needs[("GET", "/users/a1/tokens")] == (Role.VIEWER, Role.ADMIN)
    assert needs[("POST", "/users/a1/tokens")] == (Role.VIEWER, Role.ADMIN)
    assert needs[("DELETE", "/users/a1/tokens/a1")] == (Role.VIEWER, Role.ADMIN)


@pytest.mark.parametrize(
    ("method", "template", "role", "others"), ROUTES, ids=[f"{r[0]} {r[1]}" for r in ROUTES]
)
def test_every_route_refuses_no_token_and_lower_roles(
    client_and_tokens: tuple[TestClient, dict[Role, str]],
    method: str,
    template: str,
    role: Role,
    others: Role | None,
) -> None:
    client, tokens = client_and_tokens
    path = as_user(template)
    answer = client.request(method, path, json={})
    assert answer.status_code == 401, answer.text
    assert answer.json()["error"] == "unauthorized"
    bad = client.request(method, path, json={}, headers={"Authorization": "Bearer arete_x_y"})
    assert bad.status_code == 401
    for lower in Role:
        if lower.rank >= role.rank:
            continue
        refused = client.request(
            method, path, json={}, headers={"Authorization": f"Bearer {tokens[lower]}"}
        )
        assert refused.status_code == 403, (lower, refused.text)
        assert refused.json()["error"] == "forbidden"
    # The allowed half (the role gets the route's real success answer) needs a working
    # maestro: tests/real/test_api_roles_allowed.py. Here only refusals are judged.
    if others is None:
        return
    for caller in Role:  # on user a1, not the caller
        if caller.rank >= others.rank:
            continue
        answer = client.request(
            method, path, json={}, headers={"Authorization": f"Bearer {tokens[caller]}"}
        )
        assert answer.status_code == 403, (caller, answer.text)


def test_shell_needs_admin_even_for_an_operator(
    client_and_tokens: tuple[TestClient, dict[Role, str]],
) -> None:
    client, tokens = client_and_tokens
    # Without a maestro the fleet is unavailable (503), but the role is checked first
    # for the route; the shell check itself needs the fleet, so it is covered in tier 2.
    answer = client.post(
        "/agents/a1/command",
        json={"name": "shell", "args": {"command": "id"}},
        headers={"Authorization": f"Bearer {tokens[Role.VIEWER]}"},
    )
    assert answer.status_code == 403
