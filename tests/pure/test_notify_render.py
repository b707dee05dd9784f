"""How notices read: Telegram text and buttons (callback data within 64 bytes), Discord
embeds without pings, and the button data parser that guards the callbacks."""

from __future__ import annotations

import pytest

from arete.payloads import AlertSeverity
from maestro.notify.message import Notice, NoticeItem, NoticeKind, decode_notice, encode_notice
from maestro.notify.render import (
    MAX_CALLBACK_BYTES,
    CallbackAction,
    discord_payload,
    parse_callback,
    telegram_buttons,
    telegram_text,
    without_alert_buttons,
)

ID1 = "0123456789abcdef"
ID2 = "fedcba9876543210"


def item(alert_id: str, rule: str, kind: NoticeKind, **extra: object) -> NoticeItem:
    return NoticeItem(
        alert_id=alert_id,
        rule=rule,
        severity=AlertSeverity.CRITICAL,
        kind=kind,
        summary=f"web-01 {rule}",
        since=1_700_000_000.0,
        **extra,  # type: ignore[arg-type]
    )


NOTICE = Notice(
    agent="web-01",
    ts=1_700_000_002.0,
    items=[
        item(ID1, "agent_offline", NoticeKind.FIRING),
        item(ID2, "cpu_high", NoticeKind.RESOLVED, value=97.5, acked_by="alice"),
    ],
)


def test_telegram_text_names_the_agent_each_alert_and_who_acknowledged() -> None:
    text = telegram_text(NOTICE)
    assert text.startswith("Areté: web-01 (1 firing, 1 resolved)")
    assert "FIRING [critical] web-01 agent_offline" in text
    assert "RESOLVED [critical] web-01 cpu_high" in text
    assert "acknowledged by alice" in text


def test_buttons_only_for_alerts_still_firing_and_within_64_bytes() -> None:
    rows = telegram_buttons(NOTICE)
    assert rows == [[("Acknowledge", f"ack:{ID1}"), ("Silence 1 h", f"sil:{ID1}:3600")]]
    assert all(len(data.encode()) <= MAX_CALLBACK_BYTES for row in rows for _, data in row)


def test_button_data_round_trips_and_strangers_are_refused() -> None:
    assert parse_callback(f"ack:{ID1}") == CallbackAction("ack", ID1)
    assert parse_callback(f"sil:{ID1}:3600") == CallbackAction("silence", ID1, 3600)
    for bad in [
        None,
        "",
        "ack:",
        "ack:../../x",
        f"del:{ID1}",
        f"sil:{ID1}:5",
        f"sil:{ID1}:99999999",
        f"sil:{ID1}:-1",
        f"ack:{ID1}:x",
        "ack:" + "a" * 80,
    ]:
        assert parse_callback(bad) is None, bad


def test_spent_buttons_of_one_alert_are_removed_and_the_others_kept() -> None:
    rows = [
        [("Acknowledge", f"ack:{ID1}"), ("Silence 1 h", f"sil:{ID1}:3600")],
        [("Acknowledge", f"ack:{ID2}"), ("Silence 1 h", f"sil:{ID2}:3600")],
    ]
    assert without_alert_buttons(rows, ID1) == rows[1:]


def test_a_huge_notice_is_cut_to_telegrams_limit() -> None:
    many = Notice(
        agent="a1",
        ts=0.0,
        items=[item(f"{i:016x}", "r" * 200, NoticeKind.FIRING) for i in range(60)],
    )
    assert len(telegram_text(many)) <= 4096


def test_discord_payload_pings_nobody_and_colours_by_severity() -> None:
    body = discord_payload(NOTICE)
    assert body["allowed_mentions"] == {"parse": []}
    assert body["content"] == "Areté: web-01 (1 firing, 1 resolved)"
    firing, resolved = body["embeds"]
    assert firing["color"] == 0xE74C3C
    assert resolved["color"] == 0x2ECC71
    assert {"name": "value", "value": "97.5", "inline": True} in resolved["fields"]


def test_discord_shows_at_most_ten_embeds_and_says_how_many_more() -> None:
    many = Notice(
        agent="a1", ts=0.0, items=[item(f"{i:016x}", "r", NoticeKind.FIRING) for i in range(12)]
    )
    body = discord_payload(many)
    assert len(body["embeds"]) == 10
    assert body["content"].endswith("(+2 more)")


def test_notices_survive_the_outbox_encoding() -> None:
    assert decode_notice(encode_notice(NOTICE)) == NOTICE


@pytest.mark.parametrize("kind", list(NoticeKind))
def test_every_kind_renders(kind: NoticeKind) -> None:
    notice = Notice(agent="a1", ts=0.0, items=[item(ID1, "r", kind, flaps=2)])
    assert "came back 2x" in telegram_text(notice)
    assert discord_payload(notice)["embeds"]
