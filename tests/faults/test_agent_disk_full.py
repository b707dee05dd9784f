"""The agent's state disk fills up: live metrics go on, losses are counted, it says so.

A real 2 MB tmpfs holds the agent's state dir; the broker is stopped until the outbox has
filled it, then started again. A viewer with a persistent session sees every message.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

from arete.payloads import decode_metrics, decode_status
from edge_agent.state import JOURNAL_LIMIT_BYTES
from tests.faults.conftest import Reliability
from tests.fixtures.agent import AgentProc
from tests.fixtures.broker import Broker
from tests.fixtures.faults import SmallDisk
from tests.fixtures.maestro import MaestroProc
from tests.fixtures.mqtt import MqttProbe
from tests.fixtures.procs import wait_for

INTERVAL_S = 0.1
IN_FLIGHT_MAX = 30  # edge_agent.agent.LIVE_WINDOW: live samples awaiting confirmation
SEQS = "SELECT s.seq FROM samples s JOIN agents a ON a.id = s.agent_id WHERE a.name = ?"


class JournalWatch:
    """Polls the size of the agent's SQLite journal (the -wal file) in a thread."""

    def __init__(self, state_dir: Path) -> None:
        self.wal = state_dir / "agent-state.db-wal"
        self.biggest = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            with contextlib.suppress(FileNotFoundError):
                self.biggest = max(self.biggest, self.wal.stat().st_size)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(2)
        return self.biggest


