"""Delivers the outbox: one loop per channel, in order, within the channel's rate limit.

Each channel works through its pending rows oldest first. A row that must wait (a 429's
``retry_after``, a backoff after a 5xx) holds the rows behind it, so a "resolved" never
overtakes its "firing". Channels are independent: a Discord outage delays nothing on
Telegram.

A full disk stops no page and repeats none:

* a mark (``sent``, ``failed``, a retry time) the store refuses is remembered in memory
  and stored later, before anything else the channel writes; a row remembered as sent
  or failed is never attempted again;
* notices whose rows could not be stored at all are held by the outbox
  (:meth:`~maestro.notify.outbox.Outbox.next_held`) and delivered from memory once the
  channel's stored rows are done, in order.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from functools import partial

import msgspec

from arete.backoff import Backoff
from maestro.diskstate import Throttle
from maestro.errors import MaestroError
from maestro.notify import outbox as rows
from maestro.notify.channel import Channel, Outcome
from maestro.notify.message import Notice, decode_notice
from maestro.notify.outbox import Memo, Outbox, OutboxRow
from maestro.notify.ratelimit import RateLimit, acquire
from maestro.notify.settings import NotifySettings
from maestro.store.core import Store

log = logging.getLogger(__name__)

BATCH = 20
HOUSEKEEPING_S = 30.0
PRUNE_EVERY_S = 3600.0
MARK_RETRY_S = 1.0

Mark = Callable[[sqlite3.Connection], None]


class Dispatcher:
    """Counters (plain attributes, for the Prometheus exporter): ``sent``, ``failed``,
    ``retried`` per channel, ``pending`` per channel (refreshed every 30 s); and
    :attr:`failing` (the store's error while marks wait in memory, else None)."""

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
        # Per channel, in order: marks of rows already decided (sent or failed) that the
        # store refused; those rows are never attempted again.
        self.unmarked: dict[str, dict[int, Mark]] = {name: {} for name in self.channels}
        self._retry_at: dict[int, float] = {}  # row -> next attempt, while not stored
        self.failing: str | None = None
        self._throttles: dict[str, Throttle] = {name: Throttle() for name in self.channels}

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
        """Deliver ``channel``'s rows, then its held notices, until cancelled."""
        name = channel.name
        limit = channel.new_limit()
        backoff = Backoff(self._settings.retry_min_s, self._settings.retry_max_s)
        marks_due = 0.0
        while True:
            try:
                # Rows remembered as sent or failed are skipped until their marks are
                # stored: the channel goes on (no page waits for a mark it cannot store).
                due = self.unmarked[name] and self._clock() >= marks_due
                if due and not await self._store_marks(name):
                    marks_due = self._clock() + MARK_RETRY_S
                generation = self._outbox.generation
                wanted = BATCH + len(self.unmarked[name])
                batch = await self._store.read(
                    partial(rows.pending_rows, channel=name, limit=wanted)
                )
                batch = [row for row in batch if row.id not in self.unmarked[name]][:BATCH]
                if not batch:
                    if self._outbox.generation != generation:
                        continue  # held notices just became rows: read them first
                    memo = self._outbox.next_held(name)
                    if memo is None:
                        await self._outbox.wait(name, self._settings.poll_s)
                        continue
                    limit = await self._deliver_held(channel, memo, limit, backoff)
                    continue
                for row in batch:
                    next_at = max(row.next_attempt_at, self._retry_at.get(row.id, 0.0))
                    wait = next_at - self._clock()
                    if wait > 0:  # the head row is backing off: everything behind it waits
                        await asyncio.sleep(min(wait, self._settings.poll_s))
                        break
                    limit = await self._slot(limit)
                    limit, stop = await self._attempt(channel, row, limit, backoff)
                    if stop:
                        break
            except MaestroError as exc:  # the store could not be read: try again
                delay = backoff.next()
                if self._throttles[name].ready(self._clock()):
                    kv = {"channel": name, "error": str(exc), "retry_in_s": delay}
                    log.error("notification outbox unavailable", extra={"kv": kv})
                await asyncio.sleep(delay)

    async def _store_marks(self, name: str) -> bool:
        """Store the channel's remembered marks, in order; False if the store refused."""
        marks = list(self.unmarked[name].items())

        def write(conn: sqlite3.Connection) -> None:
            for _, mark in marks:
                mark(conn)

        try:
            await self._store.write(write)
        except MaestroError as exc:
            self._mark_failed(name, exc, len(marks))
            return False
        for row_id, _ in marks:
            self.unmarked[name].pop(row_id, None)
            self._retry_at.pop(row_id, None)
        if not any(self.unmarked.values()):
            self.failing = None
        self._throttles[name].reset()
        log.warning(
            "notification marks stored after a store failure",
            extra={"kv": {"channel": name, "marks": len(marks)}},
        )
        return True

    async def _write_mark(self, row: OutboxRow, mark: Mark, *, final: bool) -> None:
        """Store ``mark`` now; if the store refuses, remember it (a final one keeps the
        row from being attempted again) and store it later."""
        name = row.channel
        if not self.unmarked.get(name):
            try:
                await self._store.write(mark)
            except MaestroError as exc:
                self._mark_failed(name, exc, 1)
            else:
                self._retry_at.pop(row.id, None)
                return
        if final:
            self.unmarked.setdefault(name, {})[row.id] = mark

    def _mark_failed(self, name: str, exc: MaestroError, count: int) -> None:
        self.failing = str(exc)
        throttle = self._throttles.setdefault(name, Throttle())
        if throttle.ready(self._clock()):
            kv = {
                "channel": name,
                "error": str(exc),
                "marks": max(count, len(self.unmarked.get(name, {}))),
                "repeats": throttle.suppressed,
            }
            log.error(
                "notification marks could not be stored; kept in memory (never sent twice)",
                extra={"kv": kv},
            )

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
        outcome = await self._send(channel, notice)
        now = self._clock()
        kv = {"channel": name, "row": row.id, "attempt": row.attempts + 1}
        if outcome.kind == "sent":
            self.sent[name] += 1
            backoff.reset()
            log.info("notification sent", extra={"kv": {**kv, "agent": notice.agent}})
            await self._write_mark(row, partial(rows.mark_sent, row_id=row.id, now=now), final=True)
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
        self._retry_at[row.id] = next_at
        retry = partial(
            rows.mark_retry, row_id=row.id, next_attempt_at=next_at, error=outcome.reason
        )
        await self._write_mark(row, retry, final=False)
        self.retried[name] += 1
        log.warning(
            "notification will be retried",
            extra={"kv": {**kv, "reason": outcome.reason, "retry_in_s": round(delay, 2)}},
        )
        return limit, True

    async def _fail(self, row: OutboxRow, now: float, reason: str) -> None:
        mark = partial(rows.mark_failed, row_id=row.id, now=now, error=reason)
        await self._write_mark(row, mark, final=True)
        self.failed[row.channel] = self.failed.get(row.channel, 0) + 1
        log.error(
            "notification failed for good",
            extra={"kv": {"channel": row.channel, "row": row.id, "reason": reason}},
        )

    # -- notices held in memory (their rows are not stored yet) --------------------------
    async def _deliver_held(
        self, channel: Channel, memo: Memo, limit: RateLimit, backoff: Backoff
    ) -> RateLimit:
        name = channel.name
        wait = memo.next_at.get(name, 0.0) - self._clock()
        if wait > 0:
            await self._outbox.wait(name, min(wait, self._settings.poll_s))
            return limit
        limit = await self._slot(limit)
        if memo.frozen or name in memo.done:  # being stored meanwhile: the rows will say
            return limit
        memo.inflight.add(name)
        memo.idle.clear()
        try:
            outcome = await self._send(channel, memo.notice)
        finally:
            memo.inflight.discard(name)
            if not memo.inflight:
                memo.idle.set()
        now = self._clock()
        memo.attempts[name] = memo.attempts.get(name, 0) + 1
        kv = {"channel": name, "held": True, "attempt": memo.attempts[name]}
        if outcome.kind == "sent":
            memo.done[name] = ("sent", now, None)
            self.sent[name] += 1
            backoff.reset()
            log.info("notification sent", extra={"kv": {**kv, "agent": memo.notice.agent}})
            if outcome.delay_s > 0:
                limit = limit.pause(now + outcome.delay_s)
            return limit
        if outcome.kind == "refused":
            memo.done[name] = ("failed", now, outcome.reason[: rows.MAX_ERROR_CHARS])
            self.failed[name] += 1
            log.error(
                "notification failed for good", extra={"kv": {**kv, "reason": outcome.reason}}
            )
            return limit
        if outcome.kind == "retry_after":
            delay = outcome.delay_s
            limit = limit.pause(now + delay)
        else:
            delay = backoff.next()
        memo.next_at[name] = now + delay
        memo.errors[name] = outcome.reason[: rows.MAX_ERROR_CHARS]
        self.retried[name] += 1
        log.warning(
            "notification will be retried",
            extra={"kv": {**kv, "reason": outcome.reason, "retry_in_s": round(delay, 2)}},
        )
        return limit

    async def _send(self, channel: Channel, notice: Notice) -> Outcome:
        try:
            return await channel.send(notice)
        except Exception:  # a channel bug must not end delivery for every channel
            log.exception("notification channel failed", extra={"kv": {"channel": channel.name}})
            return Outcome.retry("unexpected error in the channel")
