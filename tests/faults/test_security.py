"""Client-id takeover against a real fleet: a real broker with Areté's client-id plugin,
a real agent, a real maestro paging a local Discord-API server.

Before: any account, the read-only viewer included, could connect with an agent's client
id (``arete-agent-<id>``) or the maestro's (``maestro-main``) and knock it off the broker
again and again; commands timed out meanwhile and the viewer drained the maestro's
queued session. Now each account may use only its own ids (``<username>`` or
``<username>:...``): every attempt is refused at CONNECT and the victims never notice.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable

from tests.faults.conftest import Reliability
from tests.faults.test_true_pages import firing, notify_to, seen_states
from tests.fixtures.agent import AgentProc
from tests.fixtures.broker import Broker
from tests.fixtures.chat_servers import FakeDiscord, FakeTelegram
from tests.fixtures.maestro import MaestroThread
from tests.fixtures.mqtt import NOT_AUTHORIZED, ConnectRefused, MqttProbe
from tests.fixtures.procs import wait_for

ATTACK_S = 10.0
SEQS = "SELECT s.seq FROM samples s JOIN agents a ON a.id = s.agent_id WHERE a.name = ?"


def stored_seqs(broker: Broker, agent_id: str) -> list[int]:
    db = broker.data_dir / "maestro" / "main.db"
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return sorted(row[0] for row in conn.execute(SEQS, (agent_id,)))
    finally:
        conn.close()


def test_the_viewer_and_another_agent_cannot_take_over_an_agents_or_the_maestros_id(  # noqa: PLR0917 - fixtures
    broker: Broker,
    mqtt: Callable[..., MqttProbe],
    start_agent: Callable[..., AgentProc],
    maestro_thread: Callable[..., MaestroThread],
    fake_telegram: FakeTelegram,
    fake_discord: FakeDiscord,
    reliability: Reliability,
) -> None:
    maestro = maestro_thread(
        notify=notify_to(fake_telegram, fake_discord), alerts={"group_wait_s": 0.3}
    )
    agent = start_agent("a1")
    broker.add_agent("a2")
    maestro.wait_state("a1", "online", timeout=15)
    states = seen_states(maestro)
    link_drops = maestro.sync(lambda m: m.link.disconnects)
    wait_for(lambda: len(stored_seqs(broker, "a1")) >= 2, 15, "a1's first samples stored")
    first_seq = max(stored_seqs(broker, "a1"))

    # The attack: again and again, with every id that belongs to someone else.
    attackers = [("viewer", broker.viewer_password), ("a2", broker.password_of("a2"))]
    victims = ["a1", "maestro:main", "a1:agent", "maestro:main:retire-check"]
    refused = attempts = 0
    began = time.monotonic()
    while time.monotonic() - began < ATTACK_S:
        for username, password in attackers:
            for victim in victims:
                attempts += 1
                try:
                    mqtt(username, password, client_id=victim, persistent=True).close()
                except ConnectRefused as exc:
                    refused += exc.reason_code == NOT_AUTHORIZED
        time.sleep(0.2)
    last_seq_during = max(stored_seqs(broker, "a1"))

    # A command round trip still works through the maestro's own connection.
    result = maestro.call(maestro.app.commands.send("a1", "metrics", {}, actor="user:test"))
    done = maestro.call(maestro.app.commands.wait(result.id, timeout_s=15))
    assert done.state == "ok", done

    wait_for(lambda: max(stored_seqs(broker, "a1")) > last_seq_during, 10, "samples go on")
    seqs = [s for s in stored_seqs(broker, "a1") if first_seq <= s <= last_seq_during]
    lost = (last_seq_during - first_seq + 1) - len(set(seqs))
    duplicates = len(seqs) - len(set(seqs))
    pages_sent = len(firing(fake_discord))

    assert refused == attempts, f"{attempts - refused} of {attempts} takeovers got through"
    assert maestro.sync(lambda m: m.link.disconnects) == link_drops, "the maestro was knocked off"
    assert states().get("a1", set()) <= {"online"}, states()
    assert agent.proc.alive()
    reliability.record(
        "viewer and another agent try to take over an agent's and the maestro's client ids",
        detection_s=None,
        lost=lost,
        duplicates=duplicates,
        pages_expected=0,
        pages_sent=pages_sent,
        notes=f"{attempts} takeover attempts in {ATTACK_S:.0f} s, all refused at CONNECT "
        "(reason 135); the agent and the maestro stayed connected",
    )
    assert (lost, duplicates, pages_sent) == (0, 0, 0)
