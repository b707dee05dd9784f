"""One maestro replica, assembled: store, MQTT link, ingest, registry, alerts,
notifications, commands, the optional InfluxDB sink and self-observation.

``async with Maestro.running(settings) as maestro:`` starts everything and stops it in
the reverse order. The web API holds one of these and calls its services.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import Metric

from arete.topics import BROKER_DROPPED, Kind, Topics
from maestro.broker_drops import BrokerDrops
from maestro.events import EventBus
from maestro.ingest import BrokerCounterIn, Inbound, Ingest, LoopInbox, ReplyIn
from maestro.link import LinkConfig, MaestroLink
from maestro.live_feed import LiveFeed
from maestro.liveness import Policy
from maestro.observe import Exposition, serve
from maestro.registry import Registry
from maestro.settings import BrokerEndpoint, MaestroSettings, resolve_broker
from maestro.stored_acks import StoredAcks

if TYPE_CHECKING:
    from maestro.alerts.service import AlertService
    from maestro.commands.service import CommandService
    from maestro.diskstate import DiskMonitor
    from maestro.homeassistant import Discovery
    from maestro.influx import InfluxSink
    from maestro.notify.service import Notifiers
    from maestro.release_publisher import ReleasePublisher
    from maestro.releases import ReleaseStore
    from maestro.store.core import Store
    from maestro.terminal import TerminalHub

log = logging.getLogger("arete.maestro")


class Maestro:
    def __init__(self, settings: MaestroSettings) -> None:
        self.settings = settings
        self.broker: BrokerEndpoint = resolve_broker(settings)
        self.topics = Topics(self.broker.root)
        self.events = EventBus()
        self._tasks: list[asyncio.Task[None]] = []
        self._metrics_server: Any = None
        self.prometheus: Exposition | None = None
        # Assembled in start().
        self.store: Store
        self.link: MaestroLink
        self.ingest: Ingest
        self.registry: Registry
        self.commands: CommandService
        self.alerts: AlertService
        self.notifier: Notifiers
        self.influx: InfluxSink | None = None
        self.homeassistant: Discovery | None = None  # opt-in (settings.homeassistant)
        self.terminals: TerminalHub
        self.live: LiveFeed
        self.disk: DiskMonitor
        self.broker_drops = BrokerDrops()
        self.stored_acks: StoredAcks
        self.releases: ReleaseStore  # signed releases for agents (docs/updates.md)
        self.release_publisher: ReleasePublisher | None = None
        # Set by ``retire``: leave the broker for good (no session kept for a restart).
        self.end_session_on_stop = False

    # -- lifecycle ------------------------------------------------------------------------
    @classmethod
    @contextlib.asynccontextmanager
    async def running(cls, settings: MaestroSettings) -> AsyncIterator[Maestro]:
        maestro = cls(settings)
        try:
            await maestro.start()
        except BaseException:
            await maestro.stop()  # whatever start() got to: nothing left running
            raise
        try:
            yield maestro
        finally:
            await maestro.stop()

    async def start(self) -> None:
        from maestro import wiring

        loop = asyncio.get_running_loop()
        s = self.settings
        self.store, self.influx = await wiring.to_thread_open(s)
        inbox = LoopInbox(loop, self._deliver)
        self.stored_acks = StoredAcks(
            self.topics,
            s.replica,
            self._publish_nowait,
            generation=lambda: self.link.generation,  # built below, called later
        )
        self.ingest = Ingest(
            self.topics,
            s.replica,
            self.store.writer.submit,
            self._ack,
            inbox.put,
            acks=self.stored_acks,
            details=self.store.details,
        )
        self.link = self._make_link()
        # Every live sample of the agents this replica's websockets follow (live_feed).
        self.live = LiveFeed(
            self.topics,
            self.link,
            max_agents=s.mqtt.live_max_agents,
            known=lambda agent_id: agent_id in self.registry.states,  # built below
        )
        self.live.start()
        self.link.on_live = self.live.from_plain
        self.ingest.on_live = self.live.from_share
        self.registry = Registry(
            self.topics,
            s.replica,
            self.events,
            contacts=self.ingest.contacts,
            latest=self.ingest.latest,
            detail=self.ingest.detail,
            persist=wiring.registry_persister(self.store),
            publisher=self.link,
            policy=Policy(
                late_after=s.liveness.late_after,
                critical_after=s.liveness.critical_after,
                grace_s=s.liveness.grace_s,
            ),
            tick_s=s.liveness.tick_s,
            digest_s=s.liveness.digest_s,
            link=self.link,  # liveness is judged only while the link is up
            will_settle_s=s.liveness.will_settle_s,
            # A silent cut shows once the keepalive runs out: paho gives up after up to 2x.
            silent_link_max_s=2 * s.mqtt.keepalive_s + 5,
        )
        await wiring.load_registry(self.store, self.registry)
        self.commands = wiring.command_service(s, self.store, self.link, self.topics, self.events)
        self.alerts, self.notifier = wiring.alert_services(
            s,
            store=self.store,
            publisher=self.link,
            topics=self.topics,
            events=self.events,
            registry=self.registry,
        )
        self.registry.observers.append(self.alerts)
        self.registry.stall_after_s = self.alerts.threshold("metrics_stalled")
        self.registry.skew_s = self.alerts.threshold("clock_skew")
        self.disk = wiring.disk_monitor(self)  # the data disk: alert, presence, metrics
        # -- terminal hook: sessions opened by web_api; ingest routes term/+/+/out here
        from maestro.terminal import TerminalHub

        self.terminals = TerminalHub(self.commands, self.link, self.topics, self.store, self.events)
        self.ingest.on_term = self.terminals.deliver
        await self.alerts.start()
        await self.commands.start()
        self.link.start()
        self.releases, self.release_publisher = wiring.release_service(self)
        if self.release_publisher is not None:
            self.release_publisher.start()  # its own connection and thread: never blocks ingest
        self._spawn("registry", self.registry.run())
        self._spawn("alerts", self.alerts.run(self.registry.latest_values))
        self._spawn("notifier", self.notifier.run(actions=self.alerts))
        if s.secret_watcher is not None:  # secrets from Infisical: re-read, rotations applied
            from maestro.secretrefs import rotation_listener

            s.secret_watcher.on_change(rotation_listener(self))
            self._spawn("secrets", s.secret_watcher.run())
        self._spawn("commands", self.commands.serve())
        self._spawn("terminals", self.terminals.run())
        self._spawn("broker-drops", self.broker_drops.run())
        self._spawn("stored-acks", self.stored_acks.run())
        self._spawn("disk", self.disk.run())
        if self.influx is not None:
            self._spawn("influx", self.influx.run())
        if s.homeassistant.enabled:
            from maestro.homeassistant import Discovery

            self.homeassistant = Discovery(s.homeassistant, self.topics, self.link, self.registry)
            self._spawn("homeassistant", self.homeassistant.run())
        self.prometheus = Exposition(self, s.exporter_cache_s)
        if s.metrics_port:
            self._metrics_server = serve(self.prometheus, s.metrics_port, s.metrics_host)

    async def stop(self) -> None:
        """Stop in the order that loses nothing: take no new messages (the broker keeps
        them for our session), finish and store what is in hand, let the store's last
        acks go out, then leave the broker. Safe after a partial start()."""
        built = vars(self)
        if "ingest" in built:
            self.ingest.paused = True
        if "terminals" in built:
            with contextlib.suppress(Exception):
                await self.terminals.close_all()  # terminal hook: Close frames, audit entries
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if "registry" in built:
            with contextlib.suppress(Exception):
                await self.registry.flush()
        for name, closer in (("alerts", "aclose"), ("notifier", "aclose"), ("commands", "close")):
            if name in built:
                with contextlib.suppress(Exception):
                    await getattr(built[name], closer)()
        if "store" in built:
            await asyncio.to_thread(self.store.close)  # flushes; acks go out on the link
        if "stored_acks" in built:
            self.stored_acks.flush(all_of_them=True)  # agents need not send them again
        await self._stop_release_publisher()
        if "link" in built:
            await self.link.stop(end_session=self.end_session_on_stop)
        if self.influx is not None:
            with contextlib.suppress(Exception):
                await self.influx.close()
        if self._metrics_server is not None:
            server, thread = self._metrics_server
            server.shutdown()
            thread.join(5)

    async def _stop_release_publisher(self) -> None:
        if self.release_publisher is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.release_publisher.stop)

    async def wait_stopped(self, stop: asyncio.Event) -> None:
        """Wait for ``stop``; a crashed long-lived task stops the process too."""
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait([stopper, *self._tasks], return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        for task in self._tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]

    # -- wiring helpers -------------------------------------------------------------------
    def _spawn(self, name: str, coro: Any) -> None:
        self._tasks.append(asyncio.create_task(coro, name=f"maestro-{name}"))

    def _make_link(self) -> MaestroLink:
        link = MaestroLink(self._link_config(), self.ingest.handle)
        # The broker acks of a store batch go out as one write (maestro.pubacks).
        self.store.writer.around_callbacks = link.gathered_acks
        return link

    def _link_config(self) -> LinkConfig:
        s, b, t = self.settings, self.broker, self.topics
        group = s.mqtt.share_group
        return LinkConfig(
            replica=s.replica,
            host=b.host,
            port=b.port,
            username=b.username,
            password=b.password,
            topics=t,
            subscriptions=(
                (t.all_of(Kind.STATUS), 1),
                (t.shared(group, Kind.METRICS), 1),
                (t.shared(group, Kind.HEARTBEAT), 0),
                (t.all_of(Kind.REPLY), 1),
                (t.all_of(Kind.MAESTRO), 1),
                (t.all_maestro_seen(), 0),
                (t.all_of(Kind.TERM), 0),  # terminal hook: output of terminal sessions
                (BROKER_DROPPED, 0),  # Mosquitto publishes its $SYS counters at QoS 0
            ),
            keepalive_s=s.mqtt.keepalive_s,
            session_expiry_s=s.mqtt.session_expiry_s,
            receive_maximum=s.mqtt.receive_maximum,
            tls=b.tls,
            ca_file=str(b.ca_file) if b.ca_file else None,
            reconnect_min_s=s.mqtt.reconnect_min_s,
            reconnect_max_s=s.mqtt.reconnect_max_s,
        )

    def _ack(self, generation: int, mid: int) -> None:
        self.link.ack(generation, mid)

    def _publish_nowait(self, topic: str, payload: bytes) -> None:
        self.link.publish_nowait(topic, payload)  # the link is built after the ingest

    def _deliver(self, item: Inbound) -> None:
        if isinstance(item, ReplyIn):
            self.commands.on_reply(item.agent_id, item.reply, item.correlation, item.at)
        elif isinstance(item, BrokerCounterIn):
            self.broker_drops.on_reading(item.dropped)
        else:
            self.registry.deliver(item)

    # -- observation --------------------------------------------------------------------
    def agent_counts(self) -> dict[str, int]:
        # Called from the scrape thread: copy first, the loop may be changing the dict.
        counts = Counter(str(state.state) for state in list(self.registry.states.values()))
        return dict(counts)

    def extra_metrics(self) -> Iterator[Metric]:
        from maestro import wiring

        yield from wiring.service_metrics(self)
