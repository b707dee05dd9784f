"""The agent's asyncio shell: feeds link events, samples, commands and the outbox.

A sample is forgotten only once the maestro confirmed it stored (``stored/<id>``); what
is sent and not yet confirmed, and when to send it again, is :mod:`edge_agent.delivery`.

Threads: the MQTT network thread (``link``) and short-lived sampler/handler threads
post into this loop; all state changes happen here, on one thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from arete import clientids
from arete.commands import CommandName
from arete.errors import PayloadError, TopicError
from arete.payloads import (
    MAX_REPLY_BYTES,
    AgentState,
    ErrorInfo,
    Heartbeat,
    Reply,
    ReplyState,
    Sample,
    Status,
    UpdateState,
    decode_maestro_status,
    encode,
    encode_metrics,
)
from arete.stored import decode_stored
from arete.terminal import ExitReason
from arete.topics import Kind, Topics
from arete.version import __version__
from edge_agent.clock import MaestroClock
from edge_agent.delivery import AckMode, Batch, HubWatch, Unconfirmed
from edge_agent.dispatch import Entry, build_table, deadline_s
from edge_agent.errors import CommandFailed, StateError
from edge_agent.gate import Admitted, Refused, admit, salvage_id
from edge_agent.health import HealthReport, HealthWatch, remove_health, write_health
from edge_agent.link import (
    Connected,
    Disconnected,
    LinkConfig,
    LinkEvent,
    MqttLink,
    Published,
    Received,
    Retained,
)
from edge_agent.sampler import Sampler
from edge_agent.settings import (
    RESTART_EXIT_CODE,
    STOP_EXIT_CODE,
    AgentSettings,
)
from edge_agent.state import AgentState as StateStore
from edge_agent.state import EpochCounter, OutboxRow
from edge_agent.terminal import TerminalManager
from edge_agent.threads import DaemonPool
from edge_agent.update import SelfUpdate
from edge_agent.update_files import STATE_POLL_S, UpdateFileError, UpdateFiles
from edge_agent.verify import load_verifier

log = logging.getLogger("arete.agent")

LIVE_WINDOW = 30  # live samples awaiting confirmation before new ones go to the outbox
REPLAY_WINDOW = 4  # replay batches awaiting confirmation at once
CONFIRM_CHECK_S = 1.0  # how often the replay loop looks for unconfirmed samples timing out
REPLAY_MAX_BYTES = 1024 * 1024  # per replay message; well under MAX_METRICS_BYTES
MAX_PENDING_REPLIES = 1000  # replies kept in memory while disconnected
MAX_CONCURRENT_COMMANDS = 4  # shell and docker commands running at once; more wait
WORKER_THREADS = 8  # blocking calls of handlers and shutdown (daemon threads, never joined)
# SIGTERM -> exit within 5 s (edge_agent/main.py ends the process 4.5 s after the
# request): the clean path (tasks, terminals, stopping, flush, offline, disconnect) gets
# this long in all, plus 0.3 s for the sampler.
SHUTDOWN_BUDGET_S = 3.8
CONTROL_ACK_TIMEOUT_S = 1.0
FLUSH_TIMEOUT_S = 1.5
DISK_LOG_EVERY_S = 60.0  # a full state disk is logged once a minute, not every sample
DISK_RECOVER_EVERY_S = 5.0  # how often a full state disk is checked for room again


@dataclass(slots=True)
class _Live:
    rows: list[OutboxRow]
    sent_at: float = 0.0


@dataclass(slots=True)
class _Replay:
    batch: Batch
    seqs: list[int]


@dataclass(slots=True)
class _Control:
    done: asyncio.Future[bool]


@dataclass(slots=True)
class Counters:
    """What the agent dropped or refused, for logs and (later) self-metrics."""

    values: dict[str, int] = field(default_factory=dict)

    def add(self, name: str, amount: int = 1) -> None:
        self.values[name] = self.values.get(name, 0) + amount


class Agent:
    def __init__(
        self,
        settings: AgentSettings,
        *,
        password: str | None,
        state_dir: Path,
        sampler: Sampler | None = None,
    ) -> None:
        self.settings = settings
        self.topics = Topics(settings.mqtt.root)
        self.state = StateStore(
            state_dir, outbox_max=settings.outbox.max_samples, interval_s=settings.interval_s
        )
        self.epochs = EpochCounter(state_dir)
        self.verify = load_verifier(settings.commands)
        self.sampler = sampler or Sampler()
        self.counters = Counters()
        self.exit_code = 0
        self.host = socket.gethostname()
        self._password = password
        self._epoch = 0
        self._generation = 0
        self._inflight: dict[tuple[int, int], _Live | _Replay | _Control] = {}
        self.unconfirmed = Unconfirmed()
        self.hub = HubWatch()
        self.ack_mode = AckMode(state_dir)
        self._replay_cursor = 0
        self._pending_replies: deque[tuple[str | None, bytes, bytes | None]] = deque(
            maxlen=MAX_PENDING_REPLIES
        )
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stop = asyncio.Event()
        self._exit_reason = "shutdown"
        self._replay_wake = asyncio.Event()
        self._disk_full_said = False  # the disk_full the last published status carried
        self._disk_logged_at = -DISK_LOG_EVERY_S
        self._disk_checked_at = 0.0
        self._acked = asyncio.Event()  # set at every PUBACK: the shutdown flush waits on it
        self._slots = asyncio.Semaphore(MAX_CONCURRENT_COMMANDS)
        self._running: dict[CommandName, int] = {}  # per command with a limit of its own
        self.clock = MaestroClock()  # this agent's clock minus the maestro's
        # Sampling has a thread of its own: no handler, hung or not, can take it.
        self._sampling = DaemonPool(1, "arete-sampler")
        self._events: asyncio.Queue[LinkEvent] = asyncio.Queue()
        # -- terminal hook: sessions publish their output with QoS 0 (edge_agent/terminal.py)
        self.terminals = TerminalManager(
            settings,
            self.topics,
            lambda topic, payload: self.link.publish(topic, payload, qos=0) is not None,
        )
        # -- self-update hook (edge_agent/update.py, health.py; docs/updates.md)
        self._state_dir = state_dir
        self._started_at = time.time()
        self.health = HealthWatch()
        self._birth_key: tuple[int, int] | None = None  # (generation, mid) of ``online``
        remove_health(state_dir)  # an earlier process's word is not this one's
        update_files = UpdateFiles(state_dir)
        update_files.clean_partial()
        self.updates = SelfUpdate(
            settings.update,
            self.topics,
            update_files,
            # self.link is made in run(): looked up at each call
            subscribe=lambda topic_filter: self.link.subscribe(topic_filter),  # noqa: PLW0108
            unsubscribe=lambda topic_filter: self.link.unsubscribe(topic_filter),  # noqa: PLW0108
        )
        self._update_state = self._read_update_state()
        self._table: dict[CommandName, Entry] = build_table(
            settings,
            fresh_sample=self._fresh_sample,
            terminals=self.terminals,
            updates=self.updates,
        )

    # -- lifecycle -----------------------------------------------------------------------
    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        # asyncio.to_thread goes here: daemon threads, so a call that never returns can
        # neither exhaust a pool the agent needs nor hold up its exit.
        loop.set_default_executor(DaemonPool(WORKER_THREADS, "arete-worker"))

        def post(event: LinkEvent) -> None:  # called from the network thread
            loop.call_soon_threadsafe(self._events.put_nowait, event)

        self.link = MqttLink(
            self._link_config(),
            next_epoch=lambda: self.epochs.next(time.time_ns() // 1_000_000),
            will=lambda epoch: self._status(AgentState.OFFLINE, epoch, "connection_lost"),
            birth=self._birth,
            on_event=post,
        )
        log.info(
            "agent starting",
            extra={"kv": {"agent_id": self.settings.id, "version": __version__}},
        )
        self.link.start()
        events = self._spawn(self._event_loop(), "events")
        replay = self._spawn(self._replay_loop(), "replay")
        workers = [
            self._spawn(self._sample_loop(), "sampler"),
            self._spawn(self._heartbeat_loop(), "heartbeat"),
            self._spawn(self._housekeeping_loop(), "housekeeping"),
            self._spawn(self._update_state_loop(), "update-state"),
        ]
        await self._stop.wait()
        budget_end = time.monotonic() + SHUTDOWN_BUDGET_S
        for task in workers:
            task.cancel()
        await asyncio.wait(workers, timeout=0.5)  # a hung sampler must not hold up the exit
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.terminals.close_all(ExitReason.AGENT_STOPPING), 1.0)
        await self._shutdown(budget_end)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.to_thread(self.sampler.close), 0.3)
        for task in (events, replay, *self._tasks):
            task.cancel()
        await asyncio.gather(events, replay, return_exceptions=True)
        self.state.close()
        log.info("agent stopped", extra={"kv": {"exit_code": self.exit_code}})
        return self.exit_code

    def request_exit(self, code: int, reason: str = "shutdown") -> None:
        if not self._stop.is_set():
            self.exit_code = code
            self._exit_reason = reason
            self._stop.set()

    async def exit_requested(self) -> None:
        """Returns once the agent was asked to exit (signal, ``stop``, ``restart``, crash)."""
        await self._stop.wait()

    async def _shutdown(self, budget_end: float) -> None:
        reason = self._exit_reason
        if self.link.connected:
            await self._publish_acked(self._status(AgentState.STOPPING, self._epoch, reason))
            deadline = min(time.monotonic() + FLUSH_TIMEOUT_S, budget_end - 1.5)
            while self.link.connected and self._flushing():
                self._acked.clear()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._acked.wait(), min(remaining, 0.2))
            await self._publish_acked(self._status(AgentState.OFFLINE, self._epoch, reason))
        close_s = max(0.2, budget_end - time.monotonic())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.to_thread(self.link.close, close_s), close_s + 0.2)
        self._requeue_unacked()
        self._fail_controls()

    def _flushing(self) -> bool:
        """Whether the shutdown flush has something to wait for that can still come."""
        if not (self.unconfirmed.live_count or self.state.outbox_len):
            return False
        return not (self.ack_mode.on and self.hub.all_offline)

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled() or task.exception() is None:
            return
        log.error(
            "agent task crashed",
            exc_info=task.exception(),
            extra={"kv": {"task": task.get_name()}},
        )
        self.request_exit(70, "internal error")

    # -- link events ---------------------------------------------------------------------
    async def _event_loop(self) -> None:
        while True:
            event = await self._events.get()
            if isinstance(event, Published):
                self._on_published(event)
            elif isinstance(event, Received) and self.terminals.owns(event.topic):
                self.terminals.on_message(event.topic, event.payload)  # terminal hook
            elif isinstance(event, Received) and self.updates.owns(event.topic):
                self.updates.on_message(event.topic, event.payload)  # self-update hook
            elif isinstance(event, Received) and self._on_delivery_news(event):
                pass
            elif isinstance(event, Received):
                try:
                    self._on_command(event)
                except Exception:  # a bad command must never take the agent down
                    self.counters.add("commands_crashed")
                    log.exception("command handling failed; dropped")
            elif isinstance(event, Connected):
                self._generation, self._epoch = event.generation, event.epoch
                self._birth_key = (event.generation, event.birth_mid)
                self.health.on_connected()
                self._replay_cursor = 0
                self._flush_replies()
                self._replay_wake.set()
            elif isinstance(event, Disconnected):
                log.warning("link lost", extra={"kv": {"reason": event.reason}})
                self.health.on_disconnected()
                self._requeue_unacked(link_lost=True)
                self._fail_controls()
            self._note_health()

    def _on_published(self, event: Published) -> None:
        entry = self._inflight.pop((event.generation, event.mid), None)
        self._acked.set()
        if event.ok:
            self._note_acked(event, entry)
        if entry is None:
            return
        if isinstance(entry, _Control):
            if not entry.done.done():
                entry.done.set_result(event.ok)
            return
        if event.ok and self.ack_mode.on:
            # The broker has it; the maestro's stored acknowledgement forgets it.
            if isinstance(entry, _Live):
                self.unconfirmed.puback([row.seq for row in entry.rows], entry.sent_at)
            else:
                self.unconfirmed.puback(entry.batch.seqs, entry.batch.sent_at)
            return
        if not event.ok:
            # The broker refused (e.g. ACL): resending would loop forever. Count and drop.
            self.counters.add("samples_refused_by_broker")
            log.error("broker refused metrics", extra={"kv": {"reason": event.reason}})
        if isinstance(entry, _Live):
            for row in entry.rows:
                self.unconfirmed.confirm_live(row.seq)
        else:
            self.unconfirmed.confirm_batch(entry.batch)
            self._store(lambda: self.state.outbox_delete(entry.seqs), "outbox_delete_failed")
            self._replay_wake.set()

    def _note_acked(self, event: Published, entry: _Live | _Replay | _Control | None) -> None:
        """The broker has the online status or samples: signs of health (health.py)."""
        if (event.generation, event.mid) == self._birth_key:
            self.health.on_online_acked()
        elif isinstance(entry, _Live):
            self.health.on_samples_acked(len(entry.rows))
        elif isinstance(entry, _Replay):
            self.health.on_samples_acked(len(entry.seqs))

    def _on_delivery_news(self, event: Received) -> bool:
        """A stored acknowledgement or a maestro replica's state; False for other topics."""
        try:
            route = self.topics.parse(event.topic)
        except TopicError:
            return False
        try:
            if route.kind is Kind.STORED:
                if route.agent_id != self.settings.id:
                    return True  # not ours (the ACL lets no agent read another's)
                stored = decode_stored(event.payload)
                self.note_maestro_time(stored.ts)  # clock offset, for command expiry
                if self.ack_mode.maestro_seen():
                    log.info("the maestro confirms stored samples: waiting for it from now on")
                if self.unconfirmed.confirm(stored.ranges) or self.state.outbox_len:
                    self._store(
                        lambda: self.state.outbox_delete_ranges(stored.ranges),
                        "outbox_delete_failed",
                    )
                self._acked.set()
                self._replay_wake.set()
                return True
            if route.kind is Kind.MAESTRO:
                # An empty retained message clears a replica's state: nothing to record.
                if event.payload and not route.digest:
                    status = decode_maestro_status(event.payload)
                    self.hub.on_status(route.agent_id, status, time.monotonic())
                return True
        except PayloadError as exc:
            self.counters.add("delivery_messages_bad")
            log.warning(
                "bad delivery message", extra={"kv": {"topic": event.topic, "error": str(exc)}}
            )
            return True
        return False

    def _resend_unconfirmed(self, why: str, *, timed_out: bool = False) -> None:
        """Send every unconfirmed sample again, from the outbox (the maestro dedupes)."""
        pending = self.unconfirmed.live_count + self.unconfirmed.replay_count
        if pending or self.state.outbox_len:
            log.info(
                "re-sending samples not confirmed stored",
                extra={
                    "kv": {
                        "why": why,
                        "live": self.unconfirmed.live_count,
                        "outbox": self.state.outbox_len,
                    }
                },
            )
        self._requeue_unacked(timed_out=timed_out)
        self._replay_cursor = 0
        self._replay_wake.set()

    def _requeue_unacked(self, *, timed_out: bool = False, link_lost: bool = False) -> None:
        """Unconfirmed live samples go to the outbox, in order; PUBACKs still due are
        ignored from now on (after a lost link, a re-send, or at shutdown)."""
        for key, entry in list(self._inflight.items()):
            if not isinstance(entry, _Control):
                del self._inflight[key]
        live = self.unconfirmed.take_all(timed_out=timed_out, link_lost=link_lost)
        if live:
            self._to_outbox(live)

    def _fail_controls(self) -> None:
        for entry in self._inflight.values():
            if isinstance(entry, _Control) and not entry.done.done():
                entry.done.set_result(False)
        self._inflight.clear()

    # -- metrics ---------------------------------------------------------------------------
    async def _sample_loop(self) -> None:
        interval = self.settings.interval_s
        next_at = time.monotonic()
        while True:
            next_at += interval
            delay = next_at - time.monotonic()
            if delay < -interval:  # fell behind (suspend, overload): realign, don't burst
                next_at = time.monotonic()
                delay = 0.0
            await asyncio.sleep(max(0.0, delay))
            seq = self.state.next_seq()  # never fails: numbers are reserved a block at a time
            loop = asyncio.get_running_loop()
            taking = loop.run_in_executor(self._sampling, self.sampler.sample, seq)
            try:
                sample = await asyncio.shield(taking)
            except asyncio.CancelledError:
                # Stopping while a numbered sample is being taken: send it anyway, or its
                # seq would be a gap the maestro can never fill.
                self._emit(await taking)
                raise
            self._emit(sample)
            self._watch_disk()

    async def _fresh_sample(self) -> Sample:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._sampling, self.sampler.sample, self.state.last_seq)

    def _emit(self, sample: Sample) -> None:
        row = OutboxRow(sample.seq, encode(sample))
        backlog = self.state.outbox_len or self.unconfirmed.replay_count
        if not backlog and self._send_live(row):
            return
        if self._to_outbox([row], count_lost=False):
            if self.link.connected:
                self._replay_wake.set()
            return
        # The outbox cannot keep it (full disk): while connected it still goes out live,
        # beside the replay; otherwise it is lost, and counted in ``dropped``.
        if not self._send_live(row):
            self._count_lost(1)

    def _send_live(self, row: OutboxRow) -> bool:
        if not self.link.connected or self.unconfirmed.live_count >= LIVE_WINDOW:
            return False
        qos = self.settings.mqtt.metrics_qos
        payload = encode_metrics(
            epoch=self._epoch,
            samples=[row.sample],
            first_seq=row.seq,
            dropped=self.state.dropped,
        )
        sent = self.link.publish(self.topics.metrics(self.settings.id), payload, qos=qos)
        if sent is None:
            return False
        now = time.monotonic()
        if qos:
            self._inflight[sent] = _Live([row], now)
        if qos or self.ack_mode.on:  # QoS 0 without a maestro: fire and forget
            self.unconfirmed.sent_live(row, now)
        if not qos:  # no PUBACK at QoS 0: a sample out on a live link is all there is
            self.health.on_samples_acked(1)
        return True

    def _to_outbox(self, rows: list[OutboxRow], *, count_lost: bool = True) -> bool:
        """Store rows in the outbox; False when it cannot (counted lost if ``count_lost``)."""
        try:
            dropped = self.state.outbox_append(rows)
        except StateError as exc:
            if count_lost:
                self._count_lost(len(rows))
            self._log_disk(str(exc))
            return False
        if dropped:
            log.warning(
                "outbox full: dropped oldest samples",
                extra={"kv": {"dropped": dropped, "dropped_total": self.state.dropped}},
            )
        return True

    def _count_lost(self, amount: int) -> None:
        self.counters.add("samples_lost", amount)
        self.state.count_dropped(amount)

    # -- a full state disk -------------------------------------------------------------------
    def _watch_disk(self) -> None:
        """Retry a full disk now and then; tell the maestro when disk_full changes."""
        now = time.monotonic()
        if self.state.disk_full and now - self._disk_checked_at >= DISK_RECOVER_EVERY_S:
            self._disk_checked_at = now
            if self.state.try_recover():
                log.warning(
                    "state disk has room again", extra={"kv": {"state": str(self.state.path)}}
                )
        if self.state.disk_full:
            self._log_disk(None)
        if self.state.disk_full != self._disk_full_said and self.link.connected:
            status = self._status(AgentState.ONLINE, self._epoch, None)
            if self.link.publish(status.topic, status.payload, qos=1, retain=True) is not None:
                self._disk_full_said = self.state.disk_full

    def _log_disk(self, error: str | None) -> None:
        """Log a state-disk problem at most once a minute, with the losses so far."""
        now = time.monotonic()
        if now - self._disk_logged_at < DISK_LOG_EVERY_S:
            return
        self._disk_logged_at = now
        log.error(
            "state disk full: samples go out live while connected, the rest are dropped"
            if self.state.disk_full
            else "agent state write failed",
            extra={
                "kv": {
                    "state": str(self.state.path),
                    "error": error,
                    "dropped_total": self.state.dropped,
                    "outbox": self.state.outbox_len,
                }
            },
        )

    async def _replay_loop(self) -> None:
        topic = self.topics.metrics(self.settings.id)
        batch = self.settings.outbox.replay_batch
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._replay_wake.wait(), CONFIRM_CHECK_S)
            self._replay_wake.clear()
            if self.link.connected and self._confirmation_overdue():
                self._resend_unconfirmed("timeout", timed_out=True)
                self._replay_wake.clear()
            if self._lost_before_online():
                self._resend_unconfirmed("maestro online")
                self._replay_wake.clear()
            while self.link.connected and self.unconfirmed.replay_count < REPLAY_WINDOW:
                try:
                    rows = self.state.outbox_batch(self._replay_cursor, batch)
                except StateError as exc:
                    log.error("outbox read failed", extra={"kv": {"error": str(exc)}})
                    break
                if not rows:
                    break
                if self.unconfirmed.broker_has:  # their confirmation may still come
                    kept = [row for row in rows if not self.unconfirmed.held_back(row.seq)]
                    if not kept:
                        self._replay_cursor = rows[-1].seq
                        continue
                    rows = kept
                rows = _within_bytes(rows, REPLAY_MAX_BYTES)
                payload = encode_metrics(
                    epoch=self._epoch,
                    samples=[row.sample for row in rows],
                    first_seq=rows[0].seq,
                    replay=True,
                    dropped=self.state.dropped,
                )
                sent = self.link.publish(topic, payload, qos=1)
                if sent is None:
                    break
                self._replay_cursor = rows[-1].seq
                seqs = [row.seq for row in rows]
                self._inflight[sent] = _Replay(
                    self.unconfirmed.sent_batch(seqs, time.monotonic()), seqs
                )

    def _lost_before_online(self) -> bool:
        """A moment after a replica's new online, samples sent before it (before it had
        subscribed again) are still unconfirmed: the broker may have dropped them."""
        online_at = self.hub.recheck_due(time.monotonic())
        if online_at is None or not self.link.connected:
            return False
        return self.unconfirmed.oldest_sent() < online_at

    def _confirmation_overdue(self) -> bool:
        """The oldest unconfirmed sample waited too long, and a maestro may answer."""
        if not self.unconfirmed.due(time.monotonic()):
            return False
        return not (self.ack_mode.on and self.hub.all_offline)

    async def _heartbeat_loop(self) -> None:
        """One heartbeat every ``heartbeat_s`` from the event loop, whatever else is sent.

        It comes from the asyncio loop, not from paho's network thread, so an agent whose
        loop hangs stops beating even though its connection still answers pings. It
        carries the last sample ``seq``, so the receiver can tell a gap in metrics.
        """
        period = self.settings.heartbeat_s
        next_at = time.monotonic()
        while True:
            next_at += period
            delay = next_at - time.monotonic()
            if delay < -period:  # suspended or starved: realign rather than burst
                next_at = time.monotonic()
                delay = 0.0
            await asyncio.sleep(max(0.0, delay))
            if not self.link.connected:
                continue
            beat = Heartbeat(epoch=self._epoch, seq=self.state.last_seq, ts=time.time())
            topic = self.topics.heartbeat(self.settings.id)
            if self.link.publish(topic, encode(beat), qos=0) is not None:
                self.health.on_heartbeat()
                self._note_health()

    async def _housekeeping_loop(self) -> None:
        while True:
            await asyncio.sleep(60.0)
            self._store(
                lambda: self.state.forget_commands_expired_before(time.time() - 120.0),
                "prune_failed",
            )

    # -- self-update: health.json and the updater's state ------------------------------------
    def _note_health(self) -> None:
        """Write ``health.json`` the first time every sign of a working agent is in."""
        if not self.health.due():
            return
        self.health.written = True  # once per process, even if the write fails
        now = time.time()
        report = HealthReport(
            version=__version__, pid=os.getpid(), started_at=self._started_at, healthy_at=now
        )
        try:
            write_health(self._state_dir, report)
        except OSError as exc:
            log.error("cannot write health.json", extra={"kv": {"error": str(exc)}})
            return
        log.info("agent healthy", extra={"kv": {"after_s": round(now - self._started_at, 2)}})

    def _read_update_state(self) -> UpdateState | None:
        try:
            return self.updates.files.read_state()
        except UpdateFileError as exc:
            log.warning("update state unreadable", extra={"kv": {"error": str(exc)}})
            return getattr(self, "_update_state", None)

    async def _update_state_loop(self) -> None:
        """Every STATE_POLL_S: the updater's state.json; a change goes out in the status."""
        while True:
            await asyncio.sleep(STATE_POLL_S)
            state = await asyncio.to_thread(self._read_update_state)
            if state == self._update_state:
                continue
            self._update_state = state
            if state is not None:
                log.info(
                    "update state changed",
                    extra={"kv": {"phase": state.phase.value, "to_version": state.to_version}},
                )
            if self.link.connected:
                status = self._status(AgentState.ONLINE, self._epoch, None)
                self.link.publish(status.topic, status.payload, qos=1, retain=True)

    # -- commands --------------------------------------------------------------------------
    def note_maestro_time(self, maestro_ts: float) -> None:
        """A message the maestro stamped ``maestro_ts`` (its clock) and sent at once, never
        queued (a ``stored`` acknowledgement), has just arrived."""
        self.clock.observe(maestro_ts, time.time(), time.monotonic(), live=True)

    def _on_command(self, event: Received) -> None:
        now, monotonic = time.time(), time.monotonic()
        try:
            decision = admit(
                event.payload,
                agent_id=self.settings.id,
                now=now,
                max_ttl_s=self.settings.commands.max_ttl_s,
                seen=self.state.seen_command,
                verify=self.verify,
                offset=self.clock.offset(monotonic),
            )
            if isinstance(decision, Admitted):
                cmd = decision.command
                self.clock.observe(cmd.issued_at, now, monotonic)
                decision = self._precheck(decision)
            if isinstance(decision, Admitted):
                # Only what is accepted is recorded: a refused command sent again is judged
                # again. Kept for the command's whole lifetime on this agent's clock.
                lifetime = cmd.expires_at - cmd.issued_at
                self.state.remember_command(cmd.id, now + lifetime, now)
        except StateError as exc:
            # Without a durable id record, at-most-once cannot be promised: refuse.
            decision = Refused(
                salvage_id(event.payload),
                ReplyState.REJECTED,
                ErrorInfo("internal", f"agent state unavailable: {exc}"),
            )
        if isinstance(decision, Refused):
            self.counters.add(f"commands_{decision.state}")
            log.warning(
                "command refused",
                extra={"kv": {"command_id": decision.command_id, "code": decision.error.code}},
            )
            self._reply(
                decision.command_id, decision.state, event.correlation, error=decision.error
            )
            return
        self._reply(decision.command.id, ReplyState.ACCEPTED, event.correlation)
        self._running[decision.name] = self._running.get(decision.name, 0) + 1
        # What is left of its lifetime, on the maestro's clock: no slot, no run past it.
        age = now - decision.command.issued_at - decision.offset_s
        left = decision.command.expires_at - decision.command.issued_at - age
        task = asyncio.create_task(
            self._execute(decision, event.correlation, monotonic + max(left, 0.0))
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _precheck(self, admitted: Admitted) -> Admitted | Refused:
        entry = self._table[admitted.name]
        if entry.limit is not None and self._running.get(admitted.name, 0) >= entry.limit:
            message = (
                f"{entry.limit} {admitted.name.value} commands are still running on this "
                "agent; try again once they end"
            )
            return Refused(admitted.command.id, ReplyState.REJECTED, ErrorInfo("busy", message))
        if entry.precheck is not None:
            try:
                entry.precheck(admitted.args)
            except CommandFailed as exc:
                return Refused(
                    admitted.command.id, ReplyState.REJECTED, ErrorInfo(exc.code, exc.message)
                )
        return admitted

    async def _execute(self, admitted: Admitted, correlation: bytes | None, slot_by: float) -> None:
        try:
            await self._run_command(admitted, correlation, slot_by)
        finally:
            self._running[admitted.name] -= 1

    @contextlib.asynccontextmanager
    async def _slot(self, entry: Entry, slot_by: float) -> AsyncIterator[bool]:
        """A command slot (True), or False if none came free by ``slot_by`` (monotonic)."""
        if not entry.slot:
            yield True
            return
        try:
            await asyncio.wait_for(self._slots.acquire(), max(slot_by - time.monotonic(), 0.01))
        except TimeoutError:
            yield False
            return
        try:
            yield True
        finally:
            self._slots.release()

    async def _run_command(
        self, admitted: Admitted, correlation: bytes | None, slot_by: float
    ) -> None:
        cmd, entry = admitted.command, self._table[admitted.name]
        kv = {"command_id": cmd.id, "command": admitted.name.value}
        # Shell and docker share the slots; control commands (metrics, restart, stop,
        # terminal) and screenshots (a limit of their own) never wait behind them.
        async with self._slot(entry, slot_by) as slotted:
            if not slotted:
                message = (
                    f"all {MAX_CONCURRENT_COMMANDS} command slots stayed taken until the "
                    "command's lifetime ran out; it did not run"
                )
                self._reply(
                    cmd.id, ReplyState.FAILED, correlation, error=ErrorInfo("busy", message)
                )
                log.warning("command not run: no slot", extra={"kv": kv})
                return
            self._reply(cmd.id, ReplyState.RUNNING, correlation)
            log.info("command running", extra={"kv": kv})
            try:
                deadline = deadline_s(admitted.name, admitted.args, self.settings.docker)
                call = (
                    entry.handler(admitted.args, cmd)
                    if entry.with_command
                    else entry.handler(admitted.args)
                )
                result = await asyncio.wait_for(call, deadline)
            except CommandFailed as exc:
                self._reply(
                    cmd.id,
                    ReplyState.FAILED,
                    correlation,
                    result=exc.result,
                    error=ErrorInfo(exc.code, exc.message),
                )
                log.info("command failed", extra={"kv": {**kv, "code": exc.code}})
                return
            except TimeoutError:
                self._reply(
                    cmd.id,
                    ReplyState.FAILED,
                    correlation,
                    error=ErrorInfo("timeout", "the command did not finish in time"),
                )
                return
            except Exception:  # a handler bug must not kill the agent
                log.exception("command crashed", extra={"kv": kv})
                self._reply(
                    cmd.id,
                    ReplyState.FAILED,
                    correlation,
                    error=ErrorInfo(
                        "internal", "the agent hit an unexpected error (its log has the details)"
                    ),
                )
                return
            self._reply(cmd.id, ReplyState.OK, correlation, result=result)
            log.info("command ok", extra={"kv": kv})
        if entry.exit_after:
            if admitted.name is CommandName.RESTART:
                self.request_exit(RESTART_EXIT_CODE, f"restart (command {cmd.id})")
            else:
                self.request_exit(STOP_EXIT_CODE, f"stop (command {cmd.id})")

    def _reply(
        self,
        command_id: str | None,
        state: ReplyState,
        correlation: bytes | None,
        *,
        result: Any = None,
        error: ErrorInfo | None = None,
    ) -> None:
        reply = Reply(id=command_id, state=state, ts=time.time(), result=result, error=error)
        payload = encode(reply)
        if len(payload) > MAX_REPLY_BYTES:
            # The broker would drop the connection over it: say so instead, without result.
            self.counters.add("replies_too_large")
            log.error("reply too large", extra={"kv": {"command_id": command_id}})
            message = f"the reply of {len(payload)} bytes exceeds {MAX_REPLY_BYTES} bytes"
            reply = Reply(
                id=command_id,
                state=ReplyState.FAILED,
                ts=reply.ts,
                error=ErrorInfo("too_large", message),
            )
            payload = encode(reply)
        topic = self.topics.reply(self.settings.id)
        if self.link.publish(topic, payload, qos=1, correlation=correlation) is None:
            if len(self._pending_replies) == MAX_PENDING_REPLIES:
                self.counters.add("replies_dropped")
                log.warning("reply queue full: dropped the oldest unsent reply")
            self._pending_replies.append((command_id, payload, correlation))

    def _flush_replies(self) -> None:
        topic = self.topics.reply(self.settings.id)
        while self._pending_replies:
            _, payload, correlation = self._pending_replies[0]
            if self.link.publish(topic, payload, qos=1, correlation=correlation) is None:
                return
            self._pending_replies.popleft()

    # -- helpers ---------------------------------------------------------------------------
    def _birth(self, epoch: int) -> Retained:
        """The online status of a new connection (built on the network thread)."""
        self._disk_full_said = self.state.disk_full
        return self._status(AgentState.ONLINE, epoch, None)

    def _status(self, state: AgentState, epoch: int, reason: str | None) -> Retained:
        status = Status(
            state=state,
            epoch=epoch,
            ts=time.time(),
            version=__version__,
            host=self.host,
            labels=self.settings.labels,
            heartbeat_s=self.settings.heartbeat_s,
            reason=reason,
            disk_full=self.state.disk_full,
            update=self._update_state,
        )
        return Retained(self.topics.status(self.settings.id), encode(status))

    async def _publish_acked(self, message: Retained) -> bool:
        sent = self.link.publish(message.topic, message.payload, qos=1, retain=True)
        if sent is None:
            return False
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._inflight[sent] = _Control(done)
        with contextlib.suppress(TimeoutError):
            return await asyncio.wait_for(done, CONTROL_ACK_TIMEOUT_S)
        return False

    def _store(self, action: Any, counter: str) -> None:
        try:
            action()
        except StateError as exc:
            self.counters.add(counter)
            if self.state.disk_full:
                self._log_disk(str(exc))  # once a minute, not at every acknowledgement
            else:
                log.error("agent state error", extra={"kv": {"error": str(exc)}})

    def _link_config(self) -> LinkConfig:
        mqtt = self.settings.mqtt
        return LinkConfig(
            client_id=clientids.client_id(self.settings.username),
            host=mqtt.host,
            port=mqtt.port,
            username=self.settings.username,
            password=self._password,
            keepalive_s=mqtt.keepalive_s,
            tls=mqtt.tls,
            ca_file=mqtt.ca_file,
            reconnect_min_s=mqtt.reconnect_min_s,
            reconnect_max_s=mqtt.reconnect_max_s,
            session_expiry_s=int(self.settings.commands.max_ttl_s),
            subscriptions=(
                self.topics.cmd(self.settings.id),
                self.topics.stored(self.settings.id),
                self.topics.all_of(Kind.MAESTRO),  # replicas' states: when to re-send
                *self.terminals.subscriptions(),
            ),
        )


def _within_bytes(rows: list[OutboxRow], budget: int) -> list[OutboxRow]:
    """The longest prefix of ``rows`` whose samples fit in ``budget`` bytes (at least one)."""
    total = 0
    for index, row in enumerate(rows):
        total += len(row.sample) + 1
        if total > budget and index:
            return rows[:index]
    return rows
