"""Self-observation: the maestro's own Prometheus metrics.

The hot path keeps plain integer counters (cheap); this collector reads them when
Prometheus scrapes, so nothing here costs anything between scrapes. Served by
``arete maestro run --metrics-port`` (:func:`serve`) and mounted by the web API at
``/metrics`` (:meth:`Exposition.render`), with the fleet's series after the maestro's.
"""

from __future__ import annotations

import gzip
import socket
import threading
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Mapping
from typing import Any, Final
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import ThreadingWSGIServer, gzip_accepted
from prometheus_client.registry import Collector, CollectorRegistry

from maestro.fleet_text import FLEET_NAMES, FleetCache

Source = Callable[[], Any]
GZIP_LEVEL: Final = 6  # prometheus_client's 9: 3x the CPU for ~15% fewer bytes


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


class _ExporterCollector(Collector):
    """What rendering the fleet's series costs (read from the cache, never renders)."""

    def __init__(self, fleet: FleetCache) -> None:
        self._fleet = fleet

    def describe(self) -> Iterator[Metric]:
        return self.collect()

    def collect(self) -> Iterator[Metric]:
        yield _counter(
            "arete_maestro_exporter_renders",
            "Renders of the fleet's series for /metrics (one per exporter_cache_s at most)",
            self._fleet.renders,
        )
        yield _gauge(
            "arete_maestro_exporter_render_seconds",
            "CPU seconds of the newest render of the fleet's series (ingest slows meanwhile)",
            self._fleet.last_render_s,
        )


class Exposition:
    """What ``/metrics`` answers: the maestro's own series (prometheus_client) followed by
    the fleet's, rendered as text (:mod:`maestro.fleet_text`) and cached ``cache_s``.

    Both parts are the Prometheus text format (never OpenMetrics, whatever the scraper
    accepts: the fleet's text is appended to the maestro's). ``names`` (``name[]``)
    selects series by name in both parts; a selection naming no fleet series does not
    render the fleet at all.
    """

    def __init__(self, maestro: Any, cache_s: float = 5.0) -> None:
        from maestro.exporter import views_of

        self.fleet = FleetCache(lambda: views_of(maestro), cache_s)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(MaestroCollector(maestro))
        self.registry.register(_ExporterCollector(self.fleet))

    def render(self, names: Collection[str] | None = None) -> bytes:
        if not names:
            return generate_latest(self.registry) + self.fleet.get().body
        wanted = set(names)
        own = generate_latest(self.registry.restricted_registry(wanted))
        if wanted.isdisjoint(FLEET_NAMES):
            return own
        return own + self.fleet.get().text(wanted).encode()

    def wsgi_app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        """prometheus_client's app for anything but a GET; a GET gets :meth:`render`,
        gzipped when the scraper accepts it."""
        if environ["REQUEST_METHOD"] != "GET" or environ.get("PATH_INFO") == "/favicon.ico":
            return make_wsgi_app(self.registry)(environ, start_response)  # type: ignore[no-any-return]
        names = parse_qs(environ.get("QUERY_STRING", "")).get("name[]")
        body = self.render(names)
        headers = [("Content-Type", CONTENT_TYPE_LATEST)]
        if gzip_accepted(environ.get("HTTP_ACCEPT_ENCODING", "")):
            body = gzip.compress(body, compresslevel=GZIP_LEVEL)
            headers.append(("Content-Encoding", "gzip"))
        start_response("200 OK", headers)
        return [body]


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No line per scrape."""


def serve(exposition: Exposition, port: int, host: str) -> tuple[WSGIServer, threading.Thread]:
    """``/metrics`` on ``host:port`` (IPv4 or IPv6), one thread per request."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]

    class Server(ThreadingWSGIServer):
        address_family = family

    server = make_server(host, port, exposition.wsgi_app, Server, handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, name="metrics", daemon=True)
    thread.start()
    return server, thread
