"""Delivers the outbox: one loop per channel, in order, within the channel's rate limit.

Each channel works through its pending rows oldest first. A row that must wait (a 429's
``retry_after``, a backoff after a 5xx) holds the rows behind it, so a "resolved" never
overtakes its "firing". Channels are independent: a Discord outage delays nothing on
Telegram.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence

import msgspec

from arete.backoff import Backoff
from maestro.errors import MaestroError
from maestro.notify import outbox as rows
from maestro.notify.channel import Channel, Outcome
from maestro.notify.message import decode_notice
from maestro.notify.outbox import Outbox, OutboxRow
from maestro.notify.ratelimit import RateLimit, acquire
from maestro.notify.settings import NotifySettings
from maestro.store.core import Store

log = logging.getLogger(__name__)

BATCH = 20
HOUSEKEEPING_S = 30.0
PRUNE_EVERY_S = 3600.0


class Dispatcher:
    """Counters (plain attributes, for the Prometheus exporter): ``sent``, ``failed``,
    ``retried`` per channel, ``pending`` per channel (refreshed every 30 s)."""

    def __init__(
        self,
        store: Store,
        outbox: Outbox,
        channels: Sequence[Channel],
        settings: NotifySettings,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._outbox = outbox
        self.channels = {channel.name: channel for channel in channels}
        self._settings = settings
        self._clock = clock
        self.sent: dict[str, int] = dict.fromkeys(self.channels, 0)
        self.failed: dict[str, int] = dict.fromkeys(self.channels, 0)
        self.retried: dict[str, int] = dict.fromkeys(self.channels, 0)
        self.pending: dict[str, int] = dict.fromkeys(self.channels, 0)

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            for channel in self.channels.values():
                group.create_task(self.deliver(channel), name=f"notify-{channel.name}")
            group.create_task(self._housekeeping(), name="notify-housekeeping")

    async def aclose(self) -> None:
        for channel in self.channels.values():
            await channel.aclose()

    async def refresh_counters(self) -> None:
        counts = await self._store.read(rows.count_pending)
        for name in self.channels:
            self.pending[name] = counts.get(name, 0)

    async def _housekeeping(self) -> None:
        last_prune = 0.0
        while True:
            try:
                now = self._clock()
                if now - last_prune >= PRUNE_EVERY_S:
                    await self._tidy(now)
                    last_prune = now
                await self.refresh_counters()
            except MaestroError as exc:  # the store's trouble; deliveries log their own
                log.warning("outbox housekeeping failed", extra={"kv": {"error": str(exc)}})
            await asyncio.sleep(HOUSEKEEPING_S)

    async def _tidy(self, now: float) -> None:
        known = list(self.channels)
        before = now - self._settings.keep_days * 86400

        def tidy(conn: sqlite3.Connection) -> int:
            rows.prune(conn, before)
            return rows.fail_unknown_channels(conn, known, now)

        orphans = await self._store.write(tidy)
        if orphans:
            log.warning(
                "notifications for channels no longer configured were dropped",
                extra={"kv": {"count": orphans}},
            )

    async def deliver(self, channel: Channel) -> None:
        """Deliver ``channel``'s rows until cancelled."""
        name = channel.name
        limit = channel.new_limit()
        backoff = Backoff(self._settings.retry_min_s, self._settings.retry_max_s)
        while True:
            try:
                batch = await self._store.read(lambda conn: rows.pending_rows(conn, name, BATCH))
                if not batch:
                    await self._outbox.wait(name, self._settings.poll_s)
                    continue
                for row in batch:
                    wait = row.next_attempt_at - self._clock()
                    if wait > 0:  # the head row is backing off: everything behind it waits
                        await asyncio.sleep(min(wait, self._settings.poll_s))
                        break
                    limit = await self._slot(limit)
                    limit, stop = await self._attempt(channel, row, limit, backoff)
                    if stop:
                        break
            except MaestroError as exc:  # the store could not be read or written: try again
                delay = backoff.next()
                log.error(
                    "notification outbox unavailable",
                    extra={"kv": {"channel": name, "error": str(exc), "retry_in_s": delay}},
                )
                await asyncio.sleep(delay)

    async def _slot(self, limit: RateLimit) -> RateLimit:
        while True:
            limit, wait = acquire(limit, self._clock())
            if wait <= 0:
                return limit
            await asyncio.sleep(wait)

    async def _attempt(
        self, channel: Channel, row: OutboxRow, limit: RateLimit, backoff: Backoff
    ) -> tuple[RateLimit, bool]:
        """Try ``row`` once; return the limit and whether the channel must stop for now."""
        name = channel.name
        now = self._clock()
        if now - row.created_at > self._settings.give_up_after_s:
            await self._fail(row, now, f"undelivered after {self._settings.give_up_after_s:g} s")
            return limit, False
        try:
            notice = decode_notice(row.body)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            await self._fail(row, now, f"unreadable notice: {exc}")
            return limit, False
        try:
            outcome = await channel.send(notice)
        except Exception:  # a channel bug must not end delivery for every channel
            log.exception("notification channel failed", extra={"kv": {"channel": name}})
            outcome = Outcome.retry("unexpected error in the channel")
        now = self._clock()
        kv = {"channel": name, "row": row.id, "attempt": row.attempts + 1}
        if outcome.kind == "sent":
            await self._store.write(lambda conn: rows.mark_sent(conn, row.id, now))
            self.sent[name] += 1
            backoff.reset()
            log.info("notification sent", extra={"kv": {**kv, "agent": notice.agent}})
            if outcome.delay_s > 0:
                limit = limit.pause(now + outcome.delay_s)
            return limit, False
        if outcome.kind == "refused":
            await self._fail(row, now, outcome.reason)
            return limit, False
        if outcome.kind == "retry_after":
            delay = outcome.delay_s
            limit = limit.pause(now + delay)
        else:
            delay = backoff.next()
        next_at = now + delay
        await self._store.write(lambda conn: rows.mark_retry(conn, row.id, next_at, outcome.reason))
        self.retried[name] += 1
        log.warning(
            "notification will be retried",
            extra={"kv": {**kv, "reason": outcome.reason, "retry_in_s": round(delay, 2)}},
        )
        return limit, True

    async def _fail(self, row: OutboxRow, now: float, reason: str) -> None:
        await self._store.write(lambda conn: rows.mark_failed(conn, row.id, now, reason))
        self.failed[row.channel] = self.failed.get(row.channel, 0) + 1
        log.error(
            "notification failed for good",
            extra={"kv": {"channel": row.channel, "row": row.id, "reason": reason}},
        )
