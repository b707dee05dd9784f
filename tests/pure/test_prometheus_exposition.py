"""The fleet's Prometheus exposition: names, labels and liveness, as a scraper reads them."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from arete.payloads import Gpu, Mount, Sample
from maestro.exporter import AgentView, fleet_families, label_name


class _Static:
    def __init__(self, views: list[AgentView]) -> None:
        self.views = views

    def collect(self):  # type: ignore[no-untyped-def]
        yield from fleet_families(self.views)


def _scrape(views: list[AgentView]) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Static(views))
    text = generate_latest(registry).decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


SAMPLE = Sample(
    ts=1_800_000_000.0,
    seq=7,
    cpu=42.5,
    cpus=[40.0, 45.0],
    load=(0.5, 0.25, 0.125),
    mem=60.0,
    mem_used=6_000,
    mem_total=10_000,
    swap=1.5,
    disk=70.0,
    mounts=[Mount("/", 1000, 700, 70.0)],
    net_rx_bps=1234.0,
    net_tx_bps=99.0,
    uptime_s=100.0,
    procs=321,
    temps={"cpu": 55.0},
    gpu=[Gpu(index=0, name="T4", util=12.0)],
)


def test_an_online_agents_sample_has_node_exporter_names_and_its_labels() -> None:
    view = AgentView("a1", "online", {"site": "paris", "rack-no": "3"}, "h1", "1.0", SAMPLE)
    got = _scrape([view])
    base = {("agent", "a1"), ("site", "paris"), ("rack_no", "3")}
    assert got[("arete_agent_up", frozenset(base))] == 1.0
    assert got[("arete_agent_cpu_percent", frozenset(base))] == 42.5
    assert got[("arete_agent_cpu_core_percent", frozenset(base | {("cpu", "1")}))] == 45.0
    assert got[("node_load1", frozenset(base))] == 0.5
    assert got[("node_load15", frozenset(base))] == 0.125
    assert got[("node_memory_MemTotal_bytes", frozenset(base))] == 10_000
    assert got[("node_filesystem_size_bytes", frozenset(base | {("mountpoint", "/")}))] == 1000
    assert got[("node_boot_time_seconds", frozenset(base))] == 1_800_000_000 - 100
    assert got[("arete_agent_network_receive_bytes_per_second", frozenset(base))] == 1234.0
    assert got[("arete_agent_processes", frozenset(base))] == 321
    assert got[("arete_agent_temperature_celsius", frozenset(base | {("sensor", "cpu")}))] == 55
    gpu = frozenset(base | {("gpu", "0"), ("name", "T4")})
    assert got[("arete_agent_gpu_utilization_percent", gpu)] == 12.0
    assert ("arete_agent_gpu_power_watts", gpu) not in got  # not reported: no series


def test_an_offline_agent_keeps_only_up_zero_and_its_info() -> None:
    got = _scrape([AgentView("a2", "offline", {}, "h2", "1.0", SAMPLE)])
    names = {name for name, _ in got}
    assert names == {"arete_agent_up", "arete_agent_info"}
    assert got[("arete_agent_up", frozenset({("agent", "a2")}))] == 0.0


def test_labels_clashing_or_invalid_are_renamed() -> None:
    assert label_name("agent") == "label_agent"
    assert label_name("job") == "label_job"
    assert label_name("9lives") == "label_9lives"
    assert label_name("__x") == "label___x"
    assert label_name("zone.a-b") == "zone_a_b"
    got = _scrape([AgentView("a3", "late", {"agent": "x", "job": "y"}, sample=SAMPLE)])
    labels = {("agent", "a3"), ("label_agent", "x"), ("label_job", "y")}
    assert got[("arete_agent_up", frozenset(labels))] == 1.0


def test_label_values_with_quotes_and_newlines_survive_the_text_format() -> None:
    view = AgentView("a4", "online", {"note": 'say "hi"\nbye\\'}, sample=SAMPLE)
    got = _scrape([view])
    labels = frozenset({("agent", "a4"), ("note", 'say "hi"\nbye\\')})
    assert got[("arete_agent_cpu_percent", labels)] == 42.5
