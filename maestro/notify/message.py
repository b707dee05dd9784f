"""What one notification says, independent of the channel that carries it.

The alert engine produces a :class:`Notice` (one per agent and group window); the
outbox stores it as JSON, one row per channel; each channel renders it at send time
(Telegram text with buttons, a Discord embed). Keeping the neutral form in the outbox
means a message queued before an upgrade still renders with the new code.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import msgspec

from arete.payloads import AlertSeverity

MAX_NOTICE_BYTES = 256 * 1024


class NoticeKind(StrEnum):
    FIRING = "firing"  # first word about an incident
    REFIRING = "refiring"  # an incident that resolved came back (flapping)
    REMINDER = "reminder"  # still firing, nobody acknowledged it
    RESOLVED = "resolved"


class NoticeItem(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True):
    alert_id: str
    rule: str
    severity: AlertSeverity
    kind: NoticeKind
    summary: str
    since: float  # unix seconds the incident started
    value: float | None = None
    acked_by: str | None = None
    flaps: int = 0  # how often the incident came back after resolving


class Notice(msgspec.Struct, kw_only=True, frozen=True):
    """The alerts of one agent that changed within one group window."""

    agent: str
    ts: float
    items: Annotated[list[NoticeItem], msgspec.Meta(min_length=1)]

    @property
    def worst(self) -> AlertSeverity:
        order = [AlertSeverity.INFO, AlertSeverity.WARNING, AlertSeverity.CRITICAL]
        live = [i.severity for i in self.items if i.kind is not NoticeKind.RESOLVED]
        return max(live, key=order.index) if live else AlertSeverity.INFO


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Notice)


def encode_notice(notice: Notice) -> bytes:
    return _encoder.encode(notice)


def decode_notice(data: bytes) -> Notice:
    """Decode a stored notice; raises ``msgspec.DecodeError`` / ``ValidationError``."""
    if len(data) > MAX_NOTICE_BYTES:
        raise msgspec.ValidationError(f"notice of {len(data)} bytes is too large")
    return _decoder.decode(data)
