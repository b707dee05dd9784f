"""The test session's clean-up of port forwards left by killed sessions (tests/fixtures)."""

from __future__ import annotations

from tests.fixtures.stale_ports import stale_rules

DEAD = "6506adab81512c3905438ebe342a38a2f12677dab28a0a665107975fc06647f8"
LIVE = "0aba062b802f097a88f9a8b01a887e8446248db887d9f0e5578d3c2ccfa63d14"
CHAIN = "NETAVARK-DN-1D8721804F16F"


def rules(container_id: str, port: int, address: str) -> list[str]:
    return [
        f"-A {CHAIN} -s 10.88.0.0/16 -d 127.0.0.1/32 -p tcp -m tcp --dport {port} "
        "-j NETAVARK-HOSTPORT-SETMARK",
        f"-A {CHAIN} -d 127.0.0.1/32 -p tcp -m tcp --dport {port} "
        f"-j DNAT --to-destination {address}:8080",
        f"-A NETAVARK-HOSTPORT-DNAT -p tcp -m tcp --dport {port} -m comment "
        f'--comment "dnat name: podman id: {container_id}" -j {CHAIN}',
    ]


SAVED = "\n".join(
    [
        "*nat",
        ":NETAVARK-HOSTPORT-DNAT - [0:0]",
        *rules(DEAD, 37295, "10.88.0.61"),
        *rules(LIVE, 35037, "10.88.0.9"),
        f"-A {CHAIN} -d 127.0.0.1/32 -p tcp -m tcp --dport 372950 -j DNAT",  # another port
        "COMMIT",
    ]
)


def test_a_dead_containers_forward_goes_with_its_port_rules_and_a_live_one_stays() -> None:
    stale = stale_rules(SAVED, alive={LIVE})
    assert [(rule.container_id, rule.port) for rule in stale] == [(DEAD, 37295)]
    deleted = stale[0].rules
    assert deleted[0].startswith("-A NETAVARK-HOSTPORT-DNAT")  # the entry first
    assert sorted(deleted[1:]) == sorted(rules(DEAD, 37295, "10.88.0.61")[:2])
    assert not any("35037" in line or "372950" in line for line in deleted)


def test_a_port_forwarded_again_by_a_live_container_keeps_its_chain_rules() -> None:
    saved = SAVED + "\n" + "\n".join(rules(LIVE, 37295, "10.88.0.70"))
    stale = stale_rules(saved, alive={LIVE})
    assert [rule.rules for rule in stale] == [(rules(DEAD, 37295, "10.88.0.61")[2],)]


def test_nothing_is_stale_when_every_container_runs() -> None:
    assert stale_rules(SAVED, alive={LIVE, DEAD}) == []
