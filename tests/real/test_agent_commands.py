"""The seven commands and every refusal, end to end through a real broker and agent."""

from __future__ import annotations

import base64
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from arete.payloads import AgentState, ReplyState, Sample
from tests.fixtures.agent import AgentProc, ReadyAgent, states, wait_status
from tests.fixtures.broker import Broker
from tests.fixtures.podman import PodmanEngine

OK = [ReplyState.ACCEPTED, ReplyState.RUNNING, ReplyState.OK]
FAILED = [ReplyState.ACCEPTED, ReplyState.RUNNING, ReplyState.FAILED]


def test_metrics_command_returns_a_fresh_sample(ready_agent: ReadyAgent, broker: Broker) -> None:
    _, commander = ready_agent()
    replies = commander.run("metrics")
    assert states(replies) == OK
    sample = msgspec.convert(replies[-1].result, Sample)
    assert 0 <= sample.cpu <= 100
    assert sample.mem_total > 0


def test_shell_command_returns_output(ready_agent: ReadyAgent, broker: Broker) -> None:
    _, commander = ready_agent()
    replies = commander.run("shell", {"argv": ["echo", "hello fleet"]})
    assert states(replies) == OK
    assert replies[-1].result["stdout"] == "hello fleet\n"
    assert replies[-1].result["exit_code"] == 0
    failing = commander.run("shell", {"command": "echo oops >&2; exit 3"})
    assert states(failing) == FAILED
    assert failing[-1].error is not None
    assert failing[-1].error.code == "exit_status"
    assert failing[-1].result["stderr"] == "oops\n"


def test_disabled_shell_is_refused(ready_agent: ReadyAgent, broker: Broker, tmp_path: Path) -> None:
    _, commander = ready_agent(env={"ARETE_AGENT_SHELL__ENABLED": "false"})
    marker = tmp_path / "ran"
    replies = commander.run("shell", {"argv": ["touch", str(marker)]})
    assert states(replies) == [ReplyState.REJECTED], "refused before it is accepted"
    assert replies[-1].error is not None
    assert replies[-1].error.code == "not_allowed"
    assert not marker.exists()


def test_screenshot_command_returns_a_png(
    ready_agent: ReadyAgent, broker: Broker, xvfb_display: str
) -> None:
    _, commander = ready_agent(env={"DISPLAY": xvfb_display})
    replies = commander.run("screenshot", {"monitor": 1}, timeout=30)
    assert states(replies) == OK
    png = base64.b64decode(replies[-1].result["png_b64"])
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert replies[-1].result["bytes"] == len(png)


def test_screenshot_without_a_display_says_so(ready_agent: ReadyAgent, broker: Broker) -> None:
    env = {"DISPLAY": "", "WAYLAND_DISPLAY": ""}
    _, commander = ready_agent(env=env)
    replies = commander.run("screenshot")
    assert states(replies) == FAILED
    assert replies[-1].error is not None
    assert replies[-1].error.code == "no_display"


def test_docker_commands_through_a_real_engine_api(
    ready_agent: ReadyAgent, broker: Broker, podman_engine: PodmanEngine
) -> None:
    _, commander = ready_agent(
        env={"ARETE_AGENT_DOCKER__URL": podman_engine.url},
    )
    listing = commander.run("docker_ps", {"all": True}, timeout=30)
    assert states(listing) == OK
    names = [c["name"] for c in listing[-1].result["containers"]]
    assert podman_engine.container_name in names

    missing = commander.run("docker_restart", {"container": "no-such-container"}, timeout=30)
    assert states(missing) == FAILED
    assert missing[-1].error is not None
    assert missing[-1].error.code == "not_found"

    # A real restart through the agent: the reply is ``ok`` and names a running container
    # that has a new process and a new start time.
    with podman_engine.container(start=True) as name:
        pid_before = podman_engine.inspect(name, "{{.State.Pid}}")
        started_before = podman_engine.inspect(name, "{{.State.StartedAt}}")
        time.sleep(1.1)
        restarted = commander.run("docker_restart", {"container": name}, timeout=60)
        assert states(restarted) == OK, restarted[-1].error
        assert restarted[-1].result["name"] == name
        assert restarted[-1].result["state"] == "running"
        assert podman_engine.inspect(name, "{{.State.Running}}") == "true"
        assert podman_engine.inspect(name, "{{.State.Pid}}") != pid_before
        assert podman_engine.inspect(name, "{{.State.StartedAt}}") != started_before


