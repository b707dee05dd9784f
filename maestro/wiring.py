"""How the maestro's parts are built from its settings (kept out of :mod:`maestro.app`
so that file reads as the order things start and stop in)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import GaugeMetricFamily, Metric

from arete.payloads import Status, encode
from arete.topics import Topics
from maestro.alerts import ALERT_MIGRATIONS
from maestro.alerts.service import AlertService
from maestro.commands import COMMAND_MIGRATIONS
from maestro.commands.service import CommandService
from maestro.diskstate import DiskMonitor, DiskReport, release_reserve
from maestro.errors import StoreError
from maestro.events import EventBus
from maestro.influx import COMPONENT as INFLUX_COMPONENT
from maestro.influx import MIGRATIONS as INFLUX_MIGRATIONS
from maestro.influx import InfluxSink, InfluxSpool
from maestro.late_writes import LateWrites
from maestro.liveness import AgentLive, Liveness, Transition, is_clean_offline
from maestro.notify import NOTIFY_MIGRATIONS
from maestro.notify.service import Notifiers
from maestro.observe import labelled
from maestro.ports import Publisher
from maestro.registry import Persist, Registry
from maestro.settings import MaestroSettings
from maestro.store.core import Store
from maestro.store.registry import (
    AgentRecord,
    add_event,
    forget_state,
    load_states,
    save_state,
)

if TYPE_CHECKING:
    from maestro.app import Maestro
    from maestro.release_publisher import ReleasePublisher
    from maestro.releases import ReleaseStore

log = logging.getLogger("arete.maestro")


def open_store(settings: MaestroSettings) -> tuple[Store, InfluxSink | None]:
    """The store with every component's tables, and the InfluxDB sink if configured."""
    migrations: dict[str, list[str]] = {
        "commands": list(COMMAND_MIGRATIONS),
        "alerts": list(ALERT_MIGRATIONS),
        "notify": list(NOTIFY_MIGRATIONS),
    }
    stagers: list[Any] = []
    sink: InfluxSink | None = None
    if settings.influx.enabled:
        migrations[INFLUX_COMPONENT] = list(INFLUX_MIGRATIONS)
        stagers.append(InfluxSpool(settings.influx))
        sink = InfluxSink(settings.influx, settings.database)
    try:
        store = Store.open(settings.database, migrations, settings=settings.store, stagers=stagers)
    except StoreError as exc:
        # SQLite cannot even open a database on a disk with no room at all (its WAL index
        # needs a few pages): give up the reserve kept for this and try once more.
        folder = settings.database.parent
        if not release_reserve(folder):
            raise
        log.error(
            "the data disk is full at start: released the disk reserve to open the store",
            extra={"kv": {"error": str(exc), "reserve_bytes": settings.disk.reserve_bytes}},
        )
        store = Store.open(settings.database, migrations, settings=settings.store, stagers=stagers)
    return store, sink


def registry_persister(store: Store) -> Persist:
    async def persist(
        transitions: list[Transition],
        records: list[tuple[AgentLive, Status | None]],
        removed: list[str],
    ) -> None:
        rows = [_record(state, status) for state, status in records]

        def write(conn: Any) -> None:
            for name in removed:  # removed agents: no saved state (their history stays)
                forget_state(conn, name)
            for row in rows:
                save_state(conn, row)
            for moved in transitions:
                add_event(
                    conn,
                    moved.agent_id,
                    ts=moved.at,
                    old=str(moved.old) if moved.old is not None else None,
                    new=str(moved.new),
                    epoch=moved.epoch,
                    reason=moved.reason,
                )

        await store.write(write)

    return persist


def _record(state: AgentLive, status: Status | None) -> AgentRecord:
    return AgentRecord(
        name=state.agent_id,
        state=str(state.state),
        epoch=state.epoch,
        since=state.since,
        last_seen=state.last_contact,
        status=encode(status) if status is not None else None,
        labels=dict(status.labels) if status is not None else {},
        host=status.host if status is not None else "",
        version=status.version if status is not None else "",
        heartbeat_s=state.heartbeat_s,
    )


