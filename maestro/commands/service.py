"""The command service: issues signed commands, follows their replies, times them out.

A thin shell around pure parts: :mod:`~maestro.commands.issue` checks and builds a
command, :mod:`~maestro.commands.lifecycle` decides every state change, and
:mod:`~maestro.commands.tracker` applies the changes to the open commands (stored, then
published on the event bus, then waiters woken) and times them out. This module is the
API: issuing, publishing, resuming after a restart, waiting and queries.

Use: ``await service.start()`` (resumes commands left open by a previous run), run
``await service.serve()`` as a long-lived task (timeouts and purging), feed every
decoded reply to :meth:`CommandService.on_reply` on the event loop.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import replace
from functools import partial
from typing import Any, Final, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from arete.payloads import Reply
from arete.topics import Topics
from maestro.commands import records
from maestro.commands.issue import (
    CommandIds,
    Request,
    build_message,
    check_agent_id,
    validate_request,
)
from maestro.commands.lifecycle import (
    CommandState,
    Delivered,
    DeliveryRefused,
    expiry_interval,
)
from maestro.commands.records import CommandEvent, CommandRecord
from maestro.commands.settings import CommandSettings
from maestro.commands.tracker import OpenCommand, OpenCommands
from maestro.errors import CommandError, LinkError, StoreError
from maestro.events import EventBus
from maestro.ports import Publisher
from maestro.store.core import Store
from maestro.store.replicas import schemas_with

log = logging.getLogger("arete.maestro.commands")

T = TypeVar("T")
Clock = Callable[[], float]

PURGE_EVERY_S: Final = 3600.0
POLL_S: Final = 0.5  # waiting for a command this service does not track (not started yet)


class CommandService:
    """Commands to agents and their lifecycle; see ``docs/commands.md``."""

    def __init__(
        self,
        store: Store,
        publisher: Publisher,
        topics: Topics,
        events: EventBus,
        settings: CommandSettings,
        *,
        signing_key: Ed25519PrivateKey | None,
        clock: Clock = time.time,
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.topics = topics
        self.events = events
        self.settings = settings
        self.clock = clock
        self._key = signing_key
        self._ids = CommandIds()
        self._open = OpenCommands(store, events, grace_s=settings.reply_grace_s, clock=clock)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._started = False
        # Counters for Prometheus (with those of the open commands, below).
        self.published_total = 0
        self.resumed_total = 0

    @property
    def open_commands(self) -> int:
        return len(self._open)

    @property
    def finished_total(self) -> dict[str, int]:
        """Commands that reached each final state."""
        return self._open.finished_total

    @property
    def replies_ignored_total(self) -> dict[str, int]:
        """Replies ignored, by reason (``no_id``, ``unknown``, ``wrong_agent``, ``no_change``)."""
        return self._open.replies_ignored_total

    @property
    def store_errors_total(self) -> int:
        return self._open.store_errors_total

    @property
    def store_failing(self) -> str | None:
        """The store's error while command states wait in memory to be stored, else None."""
        return self._open.store_failing

    # -- lifecycle of the service ---------------------------------------------------------
    async def start(self) -> None:
        """Pick up commands a previous run left open: re-publish or time them out."""
        if self._started:
            return
        self._started = True
        if self._key is None:
            log.warning("commands are not signed: agents with a public key will reject them")
        now = self.clock()
        for record in await self._read(records.select_open):
            entry = self._open.track(record)
            self.resumed_total += 1
            if record.state in (CommandState.QUEUED, CommandState.SENT) and now < record.expires_at:
                # The agent remembers every id it received, so a second copy never runs
                # twice; it answers ``duplicate``, which the lifecycle ignores.
                request = Request(
                    agent_id=record.agent,
                    name=record.name,
                    args=record.args,
                    timeout_s=record.timeout_s,
                    actor=record.actor,
                    job_id=record.job_id,
                )
                _, payload = build_message(
                    request,
                    command_id=record.id,
                    issued_at=record.created_at,
                    expires_at=record.expires_at,
                    key=self._key,
                )
                await self._write(
                    partial(
                        records.add_event,
                        command_id=record.id,
                        ts=now,
                        state=record.state,
                        detail="re-published after a restart",
                    )
                )
                self._deliver_later(entry, payload)
        self._open.time_out_due(now)
        log.info("command service started", extra={"kv": {"resumed": self.resumed_total}})

    async def serve(self) -> None:
        """Run until cancelled: time commands out, purge old ones."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self._open.run_timeouts())
            group.create_task(self._purge_periodically())

    async def close(self) -> None:
        """Stop publishing; open commands stay recorded and resume at the next start."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- issuing --------------------------------------------------------------------------
    async def send(
        self,
        agent_id: str,
        name: str,
        args: dict[str, Any] | None = None,
        *,
        timeout_s: float | None = None,
        actor: str,
        job_id: str | None = None,
    ) -> CommandRecord:
        """Record the command (``queued``) and return at once; it is published meanwhile.

        Raises :class:`CommandError` (code ``bad_agent``, ``unknown_command``,
        ``bad_args``, ``bad_timeout``, ``bad_actor``, ``bad_job``, ``too_large``) before
        anything is recorded, or :class:`StoreError`.
        """
        request = validate_request(
            agent_id,
            name,
            args,
            timeout_s=timeout_s,
            actor=actor,
            job_id=job_id,
            settings=self.settings,
        )
        return await self._issue(request)

    async def run(
        self,
        agent_id: str,
        name: str,
        args: dict[str, Any] | None = None,
        *,
        timeout_s: float | None = None,
        actor: str,
        job_id: str | None = None,
    ) -> CommandRecord:
        """:meth:`send`, then :meth:`wait` for the final record."""
        record = await self.send(
            agent_id, name, args, timeout_s=timeout_s, actor=actor, job_id=job_id
        )
        return await self.wait(record.id)

    async def fan_out(
        self,
        agent_ids: Iterable[str],
        name: str,
        args: dict[str, Any] | None = None,
        *,
        timeout_s: float | None = None,
        actor: str,
        job_id: str | None = None,
        wait: bool = True,
    ) -> list[CommandRecord]:
        """Send one command to many agents; the records in the order of ``agent_ids``.

        Everything is checked before the first command goes out. At most
        ``fanout_concurrency`` commands are in flight at once; each is issued when its
        turn comes, so its lifetime starts then. With ``wait`` (the default) the records
        are final; without, they are as issued.
        """
        agents = list(agent_ids)
        if len(agents) > self.settings.max_fanout:
            raise CommandError(
                f"{len(agents)} agents is more than max_fanout ({self.settings.max_fanout})",
                code="too_many",
            )
        if not agents:
            return []
        template = validate_request(
            agents[0],
            name,
            args,
            timeout_s=timeout_s,
            actor=actor,
            job_id=job_id,
            settings=self.settings,
        )
        seen: set[str] = set()
        requests: list[Request] = []
        for agent in agents:
            if agent in seen:
                raise CommandError(f"agent {agent!r} is listed twice", code="bad_agent")
            seen.add(agent)
            requests.append(replace(template, agent_id=check_agent_id(agent)))
        slots = asyncio.Semaphore(self.settings.fanout_concurrency)

        async def one(request: Request) -> CommandRecord:
            async with slots:
                record = await self._issue(request)
                return await self.wait(record.id) if wait else record

        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(one(request)) for request in requests]
        return [task.result() for task in tasks]

    async def _issue(self, request: Request) -> CommandRecord:
        now = self.clock()
        command_id = self._ids.new(now)
        expires_at = now + request.timeout_s
        _, payload = build_message(
            request, command_id=command_id, issued_at=now, expires_at=expires_at, key=self._key
        )
        record = CommandRecord(
            id=command_id,
            agent=request.agent_id,
            name=request.name,
            args=request.args,
            state=CommandState.QUEUED,
            actor=request.actor,
            job_id=request.job_id,
            timeout_s=request.timeout_s,
            created_at=now,
            expires_at=expires_at,
            updated_at=now,
        )
        await self._write(
            partial(records.insert, record=record, detail=f"queued by {request.actor}")
        )
        entry = self._open.track(record)
        self.events.publish("command", now, record.to_dict())
        log.info(
            "command queued",
            extra={
                "kv": {
                    "command_id": command_id,
                    "agent_id": record.agent,
                    "command": record.name,
                    "actor": record.actor,
                    "timeout_s": record.timeout_s,
                }
            },
        )
        self._deliver_later(entry, payload)
        return record

    def _deliver_later(self, entry: OpenCommand, payload: bytes) -> None:
        task = asyncio.create_task(self._deliver(entry.record, payload))
        entry.delivery = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, record: CommandRecord, payload: bytes) -> None:
        kv = {"command_id": record.id, "agent_id": record.agent}
        expiry_s = expiry_interval(record.expires_at, self.clock())
        if expiry_s is None:
            return  # expired before it could go: its deadline times it out
        try:
            async with asyncio.timeout(record.expires_at - self.clock()):
                await self.publisher.publish(
                    self.topics.cmd(record.agent),
                    payload,
                    qos=1,
                    retain=False,
                    expiry_s=expiry_s,
                    response_topic=self.topics.reply(record.agent),
                    correlation=record.id.encode(),
                )
        except TimeoutError:
            log.warning("command not delivered before it expired", extra={"kv": kv})
            return
        except LinkError as exc:
            log.warning("broker refused a command", extra={"kv": {**kv, "error": str(exc)}})
            self._open.advance(record.id, DeliveryRefused(str(exc)))
            return
        except Exception as exc:  # a publisher bug must not leave the command hanging
            log.exception("publishing a command failed", extra={"kv": kv})
            self._open.advance(record.id, DeliveryRefused(f"{type(exc).__name__}: {exc}"))
            return
        self.published_total += 1
        self._open.advance(record.id, Delivered())

    def on_reply(
        self,
        agent_id: str,
        reply: Reply,
        correlation: bytes | None = None,
        now: float | None = None,
    ) -> bool:
        """Apply a reply from ``reply/<agent_id>``; True if it changed the command.

        Call on the event loop. Returns at once: storing happens on the writer thread.
        Ignored (and counted in ``replies_ignored_total``): a reply without a usable id,
        for a command this service does not track, from another agent than the target,
        or that changes nothing (duplicate, out of order, after a final state).
        """
        return self._open.on_reply(agent_id, reply, correlation, now)

    # -- queries --------------------------------------------------------------------------
    async def wait(self, command_id: str, timeout_s: float | None = None) -> CommandRecord:
        """The command's record once it is final, or as it stands after ``timeout_s``."""
        loop = asyncio.get_running_loop()
        until = None if timeout_s is None else loop.time() + timeout_s
        while True:
            entry = self._open.get(command_id)
            remaining = None if until is None else max(0.0, until - loop.time())
            if entry is not None:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(remaining):
                        return await asyncio.shield(entry.done)
                return entry.record
            # Final (and stored), or open in the store but not tracked here yet (before
            # ``start``): then look again until it is.
            record = await self.get(command_id)
            if record.is_final or remaining == 0:
                return record
            await asyncio.sleep(POLL_S if remaining is None else min(POLL_S, remaining))

    async def get(self, command_id: str) -> CommandRecord:
        """The command's record (with its result); ``CommandError(code="not_found")``."""
        entry = self._open.get(command_id)
        if entry is not None:
            return entry.record
        record = await self._read_replicas(partial(records.get, command_id=command_id))
        if record is None:
            raise CommandError(f"no command {command_id!r}", code="not_found")
        return record

    async def list(
        self,
        agent: str | None = None,
        state: CommandState | str | None = None,
        job_id: str | None = None,
        limit: int = 100,
        before: str | None = None,
        *,
        include_results: bool = False,
    ) -> list[CommandRecord]:
        """Newest first; page with ``before`` = the last id of the previous page.

        Results are left out unless ``include_results`` (``has_result`` says there is one).
        """
        try:
            wanted = None if state is None else CommandState(state)
        except ValueError:
            raise CommandError(f"unknown command state {state!r}", code="bad_request") from None
        if not 1 <= limit <= records.MAX_LIST:
            raise CommandError(f"limit must be 1-{records.MAX_LIST}", code="bad_request")
        return await self._read_replicas(
            partial(
                records.select,
                agent=agent,
                state=wanted,
                job_id=job_id,
                limit=limit,
                before=before,
                include_result=include_results,
            )
        )

    async def history(self, command_id: str) -> builtins.list[CommandEvent]:
        """Every recorded state change of a command (and notes such as a re-publish)."""
        return await self._read_replicas(partial(records.history, command_id=command_id))

    async def job_counts(self, job_id: str) -> dict[CommandState, int]:
        return await self._read(partial(records.job_counts, job_id=job_id))

    async def purge(self) -> int:
        """Delete finished commands older than ``keep_days``; how many went."""
        cutoff = self.clock() - self.settings.keep_days * 86400
        removed = await self._write(partial(records.purge, finished_before=cutoff))
        if removed:
            log.info("old commands purged", extra={"kv": {"removed": removed}})
        return removed

    async def _purge_periodically(self) -> None:
        while True:
            try:
                await self.purge()
            except StoreError as exc:
                log.error("purging old commands failed", extra={"kv": {"error": str(exc)}})
            await asyncio.sleep(PURGE_EVERY_S)

    # -- store ----------------------------------------------------------------------------
    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await _store_call(self.store.write(fn))

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await _store_call(self.store.read(fn))

    async def _read_replicas(self, fn: Callable[..., T]) -> T:
        """``fn(conn, schemas=...)`` over this store and the sibling replicas' files."""
        own = self.store.path
        return await self._read(lambda conn: fn(conn, schemas=schemas_with(conn, own, "commands")))


async def _store_call(call: Awaitable[T]) -> T:
    try:
        return await call
    except sqlite3.Error as exc:
        raise StoreError(f"command store: {exc}") from exc
