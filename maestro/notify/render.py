"""How a :class:`~maestro.notify.message.Notice` reads on each channel.

Plain text for Telegram (no parse mode: an agent name or a summary with ``<`` or ``_``
can never break the message), one embed per alert for Discord. Telegram's inline
buttons carry ``callback_data`` of at most 64 bytes: ``ack:<alert id>`` and
``sil:<alert id>:<seconds>``; :func:`parse_callback` is their only reader.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any, Final, Literal

from arete.payloads import AlertSeverity
from maestro.notify.message import Notice, NoticeItem, NoticeKind

MAX_CALLBACK_BYTES: Final = 64
SILENCE_BUTTON_S: Final = 3600
MAX_SILENCE_S: Final = 7 * 86400
TELEGRAM_MAX_CHARS: Final = 4096
DISCORD_MAX_EMBEDS: Final = 10

_ALERT_ID_RE: Final = re.compile(r"^[A-Za-z0-9_-]{1,40}\Z")
_ICONS: Final = {
    NoticeKind.FIRING: "\N{POLICE CARS REVOLVING LIGHT}",
    NoticeKind.REFIRING: "\N{POLICE CARS REVOLVING LIGHT}",
    NoticeKind.REMINDER: "\N{ALARM CLOCK}",
    NoticeKind.RESOLVED: "\N{WHITE HEAVY CHECK MARK}",
}
_WORDS: Final = {
    NoticeKind.FIRING: "FIRING",
    NoticeKind.REFIRING: "FIRING AGAIN",
    NoticeKind.REMINDER: "STILL FIRING",
    NoticeKind.RESOLVED: "RESOLVED",
}
_DISCORD_COLOURS: Final = {
    AlertSeverity.INFO: 0x3498DB,
    AlertSeverity.WARNING: 0xF1C40F,
    AlertSeverity.CRITICAL: 0xE74C3C,
}
_RESOLVED_COLOUR: Final = 0x2ECC71


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


def item_line(item: NoticeItem) -> str:
    parts = [f"{_ICONS[item.kind]} {_WORDS[item.kind]} [{item.severity}] {item.summary}"]
    extras = [f"rule {item.rule}", f"since {_when(item.since)}"]
    if item.flaps:
        extras.append(f"came back {item.flaps}x")
    if item.acked_by:
        extras.append(f"acknowledged by {item.acked_by}")
    parts.append("   " + ", ".join(extras))
    return "\n".join(parts)


def headline(notice: Notice) -> str:
    firing = sum(1 for i in notice.items if i.kind is not NoticeKind.RESOLVED)
    resolved = len(notice.items) - firing
    counts = ", ".join(
        text for n, text in ((firing, f"{firing} firing"), (resolved, f"{resolved} resolved")) if n
    )
    return f"Areté: {notice.agent} ({counts})"


# -- Telegram ----------------------------------------------------------------------------
def telegram_text(notice: Notice) -> str:
    body = "\n\n".join(item_line(item) for item in notice.items)
    text = f"{headline(notice)}\n\n{body}"
    if len(text) > TELEGRAM_MAX_CHARS:
        text = text[: TELEGRAM_MAX_CHARS - 1] + "\N{HORIZONTAL ELLIPSIS}"
    return text


def telegram_buttons(notice: Notice) -> list[list[tuple[str, str]]]:
    """One row ``[(label, callback_data), ...]`` per alert that is still firing."""
    rows: list[list[tuple[str, str]]] = []
    many = len([i for i in notice.items if i.kind is not NoticeKind.RESOLVED]) > 1
    for item in notice.items:
        if item.kind is NoticeKind.RESOLVED or not _ALERT_ID_RE.fullmatch(item.alert_id):
            continue
        suffix = f" {item.rule}" if many else ""
        row = [("Acknowledge" + suffix, ack_data(item.alert_id))]
        row.append(("Silence 1 h" + suffix, silence_data(item.alert_id, SILENCE_BUTTON_S)))
        rows.append(row)
    return rows


def ack_data(alert_id: str) -> str:
    return _checked(f"ack:{alert_id}")


def silence_data(alert_id: str, seconds: int) -> str:
    return _checked(f"sil:{alert_id}:{seconds}")


def _checked(data: str) -> str:
    if len(data.encode()) > MAX_CALLBACK_BYTES:
        raise ValueError(f"callback data over {MAX_CALLBACK_BYTES} bytes: {data[:20]}...")
    return data


@dataclass(frozen=True, slots=True)
class CallbackAction:
    """What a button press asks for; ``seconds`` only for a silence."""

    action: Literal["ack", "silence"]
    alert_id: str
    seconds: int = 0


def parse_callback(data: str | None) -> CallbackAction | None:
    """The action of a button's ``callback_data``, or ``None`` if it is not one of ours."""
    if not data or len(data.encode()) > MAX_CALLBACK_BYTES:
        return None
    parts = data.split(":")
    if parts[0] == "ack" and len(parts) == 2 and _ALERT_ID_RE.fullmatch(parts[1]):
        return CallbackAction("ack", parts[1])
    if (
        parts[0] == "sil"
        and len(parts) == 3
        and _ALERT_ID_RE.fullmatch(parts[1])
        and parts[2].isdigit()
        and 60 <= int(parts[2]) <= MAX_SILENCE_S
    ):
        return CallbackAction("silence", parts[1], int(parts[2]))
    return None


def without_alert_buttons(
    rows: list[list[tuple[str, str]]], alert_id: str
) -> list[list[tuple[str, str]]]:
    """The keyboard rows left once the buttons of ``alert_id`` are spent."""
    kept = []
    for row in rows:
        actions = [parse_callback(data) for _, data in row]
        if any(a is not None and a.alert_id == alert_id for a in actions):
            continue
        kept.append(row)
    return kept


# -- Discord -----------------------------------------------------------------------------
def discord_payload(notice: Notice) -> dict[str, Any]:
    """Body of a webhook POST: a headline and one embed per alert, no pings."""
    embeds = []
    for item in notice.items[:DISCORD_MAX_EMBEDS]:
        resolved = item.kind is NoticeKind.RESOLVED
        fields = [
            {"name": "rule", "value": item.rule, "inline": True},
            {"name": "severity", "value": str(item.severity), "inline": True},
        ]
        if item.value is not None:
            fields.append({"name": "value", "value": f"{item.value:g}", "inline": True})
        if item.acked_by:
            fields.append({"name": "acknowledged by", "value": item.acked_by, "inline": True})
        if item.flaps:
            fields.append({"name": "came back", "value": f"{item.flaps}x", "inline": True})
        embeds.append(
            {
                "title": f"{_WORDS[item.kind]}: {item.summary}"[:256],
                "color": _RESOLVED_COLOUR if resolved else _DISCORD_COLOURS[item.severity],
                "fields": fields,
                "footer": {"text": f"alert {item.alert_id}"},
                "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(item.since)),
            }
        )
    content = headline(notice)
    hidden = len(notice.items) - len(embeds)
    if hidden > 0:
        content += f" (+{hidden} more)"
    return {"content": content[:2000], "embeds": embeds, "allowed_mentions": {"parse": []}}
