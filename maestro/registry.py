"""The fleet registry: the liveness state machine's I/O shell.

Feeds :func:`maestro.liveness.evaluate` with statuses (from the event loop), contacts
(recorded by the ingest thread, and by peer replicas through their digests) and the
clock, then performs each transition: store it, publish it on the event bus, tell the
observers (alerts). Also tracks the other maestro replicas, shares this replica's
contacts with them (:class:`~arete.payloads.PeerDigest`), and says which replica leads
(sends notifications).

Judging liveness needs a working link to the broker (:mod:`maestro.outage`): while this
replica's link is down nothing is judged, and Wills that the broker's own stop or
restart produced are not agent incidents. What else it learns from what arrives (sample
receive times, clock offsets, stalled samples, one id on two machines) lives in
:mod:`maestro.agent_watch` and is reported to the alerts as conditions.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Final, Protocol

import msgspec

from arete.payloads import AgentState, MaestroState, PeerDigest, Status, encode
from arete.topics import Topics
from maestro.agent_watch import AgentWatch, Reporter, SteadyEpochs, conditions
from maestro.diskstate import Throttle
from maestro.errors import MaestroError
from maestro.events import EventBus
from maestro.ingest import Inbound, PeerIn, RemovedIn, StatusIn
from maestro.liveness import (
    AgentLive,
    Contact,
    Liveness,
    Policy,
    Resume,
    StatusSeen,
    Tick,
    Transition,
    evaluate,
    is_clean_offline,
    quiet_until,
)
from maestro.outage import LinkGate, LinkState
from maestro.peers import Peers, PeerState
from maestro.ports import Publisher
from maestro.store.rows import HEAD, SampleRow, row_values

log = logging.getLogger("arete.maestro.registry")

_SILENT = frozenset({Liveness.LATE, Liveness.CRITICAL})
WATCH_EVERY_S: Final = 1.0  # condition rules (stalled, skew, identity, disk) judged this often
_TS = HEAD.index("ts")  # the agent's own timestamp of a sample row
_SEQ = HEAD.index("seq")
MAX_UNSAVED = 100_000  # transitions kept for a retry while the store refuses writes


class Observer(Protocol):
    def observe_agent(
        self,
        agent_id: str,
        state: str,
        now: float,
        *,
        clean: bool = False,
        labels: Mapping[str, str] = ...,
    ) -> None: ...

    # Optional: ``forget_agent(agent_id, now)``, told when an agent is removed.


Persist = Callable[
    [list[Transition], list[tuple[AgentLive, Status | None]], list[str]], Awaitable[None]
]
"""Store transitions, agents' states, and drop the saved state of removed agents."""


