"""How each answer of Telegram and Discord becomes a delivery outcome, and the outbox
rows' life (pending -> sent | failed) on an in-memory SQLite database."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

import httpx
import pytest
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)

from arete.payloads import AlertSeverity
from maestro.notify import outbox
from maestro.notify.channel import Outcome, scrub
from maestro.notify.discord import retry_after_of
from maestro.notify.message import Notice, NoticeItem, NoticeKind, decode_notice
from maestro.notify.outbox import NOTIFY_MIGRATIONS, Outbox
from maestro.notify.telegram import outcome_of
from maestro.store.db import migrate

SECRET = "123:SECRET"


# PTB warns about its own RetryAfter.retry_after type change when one is built, so the
# errors are built inside the test (where this filter applies), not at collection.
@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")
@pytest.mark.parametrize(
    ("make_error", "kind"),
    [
        (lambda: RetryAfter(3), "retry_after"),
        (lambda: BadRequest("Bad Request: chat not found"), "refused"),
        (TimedOut, "retry"),
        (lambda: NetworkError("Internal Server Error (500)"), "retry"),
        (lambda: InvalidToken("Unauthorized"), "refused"),
        (lambda: Forbidden("Forbidden: bot was blocked by the user"), "refused"),
        (lambda: ChatMigrated(-100123), "refused"),
        (lambda: TelegramError("Invalid server response"), "retry"),
    ],
)
def test_telegram_errors_map_to_outcomes(
    make_error: Callable[[], TelegramError], kind: str
) -> None:
    outcome = outcome_of(make_error(), lambda text: scrub(text, [SECRET]))
    assert outcome.kind == kind
    if kind == "retry_after":
        assert outcome.delay_s == 3.0


def test_error_texts_are_scrubbed_of_the_token() -> None:
    outcome = outcome_of(
        NetworkError(f"httpx.ConnectError: https://api.telegram.org/bot{SECRET}/sendMessage"),
        lambda text: scrub(text, [SECRET]),
    )
    assert SECRET not in outcome.reason
    assert "***" in outcome.reason


def response(status: int, body: bytes = b"", **headers: str) -> httpx.Response:
    return httpx.Response(status, content=body, headers=headers)


def test_discord_429_wait_comes_from_the_body_then_the_header() -> None:
    assert retry_after_of(response(429, b'{"retry_after": 1.5, "global": false}')) == 1.5
    assert retry_after_of(response(429, b"not json", **{"Retry-After": "3"})) == 3.0
    assert retry_after_of(response(429, b'{"retry_after": "soon"}', **{"Retry-After": "2"})) == 2.0
    assert retry_after_of(response(429)) == 1.0
    assert retry_after_of(response(429, b'{"retry_after": 1e9}')) == 3600.0


# -- outbox rows -------------------------------------------------------------------------
NOTICE = Notice(
    agent="a1",
    ts=1.0,
    items=[
        NoticeItem(
            alert_id="0123456789abcdef",
            rule="agent_offline",
            severity=AlertSeverity.CRITICAL,
            kind=NoticeKind.FIRING,
            summary="a1 is offline",
            since=1.0,
        )
    ],
)


@pytest.fixture
def conn() -> sqlite3.Connection:
    connection = sqlite3.connect(":memory:", isolation_level=None)
    migrate(connection, "notify", NOTIFY_MIGRATIONS)
    return connection


def test_a_notice_becomes_one_pending_row_per_channel(conn: sqlite3.Connection) -> None:
    box = Outbox(["telegram:1", "telegram:2", "discord"])
    assert box.enqueue(conn, NOTICE, 10.0) == 3
    rows = outbox.all_rows(conn)
    assert [(r.channel, r.state) for r in rows] == [
        ("telegram:1", "pending"),
        ("telegram:2", "pending"),
        ("discord", "pending"),
    ]
    assert decode_notice(rows[0].body) == NOTICE
    assert outbox.count_pending(conn) == {"telegram:1": 1, "telegram:2": 1, "discord": 1}


def test_without_channels_nothing_is_queued(conn: sqlite3.Connection) -> None:
    assert Outbox([]).enqueue(conn, NOTICE, 10.0) == 0
    assert outbox.all_rows(conn) == []


def test_rows_go_pending_to_sent_or_failed_and_only_once(conn: sqlite3.Connection) -> None:
    Outbox(["discord"]).enqueue(conn, NOTICE, 10.0)
    Outbox(["discord"]).enqueue(conn, NOTICE, 11.0)
    first, second = outbox.pending_rows(conn, "discord")
    outbox.mark_retry(conn, first.id, 20.0, "server error 502")
    outbox.mark_sent(conn, first.id, 21.0)
    outbox.mark_failed(conn, first.id, 22.0, "too late")  # a sent row stays sent
    outbox.mark_failed(conn, second.id, 23.0, "refused with 404")
    rows = {r.id: r for r in outbox.all_rows(conn)}
    assert (rows[first.id].state, rows[first.id].attempts) == ("sent", 2)
    assert (rows[second.id].state, rows[second.id].last_error) == ("failed", "refused with 404")
    assert outbox.pending_rows(conn, "discord") == []
    assert outbox.prune(conn, before=22.5) == 1
    assert [r.id for r in outbox.all_rows(conn)] == [second.id]


def test_the_poll_offset_is_kept(conn: sqlite3.Connection) -> None:
    assert outbox.get_state(conn, "telegram.update_offset") is None
    outbox.set_state(conn, "telegram.update_offset", "42")
    outbox.set_state(conn, "telegram.update_offset", "43")
    assert outbox.get_state(conn, "telegram.update_offset") == "43"


def test_outcomes_say_what_to_do() -> None:
    assert Outcome.retry_after(-5, "429").delay_s == 0.0
    assert Outcome.sent(pause_s=2.0).delay_s == 2.0


def test_rows_of_a_channel_no_longer_configured_fail(conn: sqlite3.Connection) -> None:
    Outbox(["telegram:1", "telegram:2"]).enqueue(conn, NOTICE, 10.0)
    assert outbox.fail_unknown_channels(conn, ["telegram:1"], 20.0) == 1
    assert [(r.channel, r.state) for r in outbox.all_rows(conn)] == [
        ("telegram:1", "pending"),
        ("telegram:2", "failed"),
    ]
