"""Pure parts of the web API: users and tokens, rate limits, origins, live streams,
job selection, dashboard paths."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from maestro.events import Event
from web_api.auth.roles import Role, role_for_command
from web_api.auth.users import UserError, UserStore, ensure_admin
from web_api.dashboard import is_api_path, resolve_file
from web_api.jobs import batches, crossed, select_agents
from web_api.live import ClientMessageError, MetricStreams, event_frame, parse_client_message
from web_api.origin import origin_allowed
from web_api.ratelimit import RateLimiter, retry_after

FAST_HASH = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


@pytest.fixture
def users(tmp_path: Path) -> UserStore:
    return UserStore(tmp_path / "web" / "users.db", hasher=FAST_HASH)


def test_tokens_work_once_issued_and_stop_with_their_user(users: UserStore) -> None:
    users.add_user("ci", "operator")
    token = users.create_token("ci")
    assert token.startswith("arete_")
    principal = users.verify_token(token)
    assert principal is not None
    assert (principal.name, principal.role, principal.actor) == ("ci", Role.OPERATOR, "user:ci")
    assert users.verify_token(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert users.verify_token("arete_0000000000000000_" + "x" * 43) is None
    users.remove_user("ci")
    assert users.verify_token(token) is None


def test_only_hashes_are_stored_and_the_file_is_private(users: UserStore) -> None:
    users.add_user("alice", "admin", "a long password")
    token = users.create_token("alice")
    raw = users.path.read_bytes()
    assert b"a long password" not in raw
    assert token.split("_", 2)[2].encode() not in raw  # the secret may hold "_" itself
    assert stat.S_IMODE(users.path.stat().st_mode) == 0o600


def test_passwords_and_sessions(users: UserStore) -> None:
    users.add_user("alice", "viewer", "a long password")
    assert users.verify_password("alice", "wrong password") is None
    assert users.verify_password("nobody", "a long password") is None
    assert users.verify_password("alice", "a long password") is not None
    session, expires = users.create_session("alice", 60)
    assert expires > 0
    assert users.session_user(session) is not None
    users.end_session(session)
    assert users.session_user(session) is None


def test_sessions_expire(tmp_path: Path) -> None:
    now = [1000.0]
    store = UserStore(tmp_path / "u.db", hasher=FAST_HASH, clock=lambda: now[0])
    store.add_user("bob", "viewer")
    session, _ = store.create_session("bob", 10)
    assert store.session_user(session) is not None
    now[0] += 11
    assert store.session_user(session) is None


def test_bad_users_are_refused(users: UserStore) -> None:
    with pytest.raises(UserError):
        users.add_user("../x", "viewer")
    with pytest.raises(UserError):
        users.add_user("ok", "root")
    with pytest.raises(UserError):
        users.add_user("ok", "viewer", "short")
    users.add_user("ok", "viewer")
    with pytest.raises(UserError):
        users.add_user("ok", "viewer")


def test_first_start_creates_an_admin_once(tmp_path: Path) -> None:
    password = ensure_admin(tmp_path)
    assert password
    assert ensure_admin(tmp_path) is None
    store = UserStore(tmp_path / "web" / "users.db")
    assert store.verify_password("admin", password) is not None


def test_roles_order_and_command_needs() -> None:
    assert Role.ADMIN.allows(Role.OPERATOR)
    assert not Role.VIEWER.allows(Role.OPERATOR)
    assert role_for_command("restart") is Role.OPERATOR
    assert role_for_command("shell") is Role.ADMIN
    assert role_for_command("something_new") is Role.ADMIN


def test_a_burst_then_refusal_then_refill() -> None:
    limiter = RateLimiter(rate_per_s=2, burst=3)
    assert [limiter.take("ip", 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.take("ip", 0.0)
    assert wait == pytest.approx(0.5)
    assert retry_after(wait) == "1"
    assert limiter.take("other", 0.0) == 0.0
    assert limiter.take("ip", 0.5) == 0.0


@pytest.mark.parametrize(
    ("origin", "host", "allowed", "ok"),
    [
        ("http://127.0.0.1:8080", "127.0.0.1:8080", (), True),
        ("http://evil.example", "127.0.0.1:8080", (), False),
        ("https://arete.example.org", "10.0.0.1", ("https://arete.example.org",), True),
        ("null", "127.0.0.1:8080", (), False),
        (None, "127.0.0.1:8080", (), True),
    ],
)
def test_origins(origin: str | None, host: str, allowed: tuple[str, ...], ok: bool) -> None:
    assert origin_allowed(origin, host, allowed, missing_ok=True) is ok


def test_metric_streams_send_each_sample_once_and_in_order() -> None:
    streams = MetricStreams()
    fresh = streams.apply(*parse_client_message({"subscribe": ["a1", "a2"]}))
    assert fresh == ["a1", "a2"]
    latest = {"a1": {"ts": 1.0, "epoch": 1, "seq": 10, "values": {"cpu": 5.0}}}
    assert streams.first(fresh, latest.get, now=10.0) == [
        {
            "kind": "metrics",
            "ts": 10.0,
            "data": {"agent": "a1", "ts": 1.0, "epoch": 1, "seq": 10, "values": {"cpu": 5.0}},
        }
    ]
    sample = {"agent": "a1", "ts": 2.0, "epoch": 1, "seq": 11, "values": {"cpu": 6.0}}
    assert streams.live(sample, now=11.0) is not None
    assert streams.live(sample, now=11.1) is None  # the same sample again
    assert streams.live(sample | {"seq": 9}, now=11.2) is None  # older
    assert streams.live(sample | {"agent": "zz", "seq": 12}, now=11.3) is None  # not followed
    assert streams.apply(*parse_client_message({"unsubscribe": ["a1", "nope"]})) == ["a1"]
    assert streams.live(sample | {"seq": 12}, now=12.0) is None
    bad_messages: list[object] = [{"subscribe": "a1"}, {"hello": []}, [], {"subscribe": [1]}]
    for bad in bad_messages:
        with pytest.raises(ClientMessageError):
            parse_client_message(bad)


def test_screenshot_images_are_left_out_of_live_frames_but_not_what_describes_them() -> None:
    result = {"png_b64": "x" * 100, "width": 8, "height": 6, "blank": True}
    event = Event("command", 1.0, {"name": "screenshot", "result": result})
    assert event_frame(event, Role.VIEWER)["data"]["result"] == {
        "width": 8,
        "height": 6,
        "blank": True,
    }
    assert event.data["result"]["png_b64"], "the event itself is not changed"


def test_jobs_pick_agents_by_labels_and_stop_past_the_threshold() -> None:
    views = [
        {"id": "b", "labels": {"role": "web"}},
        {"id": "a", "labels": {"role": "web", "dc": "1"}},
        {"id": "c", "labels": {"role": "db"}},
    ]
    assert select_agents(views, {"role": "web"}, None) == ["a", "b"]
    assert select_agents(views, {"role": "web"}, ["b", "c"]) == ["b"]
    assert select_agents(views, {}, None) == ["a", "b", "c"]
    assert batches(["a", "b", "c"], 2) == [["a", "b"], ["c"]]
    assert not crossed(1, 1)
    assert crossed(2, 1)


def test_dashboard_paths_stay_inside_dist(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("<html></html>")
    assert resolve_file(tmp_path, "index.html") == (tmp_path / "index.html").resolve()
    assert resolve_file(tmp_path, "../../etc/passwd") is None
    assert is_api_path("agents/a1")
    assert not is_api_path("fleet/a1")


def test_shell_arguments_and_output_are_hidden_below_admin_in_event_frames() -> None:
    record = {
        "name": "shell",
        "args": {"argv": ["cat", "/etc/shadow"]},
        "result": {"stdout": "root:$6$secret"},
        "error_message": None,
    }
    event = Event("command", 1.0, record)
    for role in (Role.VIEWER, Role.OPERATOR):
        data = event_frame(event, role)["data"]
        assert (data["args"], data["result"], data["redacted"]) == ({}, None, True)
        assert "secret" not in str(data)
    assert event_frame(event, Role.ADMIN)["data"] == record
    metrics = Event("command", 1.0, {"name": "metrics", "args": {}, "result": {"cpu": 1}})
    assert event_frame(metrics, Role.VIEWER)["data"]["result"] == {"cpu": 1}


def test_the_first_admin_password_goes_to_a_private_file_when_output_is_not_a_terminal(
    tmp_path: Path,
) -> None:
    from web_api.cli import announce_admin_password

    line = announce_admin_password(tmp_path, "one-time-secret-1", terminal=False)
    assert "one-time-secret-1" not in line, "the service's log never gets the password"
    written = tmp_path / "web" / "admin-initial.password"
    assert str(written) in line
    assert written.read_text() == "one-time-secret-1\n"
    assert written.stat().st_mode & 0o777 == 0o600
    assert "one-time-secret-1" in announce_admin_password(tmp_path, "one-time-secret-1", True)


def test_the_store_keeps_one_admin_and_marks_the_first_admins_password_for_change(
    tmp_path: Path,
) -> None:
    from web_api.auth.users import LastAdminError

    password = ensure_admin(tmp_path)
    assert password is not None
    store = UserStore(tmp_path / "web" / "users.db", hasher=PasswordHasher(time_cost=1))
    try:
        principal = store.verify_password("admin", password)
        assert principal is not None
        assert principal.must_change_password
        with pytest.raises(LastAdminError, match="last admin"):
            store.remove_user("admin")
        with pytest.raises(LastAdminError, match="last admin"):
            store.set_role("admin", "operator")
        store.set_password("admin", "chosen-by-the-admin")
        changed = store.verify_password("admin", "chosen-by-the-admin")
        assert changed is not None
        assert not changed.must_change_password
        store.add_user("second", "admin")
        store.set_role("admin", "viewer")  # another admin exists: allowed
        with pytest.raises(LastAdminError):
            store.remove_user("second")
    finally:
        store.close()