async def load_registry(store: Store, registry: Registry) -> None:
    """Agents known from earlier runs. Their retained statuses, arriving next, win; an
    agent that was connected gets a fresh heartbeat window rather than instant alarms."""
    from arete.payloads import decode_status

    records = await store.read(load_states)
    now = registry.now()
    for record in records:
        try:
            state = Liveness(record.state)
        except ValueError:
            continue
        status = None
        if record.status:
            try:
                status = decode_status(record.status)
            except Exception:  # noqa: BLE001 - a row from an older build: skip its status
                status = None
        if status is not None:
            registry.statuses[record.name] = status
        registry.states[record.name] = AgentLive(
            record.name,
            state,
            record.epoch,
            record.since,
            now if state.connected else (record.last_seen or record.since),
            record.heartbeat_s or 10.0,
            clean=state is Liveness.OFFLINE and status is not None and is_clean_offline(status),
        )


def command_service(
    settings: MaestroSettings,
    store: Store,
    publisher: Publisher,
    topics: Topics,
    events: EventBus,
) -> CommandService:
    from maestro.keys import configured_signing_key

    key = configured_signing_key(settings)
    if key is None:
        log.warning(
            "commands are NOT signed: no signing key (run `arete keys create --data-dir %s`)",
            settings.data_dir,
        )
    return CommandService(store, publisher, topics, events, settings.commands, signing_key=key)


def alert_services(
    settings: MaestroSettings,
    *,
    store: Store,
    publisher: Publisher,
    topics: Topics,
    events: EventBus,
    registry: Registry,
) -> tuple[AlertService, Notifiers]:
    notifiers = Notifiers.from_settings(store, settings.notify)
    alerts = AlertService(
        store,
        publisher,
        topics,
        settings.alerts,
        events,
        outbox=notifiers.outbox,
        notify_gate=registry.is_leader,
    )
    notifiers.actions = alerts  # the Telegram buttons act on alerts
    notifiers.gate = registry.is_leader  # one poller per bot: the leading replica's
    return alerts, notifiers


DISK_RULE = "maestro_disk_full"


def disk_monitor(maestro: Maestro) -> DiskMonitor:
    """Watches the data dir's disk; its verdict goes to the alerts (``maestro_disk_full``
    on subject ``maestro:<replica>``), the presence payload and the metrics."""
    settings = maestro.settings
    monitor = DiskMonitor(settings.database.parent, settings.disk)
    monitor.sources["alerts"] = lambda: maestro.alerts.effects.failing
    monitor.sources["notify"] = lambda: maestro.notifier.dispatcher.failing
    monitor.sources["registry"] = lambda: maestro.registry.store_failing
    monitor.sources["commands"] = lambda: maestro.commands.store_failing
    monitor.sources["samples"] = lambda: maestro.store.writer.failing
    monitor.sources["audit"] = lambda: LateWrites.of(maestro.store).failing
    subject = f"maestro:{settings.replica}"

    def tell_alerts(report: DiskReport, now: float) -> None:
        observe = getattr(maestro.alerts, "observe_condition", None)
        if observe is None:  # an alert service without condition rules
            return
        detail = ", ".join(sorted(report.failing)) or "free space below the minimum"
        observe(
            DISK_RULE,
            subject,
            report.full,
            now,
            value=None if report.free_bytes is None else float(report.free_bytes),
            detail=detail if report.full else "",
        )

    monitor.listeners.append(tell_alerts)
    monitor.listeners.append(lambda report, _now: maestro.link.set_disk_full(report.full))
    return monitor


