"""Self-observation: the maestro's own Prometheus metrics.

The hot path keeps plain integer counters (cheap); this collector reads them when
Prometheus scrapes, so nothing here costs anything between scrapes. Served by
``arete maestro run --metrics-port`` and mounted by the web API at ``/metrics``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

Source = Callable[[], Any]


class MaestroCollector(Collector):
    """Reads the counters of a running :class:`maestro.app.Maestro` at scrape time."""

    def __init__(self, maestro: Any) -> None:
        self._m = maestro

    def describe(self) -> Iterator[Metric]:
        """The families, read once when registered: their names let a scrape ask for a few
        series (``/metrics?name[]=...``) without rendering the whole fleet's."""
        return self.collect()

    def collect(self) -> Iterator[Metric]:
        m = self._m
        ingest = m.ingest
        messages = CounterMetricFamily(
            "arete_maestro_messages", "MQTT messages received, by topic kind", labels=["kind"]
        )
        for kind, count in sorted(Counter(ingest.messages).items()):
            messages.add_metric([str(kind)], count)
        yield messages
        errors = CounterMetricFamily(
            "arete_maestro_decode_errors",
            "Messages dropped because they were malformed, oversized, of a wrong schema or out"
            " of bounds (ts_future, ts_past: samples stamped too far from the maestro's clock)",
            labels=["kind", "reason"],
        )
        for (kind, reason), count in sorted(Counter(ingest.errors).items()):
            errors.add_metric([kind, reason], count)
        yield errors
        yield _counter("arete_maestro_samples", "Samples received", ingest.samples)
        yield _counter(
            "arete_maestro_replayed_samples",
            "Samples received from agents' outboxes after an outage",
            ingest.replayed_samples,
        )
        writer = m.store.writer
        yield _counter("arete_maestro_samples_stored", "New samples stored", writer.rows_stored)
        yield _counter(
            "arete_maestro_samples_duplicate",
            "Samples delivered again and ignored (already stored)",
            writer.rows_duplicate,
        )
        yield _counter(
            "arete_maestro_samples_rejected",
            "Sample rows the database refused, dropped alone (the rest of the batch stored)",
            writer.rows_rejected,
        )
        yield _counter(
            "arete_maestro_store_write_errors", "Failed store transactions", writer.write_errors
        )
        yield _gauge(
            "arete_maestro_store_pending_rows", "Samples waiting for the store", writer.pending_rows
        )
        yield _counter(
            "arete_maestro_stored_acks",
            "Stored acknowledgements published to agents (stored/<agent>)",
            m.stored_acks.published,
        )
        yield _gauge(
            "arete_maestro_store_lag_seconds",
            "Age of the oldest sample not yet stored",
            writer.lag_s,
        )
        agents = GaugeMetricFamily(
            "arete_maestro_agents", "Agents per liveness state", labels=["state"]
        )
        for state, count in sorted(m.agent_counts().items()):
            agents.add_metric([state], count)
        yield agents
        yield _counter(
            "arete_maestro_liveness_transitions",
            "Liveness state changes",
            m.registry.transitions,
        )
        yield _counter(
            "arete_maestro_stale_status_ignored",
            "Statuses of an older connection (late Wills) that were ignored",
            m.registry.stale_ignored,
        )
        yield _counter(
            "arete_maestro_broker_dropped_messages",
            "Messages the broker dropped because a client's queue was full (max_queued_messages), "
            "seen since this maestro started; they include samples the maestro never got",
            m.broker_drops.total,
        )
        yield _gauge(
            "arete_maestro_mqtt_connected", "1 while the MQTT link is up", int(m.link.connected)
        )
        yield _counter("arete_maestro_mqtt_connects", "MQTT connections made", m.link.connects)
        yield _gauge(
            "arete_maestro_event_subscribers", "Event stream subscribers", m.events.subscribers
        )
        yield from m.extra_metrics()


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def labelled(
    name: str, doc: str, label: str, values: Mapping[str, float], *, gauge: bool = False
) -> Metric:
    family: CounterMetricFamily | GaugeMetricFamily
    if gauge:
        family = GaugeMetricFamily(name, doc, labels=[label])
    else:
        family = CounterMetricFamily(name, doc, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([key], value)
    return family


def make_registry(maestro: Any) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MaestroCollector(maestro))
    from maestro.exporter import FleetCollector

    registry.register(FleetCollector(maestro))  # the fleet's own metrics (maestro.exporter)
    return registry
