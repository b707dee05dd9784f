"""The fleet rendered straight to text is what prometheus_client would have written, and
rapid scrapes share one render."""

from __future__ import annotations

from typing import Any

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from arete.payloads import Gpu, Mount, Sample
from maestro.exporter import AgentView, fleet_families
from maestro.fleet_text import FLEET_NAMES, FleetCache, escape, number, render_fleet

WEIRD = 'say "hi"\nbye\\ and\\n not a newline'


def _sample(ts: float, **extra: Any) -> Sample:
    fields: dict[str, Any] = {
        "ts": ts,
        "seq": 3,
        "cpu": 42.5,
        "cpus": [40.0, 45.0, 0.0],
        "load": (0.5, 0.25, 0.125),
        "mem": 60.0,
        "mem_used": 6_000_000_000,
        "mem_total": 10_000_000_000,
        "mounts": [Mount("/", 1000, 700, 70.0), Mount(f"/mnt/{WEIRD}", 10**13, 1, 0.01)],
        "uptime_s": 100.5,
        "procs": 321,
    }
    return Sample(**(fields | extra))


FLEET = [
    AgentView("b-offline", "offline", {"site": "x"}, "h2", "1.0", _sample(1e9)),
    AgentView(
        "a-gpu",
        "online",
        {"role": "gpu", "rack-no": "3"},
        "h1",
        "1.2",
        _sample(
            1_800_000_000.25,
            temps={"cpu": 55.0, 'odd"sensor\\': -3.5},
            gpu=[Gpu(0, "T4", 12.0, 1, 2, 40.0, 70.5), Gpu(1, WEIRD, None, 5, None, None, 1.0)],
            net_rx_bps=1234.5,
            disk_write_iops=7.0,
        ),
    ),
    AgentView(
        "c-weird",
        "late",
        {"note": WEIRD, "agent": "x", "9x": "é ü 漢"},
        None,
        None,
        _sample(1_800_000_001.0, load=None, mem_total=0, mounts=[], uptime_s=0.0, cpus=[]),
    ),
    AgentView("d-new", "unknown", {}, None, None, None),
    AgentView("e-online-no-sample", "online", {}, "h5", "1.0", None),
]


def _families(text: str) -> dict[str, tuple[str, str, set[tuple[str, frozenset[Any], float]]]]:
    out = {}
    for family in text_string_to_metric_families(text):
        samples = {(s.name, frozenset(s.labels.items()), s.value) for s in family.samples}
        assert family.name not in out, f"{family.name} is not contiguous"
        out[family.name] = (family.documentation, family.type, samples)
    return out


def _old_text(views: list[AgentView]) -> str:
    class Static:
        def collect(self):  # type: ignore[no-untyped-def]
            yield from fleet_families(views)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Static())
    return generate_latest(registry).decode()


def test_the_direct_text_parses_to_the_same_families_and_samples_as_prometheus_client() -> None:
    new = _families(render_fleet(FLEET).text())
    old = _families(_old_text(FLEET))
    assert new == old
    # The fleet above exercises every family, and the odd values went through intact.
    assert set(new) == FLEET_NAMES
    mounts = {dict(labels)["mountpoint"] for _, labels, _ in new["node_filesystem_size_bytes"][2]}
    assert mounts == {"/", f"/mnt/{WEIRD}"}
    notes = {dict(labels).get("note") for _, labels, _ in new["arete_agent_up"][2]}
    assert WEIRD in notes


def test_an_offline_agent_has_only_up_zero_and_info() -> None:
    text = render_fleet([FLEET[0]]).text()
    assert set(_families(text)) == {"arete_agent_up", "arete_agent_info"}
    assert 'arete_agent_up{site="x",agent="b-offline"} 0.0\n' in text


def test_help_and_type_appear_once_per_family_for_many_agents() -> None:
    views = [AgentView(f"a{i}", "online", {}, sample=_sample(1e9)) for i in range(50)]
    text = render_fleet(views).text()
    for name in ("arete_agent_cpu_percent", "arete_agent_cpu_core_percent"):
        assert text.count(f"# TYPE {name} gauge\n") == 1
    assert text.count("arete_agent_cpu_core_percent{") == 150


def test_label_values_and_numbers_are_written_as_the_format_says() -> None:
    assert escape(WEIRD) == 'say \\"hi\\"\\nbye\\\\ and\\\\n not a newline'
    assert escape("plain é") == "plain é"
    assert [number(v) for v in (1, 0.5, float("inf"), float("-inf"))] == [
        "1.0",
        "0.5",
        "+Inf",
        "-Inf",
    ]
    assert number(float("nan")) == "NaN"


def test_a_selection_by_name_keeps_only_those_families() -> None:
    fleet = render_fleet(FLEET)
    text = fleet.text({"node_load1", "arete_maestro_samples_total"})
    assert set(_families(text)) == {"node_load1"}
    assert fleet.body == fleet.text().encode()


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_two_scrapes_within_the_cache_window_render_once() -> None:
    clock, asked = _Clock(), []

    def views() -> list[AgentView]:
        asked.append(clock.now)
        return FLEET

    cache = FleetCache(views, ttl_s=5.0, clock=clock)
    first = cache.get()
    clock.now += 4.9
    assert cache.get() is first
    assert (cache.renders, asked) == (1, [100.0])
    clock.now += 0.2  # 5.1 s after the render: a new one, from new copies
    assert cache.get() is not first
    assert (cache.renders, len(asked)) == (2, 2)


def test_a_cache_of_zero_renders_every_scrape() -> None:
    cache = FleetCache(lambda: FLEET, ttl_s=0.0, clock=_Clock())
    cache.get()
    cache.get()
    assert cache.renders == 2