def service_metrics(maestro: Maestro) -> Iterator[Metric]:
    yield from maestro.live.metrics()  # the websockets' live feed (maestro.live_feed)
    disk = maestro.disk.report
    yield GaugeMetricFamily(
        "arete_maestro_disk_full",
        "1 while the maestro's data disk is full (writes failing for lack of space, or"
        " free space under disk.min_free_bytes)",
        value=int(disk.full),
    )
    if disk.free_bytes is not None:
        yield GaugeMetricFamily(
            "arete_maestro_disk_free_bytes",
            "Free space of the maestro's data disk",
            value=disk.free_bytes,
        )
    yield GaugeMetricFamily(
        "arete_maestro_unstored_alert_changes",
        "Alert changes decided but not stored yet (kept in memory, retried)",
        value=maestro.alerts.effects.unstored,
    )
    yield GaugeMetricFamily(
        "arete_maestro_notifications_held",
        "Notifications kept in memory because their rows could not be stored",
        value=maestro.notifier.outbox.held_count(),
    )
    yield GaugeMetricFamily(
        "arete_maestro_notification_marks_unstored",
        "Sent/failed marks kept in memory until the store takes them (never resent)",
        value=sum(len(marks) for marks in maestro.notifier.dispatcher.unmarked.values()),
    )
    commands = maestro.commands
    yield labelled(
        "arete_maestro_commands_finished",
        "Commands that reached each final state",
        "state",
        {str(k): v for k, v in commands.finished_total.items()},
    )
    yield labelled(
        "arete_maestro_replies_ignored",
        "Replies ignored (unknown command, wrong agent, no change)",
        "reason",
        dict(commands.replies_ignored_total),
    )
    alerts = maestro.alerts
    yield labelled(
        "arete_maestro_alerts",
        "Alerts per phase",
        "phase",
        dict(alerts.alerts_by_phase),
        gauge=True,
    )
    dispatcher = maestro.notifier.dispatcher
    yield labelled(
        "arete_maestro_notifications_sent", "Notifications delivered", "channel", dispatcher.sent
    )
    yield labelled(
        "arete_maestro_notifications_failed",
        "Notifications given up on (refused for good)",
        "channel",
        dispatcher.failed,
    )
    yield labelled(
        "arete_maestro_notifications_pending",
        "Notifications waiting in the outbox",
        "channel",
        dispatcher.pending,
        gauge=True,
    )
    yield from _release_metrics(maestro)
    sink = maestro.influx
    if sink is not None:
        stats = sink.stats
        yield labelled(
            "arete_maestro_influx",
            "InfluxDB sink: lines written, errors, pending and dropped lines",
            "what",
            {
                "written": stats.lines_written,
                "errors": stats.write_errors,
                "pending": stats.spool_lines,
                "dropped": stats.dropped_lines,
            },
            gauge=True,
        )


def _release_metrics(maestro: Maestro) -> Iterator[Metric]:
    store = getattr(maestro, "releases", None)
    if store is None:
        return
    infos = store.releases()
    yield labelled(
        "arete_maestro_releases",
        "Verified releases in the release store, by whether they are on the broker",
        "published",
        {"true": sum(i.published for i in infos), "false": sum(not i.published for i in infos)},
        gauge=True,
    )
    yield labelled(
        "arete_maestro_releases_refused",
        "Releases of the store refused (not published), counted when found or changed",
        "code",
        dict(store.refused_total),
    )


def release_service(maestro: Maestro) -> tuple[ReleaseStore, ReleasePublisher | None]:
    """The release store, and its publisher when release public keys are configured
    (docs/updates.md). The publisher has its own broker connection and thread."""
    from arete import clientids
    from maestro.release_publisher import Connection, ReleasePublisher
    from maestro.releases import ReleaseStore, store_directory

    s, b = maestro.settings, maestro.broker
    keys = s.releases.keys()
    store = ReleaseStore(store_directory(s.data_dir, s.releases), keys)
    if not keys:
        log.info("releases: no release public key configured; the release store is not published")
        return store, None
    connection = Connection(
        host=b.host,
        port=b.port,
        username=b.username,
        password=b.password,
        client_id=clientids.client_id(b.username, s.replica, "releases"),
        tls=b.tls,
        ca_file=str(b.ca_file) if b.ca_file else None,
        keepalive_s=s.mqtt.keepalive_s,
    )
    publisher = ReleasePublisher(
        store, maestro.topics, connection, scan_interval_s=s.releases.scan_interval_s
    )
    return store, publisher


async def to_thread_open(settings: MaestroSettings) -> tuple[Store, InfluxSink | None]:
    return await asyncio.to_thread(open_store, settings)
