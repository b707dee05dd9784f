"""The alert service: the I/O shell around the pure engine.

It feeds :func:`~maestro.alerts.engine.evaluate` with liveness changes (from the
registry), the latest metrics (every ``eval_every_s``) and operator actions (the web
API, the Telegram buttons), and hands what comes back to
:class:`~maestro.alerts.effects.Effects` (store, outbox, retained snapshots, event bus).
State survives restarts: :meth:`AlertService.start` reloads open alerts and silences.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from arete.errors import AreteError
from arete.payloads import AgentAlerts, AlertPhase
from arete.topics import Topics, validate_agent_id
from maestro.alerts import tables
from maestro.alerts.effects import AuditEntry, Effects, Job
from maestro.alerts.engine import evaluate, initial_state, restore
from maestro.alerts.model import (
    Acknowledge,
    Action,
    AddSilence,
    AgentObserved,
    AgentRemoved,
    AgentsKnown,
    AgentView,
    AlertChanged,
    AlertRecord,
    ConditionObserved,
    EndSilence,
    EngineConfig,
    Event,
    MetricsObserved,
    SilenceChanged,
    SilenceRecord,
)
from maestro.alerts.rules import Rule, load_rules
from maestro.alerts.settings import AlertSettings
from maestro.errors import AlertError, StoreError
from maestro.events import EventBus
from maestro.notify.outbox import Outbox
from maestro.ports import Publisher
from maestro.store.core import Store

log = logging.getLogger(__name__)

MAX_SILENCE_S: Final = 30 * 86400.0
MAX_ACTOR_CHARS: Final = 256
MAX_REASON_CHARS: Final = 1000

Latest = Callable[[], Mapping[str, tuple[float, Mapping[str, Any]]] | None]
"""``{agent: (receive time, {field: value})}``, or None while metric rules must wait."""


class AlertService:
    """Counters for the Prometheus exporter: :attr:`alerts_by_phase`,
    :attr:`notifications_queued`, :attr:`store_errors`, :attr:`publish_errors`."""

    def __init__(
        self,
        store: Store,
        publisher: Publisher,
        topics: Topics,
        settings: AlertSettings,
        events: EventBus,
        *,
        clock: Callable[[], float] = time.time,
        outbox: Outbox | None = None,
        rules: Sequence[Rule] | None = None,
        notify_gate: Callable[[], bool] | None = None,
    ) -> None:
        """``rules`` defaults to the built-ins plus ``settings.rules_file`` (raises
        :class:`ConfigError`); ``outbox`` receives the notifications (none without it);
        ``notify_gate`` says whether this replica sends them now (e.g. the registry's
        ``is_leader``)."""
        self._store = store
        self.settings = settings
        self._clock = clock
        self._has_outbox = outbox is not None
        self._notify_gate = notify_gate
        if not settings.enabled:
            chosen: tuple[Rule, ...] = ()
        else:
            chosen = tuple(rules) if rules is not None else load_rules(settings)
        self.rules = chosen
        self._state = initial_state(EngineConfig.from_settings(settings, chosen))
        self.effects = Effects(
            store, publisher, topics, events, outbox=outbox, snapshot=self.snapshot
        )

    # -- lifecycle -------------------------------------------------------------------
    async def start(self) -> None:
        """Load open alerts and silences (state survives restarts), republish snapshots."""
        now = self._clock()
        config = self._state.config
        resolved_since = now - config.reopen_s
        alerts = await self._store.read(lambda conn: tables.load_current(conn, resolved_since))
        silences = await self._store.read(lambda conn: tables.load_active_silences(conn, now))
        keep_after = now - self.settings.keep_resolved_days * 86400
        try:
            await self._store.write(lambda conn: tables.prune_resolved(conn, keep_after))
        except StoreError as exc:  # a full disk: prune next start; alerting goes on
            log.warning("old alerts not pruned", extra={"kv": {"error": str(exc)}})
        self._state, actions = restore(config, alerts, silences, now)
        self.effects.start()
        with contextlib.suppress(StoreError):  # a full disk: the effects keep and retry it
            await self.effects.submit_and_wait(Job(now, actions))
        log.info(
            "alerts loaded",
            extra={"kv": {"open": len(self._state.open_alerts()), "rules": len(self.rules)}},
        )

    async def run(self, latest: Latest) -> None:
        """Evaluate metric rules (and every timer) each ``eval_every_s`` until cancelled.
        ``latest()`` returning None holds metric rules (e.g. while the broker link is down)."""
        while True:
            try:
                snapshot = latest()
            except Exception:  # a bad snapshot skips one round of metric rules, not alerting
                log.exception("alerts could not read the latest metrics")
                snapshot = None
            self.tick(snapshot, hold=snapshot is None)
            await asyncio.sleep(self.settings.eval_every_s)

    def tick(
        self,
        latest: Mapping[str, tuple[float, Mapping[str, Any]]] | None = None,
        *,
        hold: bool = False,
    ) -> None:
        """One evaluation now: metric rules on ``latest`` and every timer (what :meth:`run`
        does each ``eval_every_s``; tests with a fake clock call it directly). ``hold``
        leaves metric rules as they are: no data is not the same as no link."""
        self._apply(MetricsObserved(latest or {}, hold=hold), self._clock())

    async def aclose(self, drain_s: float = 5.0) -> None:
        """Store what is queued (up to ``drain_s``), then stop the service's tasks."""
        await self.effects.aclose(drain_s)

    # -- input -----------------------------------------------------------------------
    def observe_agent(
        self,
        agent_id: str,
        state: str,
        now: float,
        *,
        clean: bool = False,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        """A liveness transition from the registry (on the event loop; never blocks)."""
        self._apply(AgentObserved(agent_id, str(state), bool(clean), dict(labels or {})), now)

    def forget_agent(self, agent_id: str, now: float) -> None:
        """The agent was removed: its open alerts resolve without a message (an
        ``agent.removed`` audit entry names them), and its retained ``alerts/<agent>``
        snapshot is cleared rather than republished."""
        ids = [alert.id for alert in self._state.open_alerts(agent_id)]
        self._state, actions = evaluate(self._state, AgentRemoved(agent_id), now)
        audit = AuditEntry("maestro", "agent.removed", agent_id, {"resolved": ids})
        self.effects.submit(self._job(now, actions, [audit]))
        self.effects.forget(agent_id)

    def observe_known(self, agents: Mapping[str, tuple[str, bool, Mapping[str, str]]]) -> None:
        """Agents known at startup, ``{agent: (state, clean, labels)}``: every rule covers
        them from the first evaluation, not only after their next liveness change."""
        views = {
            a: AgentView(state, clean, dict(labels)) for a, (state, clean, labels) in agents.items()
        }
        self._apply(AgentsKnown(views), self._clock())

    def observe_condition(
        self,
        rule: str,
        subject: str,
        holds: bool,
        now: float,
        *,
        value: float | None = None,
        detail: str = "",
    ) -> None:
        """A condition rule's condition on ``subject`` (an agent, or ``maestro:<replica>``)
        holds or not; report changes (what matters to the rule), not every reading."""
        self._apply(ConditionObserved(rule, subject, bool(holds), value, detail), now)

    def threshold(self, rule: str) -> float | None:
        """The threshold of an enabled rule (None if it is disabled or has none)."""
        return next((r.threshold for r in self.rules if r.name == rule), None)

    # -- operator API ----------------------------------------------------------------
    async def ack(self, alert_id: str, actor: str) -> AlertRecord:
        """Acknowledge an alert: no more reminders, and everyone sees who took it."""
        actor = _checked_actor(actor)
        now = self._clock()
        try:
            self._state, actions = evaluate(self._state, Acknowledge(alert_id, actor), now)
        except AlertError:
            # An incident that is over has nothing left to acknowledge; unknown ids raise.
            return await self.get_alert(alert_id)
        record = self._state.find(alert_id)
        if record is None:  # evaluate found it, so it is there
            raise AlertError(f"no current alert with id {alert_id!r}")
        audits = []
        if any(isinstance(a, AlertChanged) and a.change == "acked" for a in actions):
            detail = {"rule": record.rule, "agent": record.agent}
            audits.append(AuditEntry(actor, "alert.ack", alert_id, detail))
        await self.effects.submit_and_wait(self._job(now, actions, audits))
        return record

    async def silence(
        self,
        *,
        agent: str | None,
        rule: str | None,
        duration_s: float,
        actor: str,
        reason: str = "",
    ) -> SilenceRecord:
        """Mute notifications of an agent's alerts, a rule's, or one rule on one agent."""
        actor = _checked_actor(actor)
        if agent is None and rule is None:
            raise AlertError("a silence needs an agent, a rule or both")
        if agent is not None:
            try:
                validate_agent_id(agent)
            except AreteError as exc:
                raise AlertError(str(exc)) from None
        if rule is not None and rule not in {r.name for r in self.rules}:
            raise AlertError(f"unknown rule {rule!r}")
        if not isinstance(duration_s, int | float) or not 0 < duration_s <= MAX_SILENCE_S:
            raise AlertError(f"a silence lasts more than 0 s and at most {MAX_SILENCE_S:g} s")
        if len(reason) > MAX_REASON_CHARS:
            raise AlertError(f"the reason is longer than {MAX_REASON_CHARS} characters")
        now = self._clock()
        silence = SilenceRecord(
            id=secrets.token_hex(8),
            agent=agent,
            rule=rule,
            starts_at=now,
            ends_at=now + duration_s,
            created_by=actor,
            created_at=now,
            reason=reason,
        )
        self._state, actions = evaluate(self._state, AddSilence(silence), now)
        detail = {"agent": agent, "rule": rule, "ends_at": silence.ends_at, "reason": reason}
        audits = [AuditEntry(actor, "alert.silence", silence.id, detail)]
        await self.effects.submit_and_wait(self._job(now, actions, audits))
        return silence

    async def silence_alert(self, alert_id: str, duration_s: float, actor: str) -> SilenceRecord:
        """Silence the rule of one alert on its agent (the Telegram "Silence 1 h" button)."""
        alert = self._state.find(alert_id) or await self.get_alert(alert_id)
        return await self.silence(
            agent=alert.agent, rule=alert.rule, duration_s=duration_s, actor=actor
        )

    async def unsilence(self, silence_id: str, actor: str) -> SilenceRecord:
        actor = _checked_actor(actor)
        now = self._clock()
        self._state, actions = evaluate(self._state, EndSilence(silence_id, actor), now)
        ended = next(a.silence for a in actions if isinstance(a, SilenceChanged))
        audits = [AuditEntry(actor, "alert.unsilence", silence_id, {})]
        await self.effects.submit_and_wait(self._job(now, actions, audits))
        return ended

    async def get_alert(self, alert_id: str) -> AlertRecord:
        current = self._state.find(alert_id)
        if current is not None:
            return current
        await self.effects.flushed()
        stored = await self._store.read(lambda conn: tables.get_alert(conn, alert_id))
        if stored is None:
            raise AlertError(f"no alert with id {alert_id!r}")
        return stored

    async def list_alerts(
        self, *, phase: AlertPhase | str | None = None, agent: str | None = None, limit: int = 100
    ) -> list[AlertRecord]:
        """Alerts newest first, resolved ones included (history), optionally filtered."""
        try:
            wanted = None if phase is None else AlertPhase(phase)
        except ValueError:
            raise AlertError(f"unknown phase {phase!r} (pending, firing, resolved)") from None
        await self.effects.flushed()
        return await self._store.read(
            lambda conn: tables.list_alerts(conn, phase=wanted, agent=agent, limit=limit)
        )

    async def list_silences(self) -> list[SilenceRecord]:
        """The silences in force, soonest to end first."""
        now = self._clock()
        active = [s for s in self._state.silences.values() if s.active(now)]
        return sorted(active, key=lambda s: (s.ends_at, s.id))

    def active_alerts(self, agent: str | None = None) -> list[AlertRecord]:
        """Pending and firing alerts (in memory, no I/O)."""
        return self._state.open_alerts(agent)

    def snapshot(self, agent: str, now: float | None = None) -> AgentAlerts:
        """What ``alerts/<agent>`` carries: its pending and firing alerts."""
        at = self._clock() if now is None else now
        alerts = [
            alert.to_active(self._state.silenced_until(alert, at))
            for alert in self._state.open_alerts(agent)
        ]
        return AgentAlerts(agent=agent, ts=at, alerts=alerts)

    @property
    def alerts_by_phase(self) -> dict[str, int]:
        counts = Counter(str(a.phase) for a in self._state.open_alerts())
        return {phase: counts.get(phase, 0) for phase in ("pending", "firing")}

    @property
    def notifications_queued(self) -> int:
        """Notices queued for the channels since start (each counted once)."""
        return self.effects.notifications_queued

    @property
    def store_errors(self) -> int:
        return self.effects.store_errors

    @property
    def publish_errors(self) -> int:
        return self.effects.publish_errors

    # -- performing actions ----------------------------------------------------------
    def _apply(self, event: Event, now: float) -> None:
        self._state, actions = evaluate(self._state, event, now)
        if actions:
            self.effects.submit(self._job(now, actions, []))

    def _job(self, now: float, actions: list[Action], audits: list[AuditEntry]) -> Job:
        gate = self._notify_gate
        notify = self._has_outbox and (gate is None or gate())
        return Job(now, actions, audits, notify)


def _checked_actor(actor: str) -> str:
    if not isinstance(actor, str) or not actor.strip() or len(actor) > MAX_ACTOR_CHARS:
        raise AlertError(f"the actor must be 1-{MAX_ACTOR_CHARS} characters")
    return actor.strip()