class Registry:
    def __init__(
        self,
        topics: Topics,
        replica: str,
        events: EventBus,
        *,
        contacts: dict[str, tuple[int, float]],
        latest: dict[str, tuple[float, SampleRow]],
        detail: Mapping[str, dict[str, float]] | None = None,
        persist: Persist | None = None,
        publisher: Publisher | None = None,
        policy: Policy | None = None,
        tick_s: float = 0.5,
        digest_s: float = 1.0,
        clock: Callable[[], float] = time.time,
        link: LinkState | None = None,
        will_settle_s: float = 1.0,
        silent_link_max_s: float = 50.0,
    ) -> None:
        self.topics = topics
        self.replica = replica
        self.events = events
        self.policy = policy or Policy()
        self.tick_s = tick_s
        self.digest_s = digest_s
        self._clock = clock
        self._persist = persist
        self._publisher = publisher
        self._contacts = contacts  # written by the ingest thread
        self._latest = latest
        self._detail = detail if detail is not None else {}
        self._peer_contacts: dict[str, tuple[int, float]] = {}
        self._shared: dict[str, tuple[int, float]] = {}
        self.states: dict[str, AgentLive] = {}
        self.statuses: dict[str, Status] = {}
        self.observers: list[Observer] = []
        self._unsaved: list[Transition] = []
        self._dirty: set[str] = set()
        # Removed agents (their retained status was cleared): {agent: its last epoch}.
        # Only a new birth brings one back; a late Will of the old connection is stale.
        self.removed: dict[str, int] = {}
        self._forgotten: set[str] = set()  # removed agents whose saved state is to go
        self.transitions = 0
        self.stale_ignored = 0
        self.store_failing: str | None = None  # the store's error while saves wait
        self._store_log = Throttle()
        self.ready = asyncio.Event()
        self.gate = LinkGate(link, settle_s=will_settle_s, silent_max_s=silent_link_max_s)
        self.watch = AgentWatch()
        # Limits of the condition rules judged here (None: that rule is off); the maestro
        # sets them from the alert rules.
        self.stall_after_s: float | None = 30.0
        self.skew_s: float | None = 10.0
        self.reports = Reporter(self.observers)
        generation = (lambda: self.gate.generation) if link is not None else None
        self.peer_view = Peers(replica, generation)
        self.steady = SteadyEpochs()
        # Per agent: (state, contact, until) of its last judged tick; the same state and
        # contact before ``until`` need no judging again (liveness.quiet_until).
        self._quiet: dict[str, tuple[AgentLive, tuple[int, float] | None, float]] = {}
        self._next_watch = 0.0

    def now(self) -> float:
        return self._clock()

    # -- input from the event loop -----------------------------------------------------
    def deliver(self, item: Inbound) -> None:
        """Entry point for :class:`~maestro.ingest.LoopInbox` items of the registry."""
        if isinstance(item, StatusIn):
            self.on_status(item.agent_id, item.status, item.at)
        elif isinstance(item, RemovedIn):
            self.forget(item.agent_id, item.at)
        elif isinstance(item, PeerIn):
            self.on_peer(item)

    def on_status(self, agent_id: str, status: Status, now: float | None = None) -> None:
        now = self._clock() if now is None else now
        current = self.states.get(agent_id)
        birth = status.state is AgentState.ONLINE
        if agent_id in self.removed:
            if not birth:  # e.g. the Will of the connection it had when it was removed
                self.stale_ignored += 1
                log.info(
                    "ignored a status of a removed agent agent_id=%s state=%s epoch=%d",
                    agent_id,
                    status.state,
                    status.epoch,
                )
                return
            del self.removed[agent_id]  # added again: a new agent from its birth on
        if not birth and current is not None and status.epoch < current.epoch:
            self.stale_ignored += 1
            log.info(
                "ignored a stale status agent_id=%s state=%s epoch=%d current_epoch=%d",
                agent_id,
                status.state,
                status.epoch,
                current.epoch,
            )
            return
        if (
            status.state is AgentState.OFFLINE
            and not is_clean_offline(status)
            and current is not None
            and current.state.connected
            and status.epoch == current.epoch
        ):
            verdict = self.gate.on_will(agent_id, status, now)
            if verdict != "apply":
                return  # held for the settle delay, or an artifact of a link outage
        else:
            self.gate.forget(agent_id)
        if birth and (current is None or current.epoch != status.epoch):
            self.watch.on_birth(agent_id, status.host, now)
        self._take_status(agent_id, status, now)

    def _take_status(self, agent_id: str, status: Status, now: float) -> None:
        self.statuses[agent_id] = status
        current = self.states.get(agent_id)
        new, moved = evaluate(agent_id, current, StatusSeen(status), now, self.policy)
        self._apply(agent_id, new, moved)
        self._dirty.add(agent_id)

    def on_peer(self, item: PeerIn) -> None:
        now = self._clock()
        if item.status is not None:
            self.peer_view.on_status(item.replica, item.status.state is MaestroState.ONLINE, now)
        if item.digest is not None:
            merged = self._peer_contacts
            for agent_id, (epoch, at) in item.digest.seen.items():
                if agent_id in self.removed:
                    continue  # a peer's word from before the removal
                known_contact = merged.get(agent_id)
                # The newest word wins (as in our own contacts), never the biggest epoch:
                # one forged epoch must not stick.
                if known_contact is None or at >= known_contact[1]:
                    merged[agent_id] = (epoch, at)

    def forget(self, agent_id: str, now: float | None = None) -> None:
        """The agent was removed (its retained status was cleared): forget it entirely,
        with no transition (nothing pages); its saved state goes at the next flush, its
        samples and state changes stay as history. The dashboard hears ``agent_removed``."""
        now = self._clock() if now is None else now
        state = self.states.pop(agent_id, None)
        status = self.statuses.pop(agent_id, None)
        epochs = [state.epoch if state else 0, status.epoch if status else 0]
        for table in (self._contacts, self._peer_contacts, self._shared):
            contact = table.pop(agent_id, None)
            epochs.append(contact[0] if contact else 0)
        self.removed[agent_id] = max(epochs)
        self._latest.pop(agent_id, None)
        self._quiet.pop(agent_id, None)
        self._dirty.discard(agent_id)
        self._forgotten.add(agent_id)
        self.gate.forget(agent_id)  # a Will held for its settle delay is dropped
        self.watch.forget(agent_id)
        self.steady.forget(agent_id)
        self.reports.forget(agent_id)
        log.info("agent removed agent_id=%s known=%s", agent_id, state is not None)
        self.events.publish("agent_removed", now, {"id": agent_id})
        for observer in self.observers:
            forget = getattr(observer, "forget_agent", None)
            if forget is None:
                continue
            try:
                forget(agent_id, now)
            except Exception:
                log.exception("an observer failed to forget agent_id=%s", agent_id)

    # -- clock ---------------------------------------------------------------------------
    def tick(self, now: float | None = None) -> None:
        now = self._clock() if now is None else now
        if not self._link_ok(now):
            return  # nothing can arrive: silence proves nothing
        self.peer_view.settle(now)
        for agent_id, held in self.gate.due(now):
            self._take_status(agent_id, held.status, held.at)
        contacts = self._contacts
        # Agents heard from that we have no state for yet (metrics before any status).
        # list(dict.items()) copies at C level, atomically under the GIL: the ingest thread
        # may add agents to ``contacts`` at any moment.
        for agent_id, (epoch, at) in list(contacts.items()):
            if agent_id in self.states or agent_id in self.removed:
                continue
            new, moved = evaluate(agent_id, None, Contact(epoch, at), now, self.policy)
            self._apply(agent_id, new, moved)
        newest, connected = self._newest_contact()
        self.gate.heard(newest)
        quiet = self._quiet
        for agent_id, state in list(self.states.items()):
            if not state.state.connected:
                continue
            contact = self._contact_of(agent_id, state)
            if self._settled(agent_id, state, contact, now):
                continue
            if self._adopt_steady_epoch(agent_id, state, contact):
                continue
            new, moved = evaluate(agent_id, state, Tick(contact), now, self.policy)
            if (
                moved is not None
                and new is not None
                and moved.new in _SILENT
                and connected >= 2
                and newest <= max(new.last_contact, state.judged_from) + state.heartbeat_s
                and self.gate.silent_link(now)
            ):
                # Nobody at all was heard since this agent was due: that looks like our
                # own link (a silent cut), not this agent. Judged once someone is heard
                # again, or once the link is known down or silent_max_s has passed.
                continue
            if new is not state:
                self._apply(agent_id, new, moved)
            if new is not None:
                quiet[agent_id] = (new, contact, quiet_until(new, self.policy))
        if now >= self._next_watch:
            self._next_watch = now + WATCH_EVERY_S
            self._watch_agents(now)

    def _settled(
        self, agent_id: str, state: AgentLive, contact: tuple[int, float] | None, now: float
    ) -> bool:
        """True when this tick cannot move the agent: nothing new and no deadline passed
        since it was last judged, or online and heard in time. (An online agent's state
        keeps the contact it was judged on; views show the newest, the next judgement
        takes it.) Most of a steady fleet is settled, so a tick costs the fleet's changes."""
        known = self._quiet.get(agent_id)
        if known is not None and known[0] is state and known[1] is contact and now <= known[2]:
            return True
        return (
            state.state is Liveness.ONLINE
            and contact is not None
            and contact[0] == state.epoch
            and now <= quiet_until(state, self.policy, heard=contact[1])
        )

    def _contact_of(self, agent_id: str, state: AgentLive) -> tuple[int, float] | None:
        """The newest contact of the agent's current connection, ours or a peer's."""
        contact = self._contacts.get(agent_id)
        other = self._peer_contacts.get(agent_id)
        if (
            other is not None
            and other[0] == state.epoch
            and (contact is None or contact[0] != state.epoch or other[1] > contact[1])
        ):
            contact = other
        return contact

    def _adopt_steady_epoch(
        self, agent_id: str, state: AgentLive, contact: tuple[int, float] | None
    ) -> bool:
        """A late agent whose messages keep coming under another epoch (its birth was
        lost, or a forged one got in) is that connection: adopt it as if born, so an
        agent that behaves recovers even without reconnecting (:class:`SteadyEpochs`)."""
        epoch = self.steady.observe(agent_id, state, contact)
        status = self.statuses.get(agent_id)
        if epoch is None or status is None or contact is None:
            return False
        log.warning(
            "adopted epoch %d of agent_id=%s from its steady messages (its birth, epoch %d, "
            "is not the connection that talks)",
            epoch,
            agent_id,
            state.epoch,
        )
        born = msgspec.structs.replace(status, state=AgentState.ONLINE, epoch=epoch)
        self._take_status(agent_id, born, contact[1])
        return True

    def _newest_contact(self) -> tuple[float, int]:
        """The newest contact from any agent, and how many agents are connected."""
        newest = max((at for _, at in list(self._contacts.values())), default=0.0)
        newest = max(newest, max((at for _, at in list(self._peer_contacts.values())), default=0.0))
        connected = sum(1 for state in list(self.states.values()) if state.state.connected)
        return newest, connected

    # -- the broker link -------------------------------------------------------------------
    def _link_ok(self, now: float) -> bool:
        epochs = {a: s.epoch for a, s in self.states.items() if s.state.connected}
        for change in self.gate.poll(now, epochs):
            if change == "back":
                for agent_id, state in list(self.states.items()):
                    new, moved = evaluate(agent_id, state, Resume(now), now, self.policy)
                    self._apply(agent_id, new, moved)
            subject = f"maestro:{self.replica}"
            self.reports.condition("broker_unreachable", subject, change == "lost", now)
        return self.gate.up

    # -- what else arrives: samples, clocks, identities -------------------------------------
    def _watch_agents(self, now: float) -> None:
        for agent_id, (received, row) in list(self._latest.items()):
            self.watch.on_sample(agent_id, row, row[_TS], row[_SEQ], min(received, now))
        found = conditions(
            self.watch,
            self.states,
            now,
            stall_after_s=self.stall_after_s,
            skew_s=self.skew_s,
            disk_full=self._disk_full,
            reported=self.reports.reported,
        )
        for rule, agent_id, holds, value, detail in found:
            self.reports.condition(rule, agent_id, holds, now, value=value, detail=detail)

    def _disk_full(self, agent_id: str) -> bool:
        status = self.statuses.get(agent_id)
        return status is not None and status.disk_full

    def announce(self) -> None:
        """Tell the observers every agent known now (at startup, when no transition will)."""
        self.reports.known(
            {
                agent_id: (str(state.state), state.clean, self._labels(agent_id))
                for agent_id, state in self.states.items()
            }
        )

    def _labels(self, agent_id: str) -> dict[str, str]:
        status = self.statuses.get(agent_id)
        return dict(status.labels) if status is not None else {}

    async def run(self) -> None:
        """Tick forever; persist transitions in batches; share contacts with peers."""
        self.announce()
        next_digest = 0.0
        while True:
            now = self._clock()
            try:
                self.tick(now)
                await self.flush()
                if now >= next_digest:
                    next_digest = now + self.digest_s
                    await self._publish_digest(now)
            except Exception:  # a bug in one tick costs that tick, not the process
                log.exception("registry tick failed")
            await asyncio.sleep(self.tick_s)

    async def flush(self) -> None:
        if self._persist is None or not (self._unsaved or self._dirty or self._forgotten):
            self._unsaved.clear()
            self._dirty.clear()
            self._forgotten.clear()
            return
        transitions, self._unsaved = self._unsaved, []
        dirty, self._dirty = self._dirty, set()
        # Added again since: its new state replaces the saved one.
        forgotten = sorted(a for a in self._forgotten if a in self.removed)
        self._forgotten = set()
        records = [(self.states[a], self.statuses.get(a)) for a in dirty if a in self.states]
        try:
            # Shielded: a shutdown that cancels the tick loop must not drop this batch.
            await asyncio.shield(self._persist(transitions, records, forgotten))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - keep judging liveness; keep what is decided
            self.store_failing = str(exc) or type(exc).__name__
            if len(self._unsaved) < MAX_UNSAVED:  # try again at the next tick
                self._unsaved[:0] = transitions
                self._dirty |= dirty
                self._forgotten.update(forgotten)
            if self._store_log.ready(time.monotonic()):  # once a minute, not each tick
                log.error(
                    "could not store liveness transitions=%d error=%s; kept in memory and "
                    "retried each tick (repeats=%d)",
                    len(self._unsaved),
                    self.store_failing,
                    self._store_log.suppressed,
                )
        else:
            if self.store_failing is not None:
                log.warning("liveness transitions stored again after a store failure")
                self.store_failing = None
                self._store_log.reset()

    # -- peers -----------------------------------------------------------------------------
    @property
    def peers(self) -> dict[str, PeerState]:
        return self.peer_view.states

    def online_replicas(self) -> list[str]:
        return self.peer_view.online_replicas()

    def is_leader(self) -> bool:
        """The online replica with the smallest name sends notifications."""
        return self.peer_view.is_leader()

    async def _publish_digest(self, now: float) -> None:
        if self._publisher is None or len(self.online_replicas()) < 2:
            return
        fresh = {a: c for a, c in list(self._contacts.items()) if self._shared.get(a) != c}
        if not fresh:
            return
        self._shared.update(fresh)
        payload = encode(PeerDigest(replica=self.replica, ts=now, seen=fresh))
        try:
            await self._publisher.publish(self.topics.maestro_seen(self.replica), payload, qos=0)
        except MaestroError as exc:  # a lost digest is covered by the next one
            log.warning("could not publish the contact digest: %s", exc)

    # -- output ----------------------------------------------------------------------------
    def _apply(self, agent_id: str, new: AgentLive | None, moved: Transition | None) -> None:
        if new is None:
            return
        self.states[agent_id] = new
        if moved is None:
            return
        self.transitions += 1
        self._unsaved.append(moved)
        self._dirty.add(agent_id)
        labels = self._labels(agent_id)
        log.info(
            "agent state agent_id=%s old=%s new=%s epoch=%d reason=%s",
            agent_id,
            moved.old,
            moved.new,
            moved.epoch,
            moved.reason,
        )
        self.events.publish("agent", moved.at, self.view(agent_id) | {"old": moved.old})
        for observer in self.observers:
            try:
                observer.observe_agent(
                    agent_id, str(moved.new), moved.at, clean=moved.clean, labels=labels
                )
            except Exception:
                log.exception("an observer failed on agent_id=%s", agent_id)

    def view(self, agent_id: str) -> dict[str, Any]:
        """What the API shows of one agent (JSON-ready)."""
        state = self.states.get(agent_id)
        status = self.statuses.get(agent_id)
        latest = self._latest.get(agent_id)
        own = self._contacts.get(agent_id)
        peer = self._peer_contacts.get(agent_id)
        contact = max(c for c in (own, peer, (0, 0.0)) if c is not None)
        return {
            "id": agent_id,
            "state": str(state.state) if state else "unknown",
            "epoch": state.epoch if state else None,
            "since": state.since if state else None,
            "reason": state.reason if state else None,
            "clean": state.clean if state else False,
            "last_seen": max(contact[1], state.last_contact) if state else contact[1] or None,
            "heartbeat_s": state.heartbeat_s if state else None,
            "host": status.host if status else None,
            "version": status.version if status else None,
            "labels": dict(status.labels) if status else {},
            "metrics": self._detail.get(agent_id, {})
            | row_values(latest[1])
            | {"ts": latest[1][2], "rx_ts": latest[0]}
            if latest
            else None,
            "disk_full": status.disk_full if status else False,
            # The host updater's progress with the last self-update (docs/updates.md).
            "update": msgspec.to_builtins(status.update) if status and status.update else None,
            "clock_offset_s": _rounded(self.watch.offset(agent_id)),  # agent minus maestro
        }

    def views(self, agent_ids: Iterable[str] | None = None) -> list[dict[str, Any]]:
        ids = sorted(self.states) if agent_ids is None else agent_ids
        return [self.view(agent_id) for agent_id in ids]

    def latest_values(self) -> dict[str, tuple[float, dict[str, Any]]] | None:
        """``{agent_id: (receive time, {field: value})}`` of connected agents, for alert rules.

        The receive time is the maestro's clock when the sample arrived (never the agent's
        own ``ts``, which a wrong clock or a forged message can put anywhere). None while
        the broker link is down or just back (samples are not flowing yet): metric rules
        hold rather than take "no data" for an answer.
        """
        if self.gate.metrics_held(self._clock()):
            return None
        out: dict[str, tuple[float, dict[str, Any]]] = {}
        for agent_id, (received, row) in list(self._latest.items()):
            state = self.states.get(agent_id)
            if state is not None and state.state in (Liveness.ONLINE, Liveness.LATE):
                out[agent_id] = (received, row_values(row))
        return out


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