def settled(
    read: Callable[[], list[int]], quiet_s: float = 2.0, limit_s: float = 20.0
) -> list[int]:
    """``read()`` once it has stopped changing for ``quiet_s``."""
    deadline = time.monotonic() + limit_s
    value, since = read(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = read()
        if len(now) != len(value):
            value, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            break
    return value


def log_lines(agent: AgentProc, message: str) -> list[dict[str, object]]:
    found = []
    for line in agent.output().splitlines():
        if line.startswith("{") and message in line:
            found.append(json.loads(line))
    return found


def test_full_state_disk_keeps_live_metrics_and_counts_every_lost_sample(  # noqa: PLR0917 - fixtures
    broker: Broker,
    mqtt: Callable[..., MqttProbe],
    start_agent: Callable[..., AgentProc],
    start_maestro: Callable[..., MaestroProc],
    small_disk: Callable[..., SmallDisk],
    reliability: Reliability,
) -> None:
    maestro = start_maestro()
    metrics_topic, status_topic = broker.topics.metrics("a1"), broker.topics.status("a1")
    viewer = mqtt("maestro", broker.maestro_password, client_id="maestro:disk", persistent=True)
    viewer.subscribe(metrics_topic, qos=1)
    viewer.subscribe(status_topic, qos=1)
    disk = small_disk("2m", name="agent-state")
    agent = start_agent("a1", state_dir=disk.path, env={"ARETE_AGENT_INTERVAL_S": str(INTERVAL_S)})
    journal = JournalWatch(disk.path)
    viewer.wait_for_message(lambda m: m.topic == metrics_topic, 15)
    # The fault starts once the agent relies on the maestro's confirmations (until its
    # first one, a broker PUBACK is all it waits for: that startup window is not this
    # scenario's subject).
    wait_for(
        lambda: bool(log_lines(agent, "the maestro confirms stored samples")),
        15,
        "the agent waits for the maestro's confirmations",
    )
    disk.fill(leave=96 * 1024)  # the rest of the disk is taken by someone else

    broker.stop()
    wait_for(lambda: bool(log_lines(agent, "state disk full")), 45, "the outbox fills the disk")
    full_at = time.monotonic()
    time.sleep(1.5)  # disconnected and full: these samples cannot be kept
    broker.start()
    up_at = time.time()

    def status_says_full() -> bool:
        return any(
            m.topic == status_topic and m.payload and decode_status(m.payload).disk_full
            for m in viewer.messages
        )

    wait_for(status_says_full, 15, "the status reports the full disk")
    detection_s = time.monotonic() - full_at
    time.sleep(6.0)  # connected with the disk full: live metrics must flow

    disk.free()  # space comes back: the agent notices by itself and says so

    def status_says_room_again() -> bool:
        said = [decode_status(m.payload) for m in viewer.messages if m.topic == status_topic]
        full = [i for i, status in enumerate(said) if status.disk_full]
        return bool(full) and any(not status.disk_full for status in said[full[0] :])

    wait_for(status_says_room_again, 15, "the status reports room again")
    assert log_lines(agent, "state disk has room again")

    agent.signal(signal.SIGTERM)
    agent.proc.wait(15)
    journal_max = journal.stop()
    messages = [decode_metrics(m.payload) for m in viewer.messages if m.topic == metrics_topic]
    dropped = max(m.dropped for m in messages)
    last = max(s.seq for m in messages for s in m.samples)

    # Live metrics never stopped while connected: from a second after reconnecting,
    # every live sample came, in order, at the sampling pace.
    live_after = [s for m in messages if not m.replay for s in m.samples if s.ts > up_at + 1.0]
    assert len(live_after) >= int(5.0 / INTERVAL_S) // 2, "live samples flowed after reconnect"
    gaps = [b.ts - a.ts for a, b in itertools.pairwise(live_after)]
    assert max(gaps) < 1.0, f"live metrics paused for {max(gaps):.1f} s while connected"
    assert [s.seq for s in live_after] == sorted(s.seq for s in live_after)

    # What the user keeps is what the maestro stored. Every sample it never got is
    # counted in dropped: no silent loss. The count may exceed the losses by samples that
    # were in flight, unconfirmed, when the full outbox refused to take them back (they
    # are counted at once; some got through).
    stored = settled(lambda: [row[0] for row in maestro.query(SEQS, ("a1",))])
    never = sorted(set(range(1, last + 1)) - set(stored))
    duplicates = len(stored) - len(set(stored))
    assert duplicates == 0
    assert never, "the disk was full while disconnected: some samples could not be kept"
    assert dropped >= len(never), f"dropped={dropped} but {len(never)} samples never stored"
    assert dropped - len(never) <= IN_FLIGHT_MAX, f"dropped={dropped}, lost {len(never)}"

    assert journal_max <= JOURNAL_LIMIT_BYTES + 128 * 1024, f"journal grew to {journal_max} B"
    said_full = log_lines(agent, "state disk full")
    assert len(said_full) <= 2, f"logged {len(said_full)} times in under a minute"
    assert not log_lines(agent, "cannot number sample")

    reliability.record(
        "agent state disk full (2 MB tmpfs), broker stopped until the outbox filled it",
        detection_s=detection_s,
        lost=max(0, len(never) - dropped),
        duplicates=duplicates,
        notes=(
            f"{len(never)} samples could not be kept (full and disconnected), counted in "
            f"dropped ({dropped}, in-flight ones included); live metrics at most "
            f"{max(gaps):.2f} s apart once reconnected; "
            f"journal at most {journal_max // 1024} KiB; status disk_full=true"
        ),
    )


def test_an_agent_started_on_a_full_disk_sends_live_metrics_and_says_so(
    broker: Broker,
    mqtt: Callable[..., MqttProbe],
    start_agent: Callable[..., AgentProc],
    small_disk: Callable[..., SmallDisk],
    reliability: Reliability,
) -> None:
    metrics_topic, status_topic = broker.topics.metrics("a1"), broker.topics.status("a1")
    viewer = mqtt("maestro", broker.maestro_password)
    viewer.subscribe(metrics_topic, qos=1)
    viewer.subscribe(status_topic, qos=1)
    disk = small_disk("2m", name="agent-state")
    env = {"ARETE_AGENT_INTERVAL_S": str(INTERVAL_S)}
    first = start_agent("a1", state_dir=disk.path, env=env)
    viewer.wait_for_message(lambda m: m.topic == metrics_topic, 15)
    first.signal(signal.SIGTERM)
    first.proc.wait(15)
    last_before = max(
        s.seq
        for m in viewer.messages
        if m.topic == metrics_topic
        for s in decode_metrics(m.payload).samples
    )
    disk.fill(leave=0)  # not a byte left, the agent's own reserve aside
    assert disk.free_bytes() < 64 * 1024

    began = time.monotonic()
    agent = start_agent("a1", state_dir=disk.path, env=env, config=first.config)

    def live_after_restart() -> list[int]:
        return [
            s.seq
            for m in viewer.messages
            if m.topic == metrics_topic
            for s in decode_metrics(m.payload).samples
            if s.seq > last_before
        ]

    wait_for(lambda: len(live_after_restart()) >= 20, 20, "live metrics from the full disk")
    detection_s = time.monotonic() - began
    seqs = live_after_restart()
    assert seqs == sorted(set(seqs)), "in order, none twice"
    statuses = [decode_status(m.payload) for m in viewer.messages if m.topic == status_topic]
    assert statuses[-1].disk_full, "the status says the disk is full"
    assert agent.proc.alive()

    reliability.record(
        "agent started on a full state disk (2 MB tmpfs, 0 bytes free)",
        detection_s=detection_s,
        lost=0,
        duplicates=len(seqs) - len(set(seqs)),
        notes="it opens its state with its 256 KiB reserve, sends live, status disk_full=true",
    )