def test_docker_without_an_engine_says_so(
    ready_agent: ReadyAgent, broker: Broker, tmp_path: Path
) -> None:
    url = f"unix://{tmp_path}/no-engine.sock"
    _, commander = ready_agent(env={"ARETE_AGENT_DOCKER__URL": url})
    replies = commander.run("docker_ps", timeout=30)
    assert states(replies) == FAILED
    assert replies[-1].error is not None
    assert replies[-1].error.code == "docker_unavailable"


def test_restart_command_brings_the_agent_back_with_a_new_epoch(
    ready_agent: ReadyAgent, broker: Broker
) -> None:
    agent, commander = ready_agent()
    before = wait_status(commander.probe, broker.topics, "a1", lambda s: True)
    replies = commander.run("restart")
    assert states(replies) == OK
    wait_status(
        commander.probe,
        broker.topics,
        "a1",
        lambda s: s.reason is not None and "restart" in s.reason,
    )
    back = wait_status(
        commander.probe,
        broker.topics,
        "a1",
        lambda s: s.state is AgentState.ONLINE and s.epoch > before.epoch,
        timeout=20,
    )
    assert back.epoch > before.epoch
    assert agent.proc.alive(), "re-executed in place (under systemd it exits 75 instead)"
    assert states(commander.run("metrics")) == OK


def test_stop_command_stops_the_agent_cleanly(ready_agent: ReadyAgent, broker: Broker) -> None:
    agent, commander = ready_agent()
    assert states(commander.run("stop")) == OK
    assert agent.proc.wait(10) == 64
    final = wait_status(
        commander.probe, broker.topics, "a1", lambda s: s.state is AgentState.OFFLINE
    )
    assert final.reason is not None
    assert "stop" in final.reason


def test_a_command_id_runs_at_most_once_even_across_restarts(
    ready_agent: ReadyAgent,
    start_agent: Callable[..., AgentProc],
    broker: Broker,
    tmp_path: Path,
) -> None:
    agent, commander = ready_agent()
    ledger = tmp_path / "ledger"
    cmd = commander.command("shell", {"command": f"echo ran >> {ledger}"})
    assert states(commander.wait_final(commander.send(cmd))) == OK
    again = commander.wait_final(commander.send(cmd))
    assert states(again) == [ReplyState.REJECTED]
    assert again[-1].error is not None
    assert again[-1].error.code == "duplicate"

    agent.signal(signal.SIGTERM)
    agent.proc.wait(10)
    start_agent("a1", config=agent.config, state_dir=agent.state_dir)
    wait_status(
        commander.probe,
        broker.topics,
        "a1",
        lambda s: s.state is AgentState.ONLINE and s.ts > time.time() - 5,
    )
    after_restart = commander.wait_final(commander.send(cmd))
    assert states(after_restart) == [ReplyState.REJECTED]
    assert ledger.read_text() == "ran\n", "executed exactly once"


