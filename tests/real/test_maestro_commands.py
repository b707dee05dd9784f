"""Commands through a whole maestro (its link, signing key and store) to real agents."""

from __future__ import annotations

import signal
import tomllib
from collections.abc import Callable

from maestro.commands import CommandState
from tests.fixtures.agent import AgentProc
from tests.fixtures.broker import Broker, run_cli
from tests.fixtures.maestro import MaestroThread
from tests.fixtures.procs import wait_for


def test_signed_round_trip_and_a_silent_agent_times_out(
    broker: Broker,
    start_agent: Callable[..., AgentProc],
    maestro_thread: Callable[..., MaestroThread],
) -> None:
    run_cli("keys", "create", "--data-dir", str(broker.data_dir))
    config = broker.add_agent("a1")
    public_key = tomllib.loads(config.read_text())["commands"]["public_key"]
    assert public_key, "agents add embeds the maestro's public key"
    agent = start_agent("a1", config=config)
    maestro = maestro_thread()
    maestro.wait_state("a1", "online", timeout=10)

    done = maestro.call(maestro.app.commands.run("a1", "metrics", {}, timeout_s=10, actor="test"))
    assert done.state is CommandState.OK
    assert done.result is not None
    history = maestro.call(maestro.app.commands.history(done.id))
    assert [str(e.state) for e in history][:2] == ["queued", "sent"]
    assert str(history[-1].state) == "ok"

    agent.signal(signal.SIGSTOP)
    try:
        silent = maestro.call(
            maestro.app.commands.run("a1", "metrics", {}, timeout_s=1.5, actor="test")
        )
    finally:
        agent.signal(signal.SIGCONT)
    assert silent.state is CommandState.TIMED_OUT


def test_every_command_is_recorded_with_who_sent_it(
    broker: Broker,
    start_agent: Callable[..., AgentProc],
    maestro_thread: Callable[..., MaestroThread],
) -> None:
    start_agent("a1")
    maestro = maestro_thread()
    maestro.wait_state("a1", "online", timeout=10)
    commands = maestro.app.commands
    record = maestro.call(commands.send("a1", "metrics", {}, actor="alice"))
    wait_for(lambda: maestro.call(commands.get(record.id)).state is CommandState.OK, 10, "ok")
    listed = maestro.call(commands.list(agent="a1"))
    assert [(r.id, r.actor) for r in listed] == [(record.id, "alice")]
