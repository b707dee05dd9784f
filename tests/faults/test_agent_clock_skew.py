"""Commands under a wrong agent clock (libfaketime on the real agent process).

Within the documented bound (300 s) commands run as usual, their expiry judged on the
maestro's clock; beyond it they are refused ``clock_skew`` (never a misleading
``expired``), and the same command sent again is judged again, not ``duplicate``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from arete.payloads import ReplyState
from tests.faults.conftest import Reliability
from tests.fixtures.agent import ReadyAgent, states
from tests.fixtures.broker import Broker
from tests.fixtures.faults import faketime_env
from tests.fixtures.maestro import MaestroProc

METRICS_LIFETIME_S = 10.0  # arete.commands.DEFAULT_TIMEOUT_S["metrics"], what the maestro sends


@pytest.mark.parametrize("offset", ["+30s", "-45s"])
def test_a_metrics_command_runs_on_an_agent_whose_clock_is_off_within_the_bound(
    ready_agent: ReadyAgent, offset: str, reliability: Reliability
) -> None:
    _, commander = ready_agent("a1", env=faketime_env(offset))
    started = time.monotonic()
    replies = commander.run("metrics", ttl=METRICS_LIFETIME_S, timeout=10)
    answered_s = time.monotonic() - started
    assert states(replies) == [ReplyState.ACCEPTED, ReplyState.RUNNING, ReplyState.OK]
    # The sample itself carries the agent's (wrong) clock, as documented.
    sample_ts = replies[-1].result["ts"]
    assert abs(sample_ts - time.time() - int(offset[:-1])) < 5
    # A second one, now that the agent has an estimate of the offset from the first.
    again = commander.run("metrics", ttl=METRICS_LIFETIME_S, timeout=10)
    assert states(again)[-1] is ReplyState.OK
    reliability.record(
        f"agent clock {offset}: metrics command (10 s lifetime)",
        detection_s=None,
        notes=f"ok in {answered_s:.2f} s (was refused as expired before)",
    )


@pytest.mark.parametrize("offset", ["+2h", "-2h"])
def test_beyond_the_bound_commands_are_refused_as_clock_skew_every_time(
    ready_agent: ReadyAgent, offset: str, reliability: Reliability
) -> None:
    _, commander = ready_agent("a1", env=faketime_env(offset))
    cmd = commander.command("metrics", ttl=METRICS_LIFETIME_S)
    first = commander.wait_final(commander.send(cmd), 10)
    assert states(first) == [ReplyState.REJECTED]
    assert first[-1].error is not None
    assert first[-1].error.code == "clock_skew"
    way = "ahead of" if offset.startswith("+") else "behind"
    assert way in first[-1].error.message
    # Refusals are not recorded (docs/topics.md, Admission): the same id is judged again.
    second = commander.wait_final(commander.send(cmd), 10)
    assert states(second) == [ReplyState.REJECTED]
    assert second[-1].error is not None
    assert second[-1].error.code == "clock_skew"
    reliability.record(
        f"agent clock {offset}: metrics command",
        detection_s=None,
        notes="rejected clock_skew (not expired); resend of the same id: clock_skew again",
    )


def test_commands_keep_working_when_the_agents_clock_steps_while_it_runs(
    start_maestro: Callable[..., MaestroProc],
    ready_agent: ReadyAgent,
    broker: Broker,
    tmp_path: Path,
    reliability: Reliability,
) -> None:
    # A real maestro sends `stored` acknowledgements (stamped with its clock) to the agent.
    start_maestro()
    clock_file = tmp_path / "agent-clock"
    _, commander = ready_agent("a1", env=faketime_env("+0", timestamp_file=clock_file))
    commander.probe.subscribe(broker.topics.stored("a1"), qos=0)
    commander.probe.wait_for_message(lambda m: m.topic == broker.topics.stored("a1"), 15)
    assert states(commander.run("metrics", ttl=METRICS_LIFETIME_S))[-1] is ReplyState.OK

    clock_file.write_text("+30s\n")  # NTP steps the agent's clock 30 s forward
    time.sleep(3.0)  # libfaketime rereads the file every second; acks keep coming
    started = time.monotonic()
    after = commander.run("metrics", ttl=METRICS_LIFETIME_S, timeout=10)
    assert states(after) == [ReplyState.ACCEPTED, ReplyState.RUNNING, ReplyState.OK]
    assert abs(after[-1].result["ts"] - time.time() - 30) < 5, "the clock did step"
    reliability.record(
        "agent clock steps +30 s while it runs (real maestro acknowledging samples)",
        detection_s=None,
        notes=f"metrics command (10 s lifetime) ok {time.monotonic() - started:.2f} s after "
        "sending; the offset estimate followed the step at the next acknowledgement",
    )