def test_expired_unknown_and_malformed_commands_are_refused_with_a_reason(
    ready_agent: ReadyAgent, broker: Broker, tmp_path: Path
) -> None:
    agent, commander = ready_agent()
    marker = tmp_path / "ran"
    # A fresh command first: from it the agent learns that the two clocks agree, so it
    # can tell a command past its lifetime from one sent by a maestro whose clock is off.
    assert states(commander.run("metrics"))[-1] is ReplyState.OK
    expired = commander.command(
        "shell",
        {"argv": ["touch", str(marker)]},
        issued_at=time.time() - 120,
        expires_at=time.time() - 60,
    )
    replies = commander.wait_final(commander.send(expired))
    assert states(replies) == [ReplyState.EXPIRED]
    assert not marker.exists()

    unknown = commander.wait_final(commander.send(commander.command("reboot_everything")))
    assert states(unknown) == [ReplyState.REJECTED]
    assert unknown[-1].error is not None
    assert unknown[-1].error.code == "unknown_command"

    bad_args = commander.wait_final(commander.send(commander.command("shell", {"argv": []})))
    assert bad_args[-1].error is not None
    assert bad_args[-1].error.code == "bad_args"

    garbage = commander.wait_final(commander.send(b"\x00\xffnot json at all"))
    assert states(garbage) == [ReplyState.REJECTED]
    assert garbage[-1].id is None
    assert garbage[-1].error is not None
    assert garbage[-1].error.code == "malformed"
    assert agent.proc.alive()


def test_garbage_on_the_command_topic_never_crashes_the_agent(
    ready_agent: ReadyAgent, broker: Broker
) -> None:
    agent, commander = ready_agent()
    junk = [
        b"",
        b"null",
        b"[]",
        b"{}",
        b'{"id": "x", "name": "shell", "args": "rm -rf /", "issued_at": 1, "expires_at": 2}',
        b'{"id": "' + b"y" * 5000 + b'"}',
        b"[" * 100_000,
        os.urandom(4096),
        b'{"schema": 99, "id": "z", "name": "metrics", "issued_at": 1, "expires_at": 9e18}',
        b'{"id": "w", "name": "metrics", "args": {}, "issued_at": 1e400, "expires_at": -1}',
        b"\xc3\x28" * 100,
    ]
    correlations = [commander.send(payload) for payload in junk]
    for correlation in correlations:
        replies = commander.wait_final(correlation, timeout=10)
        assert replies[-1].state in (ReplyState.REJECTED, ReplyState.EXPIRED)
        assert replies[-1].error is not None
    assert agent.proc.alive()
    assert states(commander.run("metrics")) == OK


def test_a_slow_command_does_not_block_others(ready_agent: ReadyAgent, broker: Broker) -> None:
    _, commander = ready_agent()
    slow = commander.send(commander.command("shell", {"argv": ["sleep", "3"]}))
    started = time.monotonic()
    assert states(commander.run("metrics")) == OK
    assert time.monotonic() - started < 2.5
    assert states(commander.wait_final(slow)) == OK


def test_with_signing_on_only_validly_signed_commands_run(
    ready_agent: ReadyAgent, broker: Broker, tmp_path: Path
) -> None:
    key = Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    env = {"ARETE_AGENT_COMMANDS__PUBLIC_KEY": base64.b64encode(public).decode()}
    _, commander = ready_agent(env=env, key=key)
    marker = tmp_path / "ran"

    signed = commander.sign(commander.command("shell", {"argv": ["touch", str(marker)]}))
    assert states(commander.wait_final(commander.send(signed))) == OK
    marker.unlink()

    replay = commander.wait_final(commander.send(signed))
    assert replay[-1].error is not None
    assert replay[-1].error.code == "duplicate"

    unsigned = commander.command("shell", {"argv": ["touch", str(marker)]})
    refused = commander.wait_final(commander.send(unsigned))
    assert refused[-1].error is not None
    assert refused[-1].error.code == "unsigned"

    forged = commander.sign(
        commander.command("shell", {"argv": ["touch", str(marker)]}),
        key=Ed25519PrivateKey.generate(),
    )
    bad = commander.wait_final(commander.send(forged))
    assert bad[-1].error is not None
    assert bad[-1].error.code == "bad_signature"
    assert not Path(marker).exists(), "no refused command ran"
