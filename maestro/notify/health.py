"""Notifier health: per channel, when it last delivered, when it last failed and why,
and what waits in its queue. Read from the outbox table (so it survives restarts and
is the same on every replica) plus this process's counters."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ChannelHealth:
    channel: str
    kind: str  # telegram | discord
    queued: int = 0  # rows still to deliver
    oldest_queued_at: float | None = None
    last_sent_at: float | None = None
    last_failed_at: float | None = None  # failed for good (refused, or gave up)
    last_error: str | None = None  # of the last failure, or of the head row's last retry
    retrying: bool = False  # the head of the queue was tried and waits for a retry
    sent: int = 0  # since this process started
    failed: int = 0
    retried: int = 0

    @property
    def status(self) -> str:
        """``ok``, ``retrying`` (deliveries wait on errors) or ``failing`` (the last
        attempt failed for good and nothing was delivered since)."""
        if self.retrying:
            return "retrying"
        if self.last_failed_at is not None and (
            self.last_sent_at is None or self.last_failed_at > self.last_sent_at
        ):
            return "failing"
        return "ok"

    def to_json(self) -> dict[str, object]:
        return {
            "channel": self.channel,
            "kind": self.kind,
            "status": self.status,
            "queued": self.queued,
            "oldest_queued_at": self.oldest_queued_at,
            "last_sent_at": self.last_sent_at,
            "last_failed_at": self.last_failed_at,
            "last_error": self.last_error,
            "sent": self.sent,
            "failed": self.failed,
            "retried": self.retried,
        }


def kind_of(channel: str) -> str:
    return channel.split(":", 1)[0]


def read_health(conn: sqlite3.Connection, channels: list[str]) -> dict[str, ChannelHealth]:
    """Each configured channel's figures from the outbox (runs on a store thread)."""
    out: dict[str, ChannelHealth] = {}
    for name in channels:
        queued, oldest = conn.execute(
            "SELECT COUNT(*), MIN(created_at) FROM notify_outbox"
            " WHERE channel = ? AND state = 'pending'",
            (name,),
        ).fetchone()
        (last_sent,) = conn.execute(
            "SELECT MAX(done_at) FROM notify_outbox WHERE channel = ? AND state = 'sent'",
            (name,),
        ).fetchone()
        failed = conn.execute(
            "SELECT done_at, last_error FROM notify_outbox WHERE channel = ? AND state = 'failed'"
            " ORDER BY done_at DESC LIMIT 1",
            (name,),
        ).fetchone()
        head = conn.execute(
            "SELECT attempts, last_error FROM notify_outbox WHERE channel = ? AND state = 'pending'"
            " ORDER BY id LIMIT 1",
            (name,),
        ).fetchone()
        retrying = head is not None and head[0] > 0
        error = head[1] if retrying else (failed[1] if failed is not None else None)
        out[name] = ChannelHealth(
            channel=name,
            kind=kind_of(name),
            queued=int(queued),
            oldest_queued_at=oldest,
            last_sent_at=last_sent,
            last_failed_at=None if failed is None else failed[0],
            last_error=error,
            retrying=retrying,
        )
    return out
