"""A handler that blocks never stops the agent; two copies of one agent cannot share state.

- A hung X server (a process that holds the X socket and never answers): screenshots in a
  row time out or are refused ``busy``, while samples, heartbeats and the ``metrics``
  command go on, and SIGTERM still ends the agent within 5 s.
- A second agent process on the state directory of a running one is refused at start
  (exit status 2): the two would share one seq counter and lose samples as duplicates.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from arete.payloads import ReplyState, decode_heartbeat, decode_metrics
from tests.faults.conftest import Reliability
from tests.fixtures.agent import AgentProc, Commander, ReadyAgent, states
from tests.fixtures.broker import Broker
from tests.fixtures.procs import Proc, wait_for

X11_SOCKETS = Path("/tmp/.X11-unix")
# Holds the X socket open and never accepts: a client's connect completes in the kernel's
# backlog (or blocks once that is full), and its wait for the server's greeting never ends.
HUNG_X = """
import socket, sys, time
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind(sys.argv[1])
server.listen(64)
print("listening", flush=True)
while True:
    time.sleep(3600)
"""


@pytest.fixture
def hung_display(procs: Callable[..., Proc]) -> Iterator[str]:
    """DISPLAY (":N") of an X socket whose server never answers."""
    X11_SOCKETS.mkdir(mode=0o1777, exist_ok=True)
    number = 600 + os.getpid() % 200
    while (X11_SOCKETS / f"X{number}").exists() or Path(f"/tmp/.X{number}-lock").exists():
        number += 1
    path = X11_SOCKETS / f"X{number}"
    proc = procs([sys.executable, "-c", HUNG_X, str(path)], f"hung-x{number}")
    wait_for(lambda: "listening" in proc.output(), 10, "the hung X server")
    yield f":{number}"
    proc.stop()
    path.unlink(missing_ok=True)


def seqs_seen(commander: Commander, broker: Broker, agent_id: str) -> list[int]:
    topic = broker.topics.metrics(agent_id)
    found: list[int] = []
    for message in commander.probe.messages:
        if message.topic == topic:
            metrics = decode_metrics(message.payload)
            found.extend(sample.seq for sample in metrics.samples)
    return found


def heartbeats_seen(commander: Commander, broker: Broker, agent_id: str) -> int:
    topic = broker.topics.heartbeat(agent_id)
    messages = commander.probe.messages
    return sum(1 for m in messages if m.topic == topic and decode_heartbeat(m.payload).seq >= 0)


def test_hung_x_server_never_stops_sampling_heartbeats_commands_or_sigterm(
    ready_agent: ReadyAgent, broker: Broker, hung_display: str, reliability: Reliability
) -> None:
    agent, commander = ready_agent("a1", env={"DISPLAY": hung_display})
    commander.probe.subscribe(broker.topics.metrics("a1"), qos=1)
    commander.probe.subscribe(broker.topics.heartbeat("a1"), qos=0)
    time.sleep(1.0)

    # Eight screenshots in a row against a display that never answers.
    shots = [commander.send(commander.command("screenshot", ttl=60)) for _ in range(8)]
    first = [commander.wait_final(c, 5) if i >= 2 else [] for i, c in enumerate(shots)]
    busy = [replies for replies in first if replies]
    assert len(busy) == 6, "two run at once, the other six are refused at once"
    for replies in busy:
        assert states(replies) == [ReplyState.REJECTED]
        assert replies[-1].error is not None
        assert replies[-1].error.code == "busy"

    # While two captures hang: samples, heartbeats and the metrics command go on.
    seqs_before, beats_before = (
        len(seqs_seen(commander, broker, "a1")),
        heartbeats_seen(commander, broker, "a1"),
    )
    started = time.monotonic()
    metrics = commander.run("metrics", timeout=5)
    answered_s = time.monotonic() - started
    assert states(metrics)[-1] is ReplyState.OK
    time.sleep(4.0)
    # 0.5 s interval and 1 s heartbeat: 8 samples and 4 beats due in those 4 s at least.
    assert len(seqs_seen(commander, broker, "a1")) >= seqs_before + 5
    assert heartbeats_seen(commander, broker, "a1") >= beats_before + 2

    # The two hung captures end as timeouts and leave no process behind.
    for correlation in shots[:2]:
        replies = commander.wait_final(correlation, 25)
        assert states(replies) == [ReplyState.ACCEPTED, ReplyState.RUNNING, ReplyState.FAILED]
        assert replies[-1].error is not None
        assert replies[-1].error.code == "timeout"
        assert "did not answer" in replies[-1].error.message
    wait_for(lambda: not psutil.Process(agent.proc.pid).children(), 5, "capture processes gone")

    # A screenshot hanging right now does not hold up SIGTERM.
    commander.send(commander.command("screenshot", ttl=60))
    commander.probe.wait_for_message(
        lambda m: m.topic == broker.topics.reply("a1") and b'"running"' in m.payload, 5
    )
    children = psutil.Process(agent.proc.pid).children()
    stop_at = time.monotonic()
    agent.signal(signal.SIGTERM)
    code = agent.proc.wait(10)
    stop_s = time.monotonic() - stop_at
    assert code == 0
    assert stop_s < 5.0
    assert not any(child.is_running() and child.status() != "zombie" for child in children)

    seqs = seqs_seen(commander, broker, "a1")
    unique = sorted(set(seqs))
    gaps = unique[-1] - unique[0] + 1 - len(unique)
    duplicates = len(seqs) - len(set(seqs))
    assert gaps == 0
    assert duplicates == 0
    reliability.record(
        "hung X server: 8 screenshots in a row, then SIGTERM during a hung capture",
        detection_s=None,
        lost=gaps,
        duplicates=duplicates,
        notes=(
            f"2 captures timed out (child killed), 6 refused busy; metrics command "
            f"answered in {answered_s:.2f} s; samples and heartbeats kept flowing; "
            f"SIGTERM -> exit in {stop_s:.2f} s"
        ),
    )


def test_docker_calls_blocked_in_threads_hold_up_neither_commands_nor_sigterm(
    ready_agent: ReadyAgent,
    broker: Broker,
    procs: Callable[..., Proc],
    tmp_path: Path,
    reliability: Reliability,
) -> None:
    # An engine socket that never answers, and a client timeout of 10 minutes: each
    # docker call blocks its thread for good (Python cannot stop a thread).
    socket_path = tmp_path / "hung-docker.sock"
    hung = procs([sys.executable, "-c", HUNG_X, str(socket_path)], "hung-docker")
    wait_for(lambda: "listening" in hung.output(), 10, "the hung engine socket")
    env = {
        "ARETE_AGENT_DOCKER__URL": f"unix://{socket_path}",
        "ARETE_AGENT_DOCKER__TIMEOUT_S": "600",
    }
    agent, commander = ready_agent("a1", env=env)
    commander.probe.subscribe(broker.topics.metrics("a1"), qos=1)
    # More than the 4 command slots: 4 block in their threads, 2 wait for a slot.
    calls = [commander.send(commander.command("docker_ps", ttl=60)) for _ in range(6)]
    time.sleep(2.0)
    running = [states(commander.replies(c)) for c in calls]
    assert running.count([ReplyState.ACCEPTED, ReplyState.RUNNING]) == 4, running
    assert running.count([ReplyState.ACCEPTED]) == 2, running
    # One whose lifetime runs out while it waits for a slot never runs late: failed, busy.
    short = commander.wait_final(commander.send(commander.command("docker_ps", ttl=3)), 8)
    assert states(short) == [ReplyState.ACCEPTED, ReplyState.FAILED]
    assert short[-1].error is not None
    assert short[-1].error.code == "busy"
    seqs_before = len(seqs_seen(commander, broker, "a1"))
    metrics = commander.run("metrics", timeout=5)
    assert states(metrics)[-1] is ReplyState.OK
    time.sleep(2.0)
    assert len(seqs_seen(commander, broker, "a1")) >= seqs_before + 4

    stop_at = time.monotonic()
    agent.signal(signal.SIGTERM)
    code = agent.proc.wait(10)
    stop_s = time.monotonic() - stop_at
    assert code == 0
    assert stop_s < 5.0
    reliability.record(
        "6 docker commands blocked for good on an engine that never answers, then SIGTERM",
        notes=f"metrics ok and samples flowing meanwhile; SIGTERM -> exit in {stop_s:.2f} s",
    )


def test_a_second_agent_on_the_same_state_dir_is_refused_at_start(
    start_agent: Callable[..., AgentProc],
    ready_agent: ReadyAgent,
    broker: Broker,
    reliability: Reliability,
) -> None:
    first, commander = ready_agent("a1")
    commander.probe.subscribe(broker.topics.metrics("a1"), qos=1)
    time.sleep(1.0)
    started = time.monotonic()
    second = start_agent("a1", config=first.config, state_dir=first.state_dir)
    code = second.proc.wait(15)
    refused_s = time.monotonic() - started
    assert code == 2, "a configuration-class error: systemd does not restart it"
    assert "already uses the state directory" in second.output()
    assert f"pid {first.proc.pid}" in second.output()

    time.sleep(2.0)  # the first one is untouched: samples keep coming, none twice
    assert first.proc.alive()
    seqs = seqs_seen(commander, broker, "a1")
    assert len(seqs) >= 4
    assert len(seqs) == len(set(seqs))
    assert sorted(seqs) == list(range(min(seqs), max(seqs) + 1))
    reliability.record(
        "second agent process started on a running agent's state dir",
        detection_s=refused_s,
        lost=0,
        duplicates=len(seqs) - len(set(seqs)),
        notes="refused at start with exit status 2 (names the running pid); first unaffected",
    )


def test_one_identity_used_from_two_machines_is_named_in_the_log_and_backs_off(
    start_agent: Callable[..., AgentProc],
    commander_for: Callable[..., Commander],
    broker: Broker,
    tmp_path: Path,
    reliability: Reliability,
) -> None:
    # The same config on two machines: two state directories, one client id.
    commander = commander_for("a1")
    commander.probe.subscribe(broker.topics.status("a1"))
    env = {"ARETE_AGENT_MQTT__RECONNECT_MAX_S": "3"}
    first = start_agent("a1", env=env)
    second = start_agent("a1", env=env, config=first.config, state_dir=tmp_path / "machine-2")
    started = time.monotonic()

    def named() -> bool:
        text = first.output() + second.output()
        return "another client uses this agent's identity" in text

    wait_for(named, 40, "the log line naming the shared identity")
    detected_s = time.monotonic() - started
    # From then on each copy reconnects at most every reconnect_max_s (3 s).
    status_topic = broker.topics.status("a1")
    before = sum(1 for m in commander.probe.messages if m.topic == status_topic)
    time.sleep(12.0)
    onlines = sum(1 for m in commander.probe.messages if m.topic == status_topic) - before
    assert onlines <= 2 * (12 // 3 + 1) * 2  # online + Will per connection, two copies
    assert first.proc.alive()
    assert second.proc.alive()
    reliability.record(
        "one agent identity used from two machines (Mosquitto closes without code 142)",
        detection_s=detected_s,
        notes=f"logged 'another client uses this agent's identity'; {onlines} status "
        "messages in 12 s afterwards (reconnects only every reconnect_max_s)",
    )
