"""Attacks on the web API over a real uvicorn server: forged client addresses, password
guessing, oversized bodies and odd paths."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import websockets

from tests.fixtures.api import ADMIN_PASSWORD, ApiServer
from web_api.auth.roles import Role
from web_api.auth.users import UserStore

LOGIN_PER_MINUTE = 5  # WebSettings.login_per_minute's default
LOGIN_PER_MINUTE_PER_USER = 10  # WebSettings.login_per_minute_per_user's default


def login(client: httpx.Client, password: str, forwarded_for: str | None = None) -> int:
    headers = {} if forwarded_for is None else {"X-Forwarded-For": forwarded_for}
    answer = client.post(
        "/auth/login", json={"username": "admin", "password": password}, headers=headers
    )
    return answer.status_code


def assert_limited(codes: list[int], burst: int) -> None:
    """The first ``burst`` attempts were judged (401), then nearly all refused (429): the
    bucket refills ``burst`` per minute, so at most one more gets through meanwhile."""
    assert codes[:burst] == [401] * burst, codes
    assert set(codes[burst:]) <= {401, 429}, codes
    assert codes.count(401) <= burst + 1, codes
    assert codes[-1] == 429, codes


def audited(api: ApiServer, action: str) -> list[dict[str, object]]:
    entries = api.client(Role.ADMIN).get("/audit", params={"limit": 1000}).json()
    return [e for e in entries if e["action"] == action]


# -- forwarded headers and login limits ---------------------------------------------
def test_a_forged_x_forwarded_for_neither_escapes_the_login_limit_nor_reaches_the_audit(
    api_server: Callable[..., ApiServer],
) -> None:
    api = api_server()
    browser = api.client(role=None)
    codes = [login(browser, f"guess-{n}", forwarded_for=f"10.9.8.{n}") for n in range(12)]
    assert_limited(codes, LOGIN_PER_MINUTE)
    failed = audited(api, "auth.login_failed")
    assert len(failed) == codes.count(401), "each failed attempt is audited"
    assert {e["detail"]["from"] for e in failed} == {"127.0.0.1"}  # type: ignore[index]
    assert {e["target"] for e in failed} == {"admin"}


def test_forwarded_headers_are_believed_from_a_configured_proxy_only(
    api_server: Callable[..., ApiServer],
) -> None:
    api = api_server(trusted_proxies=("127.0.0.1",))
    browser = api.client(role=None)
    assert login(browser, ADMIN_PASSWORD, forwarded_for="203.0.113.7") == 200
    logins = audited(api, "auth.login")
    assert logins[0]["detail"] == {"from": "203.0.113.7"}


def test_many_addresses_cannot_guess_one_accounts_password_faster(
    api_server: Callable[..., ApiServer],
) -> None:
    # Behind a trusted proxy every attempt may come from another address: the per-address
    # limit never trips, the per-account one does.
    api = api_server(trusted_proxies=("127.0.0.1",))
    browser = api.client(role=None)
    codes = [login(browser, f"guess-{n}", forwarded_for=f"198.51.100.{n}") for n in range(16)]
    assert_limited(codes, LOGIN_PER_MINUTE_PER_USER)
    # Another account is not locked by this one's attempts.
    other = browser.post(
        "/auth/login",
        json={"username": "viewer", "password": "wrong"},
        headers={"X-Forwarded-For": "192.0.2.1"},
    )
    assert other.status_code == 401


def test_a_failed_login_for_an_unknown_name_does_not_record_what_was_typed(
    api_server: Callable[..., ApiServer],
) -> None:
    api = api_server()
    browser = api.client(role=None)
    typed = "hunter2-typed-in-the-wrong-field"
    answer = browser.post("/auth/login", json={"username": typed, "password": "x"})
    assert answer.status_code == 401
    failed = audited(api, "auth.login_failed")
    assert [e["target"] for e in failed] == ["(unknown user)"]
    assert typed not in str(failed)


# -- request bodies ---------------------------------------------------------------
def raw_request(port: int, head: bytes, body_chunks: Iterator[bytes]) -> tuple[bytes, int]:
    """Send ``head`` then body chunks until the server answers; (its answer, bytes sent)."""
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)
        sock.settimeout(0.05)
        answer = b""
        for chunk in body_chunks:
            with contextlib.suppress(TimeoutError):
                answer += sock.recv(65536)
            if answer:
                break
            try:
                sock.sendall(chunk)
            except OSError:  # the server answered and closed: stop sending
                break
            sent += len(chunk)
        sock.settimeout(10)
        deadline = time.monotonic() + 10
        while b"\r\n\r\n" not in answer and time.monotonic() < deadline:
            try:
                more = sock.recv(65536)
            except OSError:
                break
            if not more:
                break
            answer += more
    return answer, sent


def megabytes(total_mb: int) -> Iterator[bytes]:
    chunk = b"x" * (1024 * 1024)
    for _ in range(total_mb):
        yield chunk


def test_an_unauthenticated_100_mb_body_is_refused_before_it_is_read(
    api_server: Callable[..., ApiServer],
) -> None:
    api = api_server()
    head = (
        b"POST /commands HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: 104857600\r\n\r\n"
    )
    answer, sent = raw_request(api.port, head, megabytes(100))
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b'"too_large"' in answer
    assert sent < 20 * 1024 * 1024, f"the server read {sent} bytes before answering"


def test_a_chunked_body_over_the_cap_is_cut_off_with_413(
    api_server: Callable[..., ApiServer],
) -> None:
    api = api_server()
    head = (
        b"POST /auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )

    def chunks() -> Iterator[bytes]:
        for piece in megabytes(100):
            yield f"{len(piece):x}\r\n".encode() + piece + b"\r\n"

    answer, sent = raw_request(api.port, head, chunks())
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sent < 20 * 1024 * 1024, f"the server read {sent} bytes before answering"
    # And the server still answers the next client.
    assert api.client(Role.VIEWER).get("/auth/me").status_code == 200


def test_a_body_under_the_cap_still_works(api_server: Callable[..., ApiServer]) -> None:
    api = api_server()
    browser = api.client(role=None)
    padded = {"username": "admin", "password": ADMIN_PASSWORD}
    answer = browser.post("/auth/login", json=padded, headers={"X-Padding": "y" * 4000})
    assert answer.status_code == 200


# -- odd paths ----------------------------------------------------------------------
NASTY_PATHS = [
    "/assets/%00",
    "/%00",
    "/assets/%00.js",
    "/index.html%00",
    "/assets/..%2f..%2f..%2fetc%2fpasswd",
    "/%2e%2e/%2e%2e/etc/passwd",
    "/assets/%0d%0aSet-Cookie:%20x=1",
    "/assets/" + "a" * 5000,
    "/" + "deep/" * 400,
    "/assets/%ff%fe",
    "/agents/%00",
    "/agents/%ff",
    "/commands/%00",
    "/users/%00/tokens",
    "/audit?actor=%00",
    "/agents?label=%00",
    "/ws%00",
]


def test_no_path_answers_500(api_server: Callable[..., ApiServer], tmp_path: Path) -> None:
    dist = tmp_path / "dist"  # a dashboard build of its own, so file lookups happen
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text("<!doctype html><title>t</title>")
    (dist / "assets" / "app.js").write_text("console.log(1)")
    api = api_server(dashboard_dir=dist)
    assert api.client(role=None).get("/assets/app.js").text == "console.log(1)"
    broken = []
    for client in (api.client(role=None), api.client(Role.ADMIN)):
        for path in NASTY_PATHS:
            answer = client.get(path)
            if answer.status_code >= 500:
                broken.append((path, answer.status_code, answer.text[:120]))
    assert not broken
    assert api.client(Role.VIEWER).get("/auth/me").status_code == 200


# -- admins and first passwords ------------------------------------------------------
def test_the_last_admin_can_be_neither_removed_nor_demoted(
    api_server: Callable[..., ApiServer],
) -> None:
    api = api_server()
    admin = api.client(Role.ADMIN)
    removed = admin.delete("/users/admin")
    assert removed.status_code == 409
    assert removed.json()["error"] == "last_admin"
    assert "last admin" in removed.json()["detail"]
    demoted = admin.patch("/users/admin", json={"role": "viewer"})
    assert demoted.status_code == 409
    assert demoted.json()["error"] == "last_admin"
    assert admin.get("/auth/me").json()["role"] == "admin"

    # With a second admin, one of them may go; then the other is the last again.
    assert admin.post("/users", json={"name": "second", "role": "admin"}).status_code == 201
    assert admin.patch("/users/second", json={"role": "operator"}).json()["role"] == "operator"
    assert admin.patch("/users/second", json={"role": "admin"}).status_code == 200
    assert admin.delete("/users/second").status_code == 204
    assert admin.delete("/users/admin").status_code == 409


def test_two_admins_removing_each_other_at_once_leave_one(
    api_server: Callable[..., ApiServer],
) -> None:
    api = api_server()
    admin = api.client(Role.ADMIN)
    made = admin.post("/users", json={"name": "second", "role": "admin"}).json()
    second = httpx.Client(
        base_url=api.base_url, headers={"Authorization": f"Bearer {made['token']}"}, timeout=30
    )
    with second, ThreadPoolExecutor(2) as pool:
        answers = list(
            pool.map(
                lambda call: call[0].delete(call[1]).status_code,
                [(admin, "/users/second"), (second, "/users/admin")],
            )
        )
    assert sorted(answers) in ([204, 401], [204, 409]), answers
    users = api.client(Role.ADMIN).get("/users")
    admins = [u["name"] for u in users.json() if u["role"] == "admin"] if users.is_success else []
    if not users.is_success:  # the remaining admin was "second": ask with its token
        with httpx.Client(
            base_url=api.base_url, headers={"Authorization": f"Bearer {made['token']}"}
        ) as survivor:
            admins = [u["name"] for u in survivor.get("/users").json() if u["role"] == "admin"]
    assert len(admins) == 1, admins


def test_a_given_password_must_be_changed_before_anything_else(
    api_server: Callable[..., ApiServer],
) -> None:
    api = api_server()
    store = UserStore(api.settings.users_db)
    try:  # as `arete up` makes the first admin
        store.add_user("first", "admin", "printed-by-up-1", must_change_password=True)
    finally:
        store.close()
    browser = api.client(role=None)
    signed_in = browser.post(
        "/auth/login", json={"username": "first", "password": "printed-by-up-1"}
    )
    assert signed_in.json() == {"user": "first", "role": "admin", "must_change_password": True}
    refused = browser.get("/agents")
    assert refused.status_code == 403
    assert refused.json()["error"] == "password_change_required"
    assert browser.post("/users/first/tokens", json={}).status_code == 403
    assert browser.get("/auth/me").json()["must_change_password"] is True

    wrong = browser.post(
        "/auth/password", json={"current_password": "guess-123", "new_password": "mine-12345"}
    )
    assert wrong.status_code == 403
    changed = browser.post(
        "/auth/password",
        json={"current_password": "printed-by-up-1", "new_password": "mine-12345"},
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["must_change_password"] is False
    assert browser.get("/agents").status_code == 200, "the fresh session cookie works"
    old = api.client(role=None).post(
        "/auth/login", json={"username": "first", "password": "printed-by-up-1"}
    )
    assert old.status_code == 401
    assert [e["action"] for e in audited(api, "auth.password")] == ["auth.password"]


def test_a_websocket_message_over_the_cap_closes_the_socket(
    api_server: Callable[..., ApiServer],
) -> None:
    api = api_server()
    url = f"{api.ws_url}/ws?token={api.tokens[Role.VIEWER]}"

    async def oversize() -> int | None:
        async with websockets.connect(url, max_size=None) as ws:
            await ws.recv()  # hello
            await ws.send("x" * (2 * 1024 * 1024))
            try:
                async with asyncio.timeout(10):
                    while True:
                        await ws.recv()
            except websockets.ConnectionClosed as closed:
                return closed.rcvd.code if closed.rcvd else None
        return None

    assert asyncio.run(oversize()) == 1009  # message too big
    assert api.client(Role.VIEWER).get("/auth/me").status_code == 200
