"""The ``update`` command end to end: a real broker holding a signed release (retained,
published as the maestro account), a real agent fetching, verifying and handing it over;
the host updater is played by the test (it writes ``state.json`` when ``request.json``
appears). Also ``health.json`` and the status's ``update`` field."""

from __future__ import annotations

import json
import os
import signal
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from arete.payloads import ReplyState, UpdatePhase, UpdateState
from arete.version import __version__
from edge_agent.update_files import UpdateFiles
from tests.fixtures.agent import AgentProc, ReadyAgent, states, wait_status
from tests.fixtures.broker import Broker, run_cli
from tests.fixtures.maestro import MaestroThread
from tests.fixtures.procs import wait_for
from tests.fixtures.releases import (
    KEY,
    NEXT,
    FakeUpdater,
    build_release,
    public_text,
    publish,
    update_env,
    wheel_name,
    wheels,
    write_state,
)

pytestmark = pytest.mark.real

OK = [ReplyState.ACCEPTED, ReplyState.RUNNING, ReplyState.OK]
FAILED = [ReplyState.ACCEPTED, ReplyState.RUNNING, ReplyState.FAILED]


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "release.pub"
    path.write_text(public_text(KEY) + "\n")
    return path


def test_a_good_release_is_handed_over_byte_exact_and_its_progress_shows_in_status(
    ready_agent: ReadyAgent, broker: Broker
) -> None:
    agent, commander = ready_agent(env=update_env())
    release = build_release(KEY, NEXT, wheels(NEXT))
    publish(commander, broker, release)
    updater = FakeUpdater(agent.state_dir)
    try:
        replies = commander.run("update", {"version": NEXT, "health_deadline_s": 60}, timeout=30)
    finally:
        updater.close()
    assert states(replies) == OK, replies[-1].error
    assert replies[-1].result == {
        "state": "handed_over",
        "from_version": __version__,
        "to_version": NEXT,
    }
    spooled = agent.state_dir / "updates" / NEXT
    assert (spooled / "release.json").read_bytes() == release.raw
    assert sorted(p.name for p in spooled.iterdir()) == sorted(["release.json", *release.artifacts])
    for name, data in release.artifacts.items():
        assert (spooled / name).read_bytes() == data
    request = json.loads(updater.requests[0])
    assert request == {
        "version": NEXT,
        "rollback": False,
        "from_version": __version__,
        "command_id": replies[-1].id,
        "health_deadline_s": 60.0,
        "requested_at": pytest.approx(time.time(), abs=60),
    }
    # The updater's progress reaches the retained status within its 2 s poll.
    status = wait_status(
        commander.probe,
        broker.topics,
        agent.agent_id,
        lambda s: s.update is not None and s.update.phase is UpdatePhase.PENDING,
    )
    assert status.update is not None
    assert (status.update.to_version, status.update.command_id) == (NEXT, replies[-1].id)
    files = UpdateFiles(agent.state_dir)
    write_state(files, msgspec.structs.replace(status.update, phase=UpdatePhase.HEALTHY))
    wait_status(
        commander.probe,
        broker.topics,
        agent.agent_id,
        lambda s: s.update is not None and s.update.phase is UpdatePhase.HEALTHY,
    )


def test_every_bad_release_is_refused_with_its_own_code_and_nothing_written(
    ready_agent: ReadyAgent, broker: Broker
) -> None:
    agent, commander = ready_agent(env=update_env())
    base = NEXT.rsplit(".", 1)[0]  # NEXT is <major>.<minor + 1>.0
    cases = {
        "unsigned": build_release(KEY, f"{base}.1", wheels("1"), unsigned=True),
        "bad_signature": build_release(KEY, f"{base}.2", wheels("2"), bad_signature=True),
        "unknown_key": build_release(Ed25519PrivateKey.generate(), f"{base}.3", wheels("3")),
        "expired": build_release(KEY, f"{base}.4", wheels("4"), expires_in_s=-30),
        "downgrade": build_release(KEY, "0.0.5", wheels("5"), min_from_version="0.0.1"),
        "too_old": build_release(KEY, f"{base}.6", wheels("6"), min_from_version=f"{base}.0"),
        "tampered": build_release(KEY, f"{base}.7", wheels("7"), tamper_chunk=(0, 1)),
    }
    for release in cases.values():
        publish(commander, broker, release)
    missing = f"{base}.8"
    codes = {}
    runs = [(code, release.version) for code, release in cases.items()]
    for code, version in [*runs, ("no_release", missing)]:
        replies = commander.run("update", {"version": version}, timeout=30)
        assert states(replies) == FAILED, (code, replies)
        assert replies[-1].error is not None
        codes[code] = replies[-1].error.code
    assert codes == {code: code for code in codes}
    updates = agent.state_dir / "updates"
    assert not updates.exists() or list(updates.iterdir()) == [], "nothing written"


def test_chunks_that_never_come_are_fetch_failed(ready_agent: ReadyAgent, broker: Broker) -> None:
    agent, commander = ready_agent(env=update_env())
    release = build_release(KEY, NEXT, wheels(NEXT))
    release.chunks = release.chunks[:-1]
    publish(commander, broker, release)
    replies = commander.run("update", {"version": NEXT}, timeout=30)
    assert states(replies) == FAILED
    assert replies[-1].error is not None
    assert replies[-1].error.code == "fetch_failed"
    assert not (agent.state_dir / "updates").exists()


def test_an_agent_without_update_enabled_refuses_before_accepting(
    ready_agent: ReadyAgent, broker: Broker
) -> None:
    agent, commander = ready_agent()
    replies = commander.run("update", {"version": NEXT})
    assert states(replies) == [ReplyState.REJECTED]
    assert replies[-1].error is not None
    assert replies[-1].error.code == "not_enabled"
    assert not (agent.state_dir / "updates").exists()


def test_without_a_host_updater_the_agent_says_not_supported_and_takes_it_back(
    ready_agent: ReadyAgent, broker: Broker, key_file: Path
) -> None:
    env = update_env(ARETE_AGENT_UPDATE__RELEASE_KEY_FILE=str(key_file))
    env["ARETE_AGENT_UPDATE__RELEASE_KEYS"] = "[]"  # the key comes from the file
    agent, commander = ready_agent(env=env)
    publish(commander, broker, build_release(KEY, NEXT, wheels(NEXT)))
    replies = commander.run("update", {"version": NEXT}, timeout=30)
    assert states(replies) == FAILED
    assert replies[-1].error is not None
    assert replies[-1].error.code == "not_supported"
    assert "docs/updates.md" in replies[-1].error.message
    updates = agent.state_dir / "updates"
    assert list(updates.iterdir()) == [], "request and release taken back"


def test_health_json_appears_once_samples_are_acked_and_replaces_an_old_one(
    ready_agent: ReadyAgent, broker: Broker, tmp_path: Path
) -> None:
    state_dir = tmp_path / "a1-state"
    state_dir.mkdir()
    stale = {"version": "0.0.1", "pid": 1, "started_at": 1.0, "healthy_at": 2.0}
    (state_dir / "health.json").write_text(json.dumps(stale))
    started = time.time()
    agent, _ = ready_agent()
    health = state_dir / "health.json"

    def fresh() -> bool:
        return health.exists() and json.loads(health.read_text())["pid"] != 1

    wait_for(fresh, 30, "a fresh health.json")
    report = json.loads(health.read_text())
    assert report["version"] == __version__
    assert report["pid"] == agent.proc.popen.pid
    assert report["started_at"] >= started - 1
    # 3 samples at 0.5 s and a heartbeat at 1 s: seconds after start (generous: a busy box).
    assert report["started_at"] <= report["healthy_at"] <= report["started_at"] + 30


def test_an_updater_state_present_at_start_is_in_the_first_online_status(
    ready_agent: ReadyAgent, broker: Broker, tmp_path: Path
) -> None:
    files = UpdateFiles(tmp_path / "a1-state")
    state = UpdateState(
        phase=UpdatePhase.ROLLED_BACK,
        from_version=__version__,
        to_version=NEXT,
        ts=time.time(),
        command_id="c-1",
        reason="no healthy report in 60 s",
    )
    write_state(files, state)
    _, commander = ready_agent()
    status = wait_status(commander.probe, broker.topics, "a1", lambda s: s.update is not None)
    assert status.update == state


def test_busy_while_the_updater_installs_then_a_rollback_is_requested(
    ready_agent: ReadyAgent, broker: Broker, tmp_path: Path
) -> None:
    files = UpdateFiles(tmp_path / "a1-state")
    installing = UpdateState(
        phase=UpdatePhase.INSTALLING,
        from_version="0.0.9",
        to_version=__version__,
        ts=time.time(),
        command_id="c-0",
    )
    write_state(files, installing)
    agent, commander = ready_agent(env=update_env())
    busy = commander.run("update", {"version": NEXT})
    assert states(busy) == [ReplyState.REJECTED]
    assert busy[-1].error is not None
    assert busy[-1].error.code == "busy"
    write_state(files, msgspec.structs.replace(installing, phase=UpdatePhase.HEALTHY))
    updater = FakeUpdater(agent.state_dir)
    try:
        replies = commander.run("update", {"rollback": True, "health_deadline_s": 30})
        wait_for(lambda: bool(updater.requests), 5, "the rollback request")
    finally:
        updater.close()
    assert states(replies) == OK, replies[-1].error
    assert replies[-1].result == {
        "state": "rollback_requested",
        "from_version": __version__,
        "to_version": "0.0.9",
    }
    request = json.loads(updater.requests[0])
    assert (request["version"], request["rollback"]) == (None, True)
    assert (request["command_id"], request["health_deadline_s"]) == (replies[-1].id, 30.0)


def test_a_release_made_with_the_cli_and_published_by_the_maestro_is_handed_over(
    ready_agent: ReadyAgent,
    broker: Broker,
    maestro_thread: Callable[..., MaestroThread],
    tmp_path: Path,
) -> None:
    key = tmp_path / "release.key"
    run_cli("release", "key", "generate", "--out", str(key))
    public = run_cli("release", "key", "public", str(key)).stdout.split()[0]
    wheels_dir = tmp_path / "wheels"
    wheels_dir.mkdir()
    with zipfile.ZipFile(wheels_dir / wheel_name("arete", NEXT), "w") as archive:
        archive.writestr(
            f"arete-{NEXT}.dist-info/METADATA",
            f"Metadata-Version: 2.1\nName: arete\nVersion: {NEXT}\n\n",
        )
    (wheels_dir / wheel_name("msgspec", "0.18.6")).write_bytes(os.urandom(300_000))
    out = tmp_path / "out"
    run_cli(
        "release", "create", "--wheels", str(wheels_dir), "--version", NEXT,
        "--key", str(key), "--min-from", "0.1", "--expires-in", "1d", "--out", str(out),
    )  # fmt: skip
    run_cli(
        "release", "add", str(out / NEXT), "--data-dir", str(broker.data_dir),
        "--public-key", public,
    )  # fmt: skip
    maestro_thread(releases={"public_keys": [public], "scan_interval_s": 1})
    env = update_env(ARETE_AGENT_UPDATE__RELEASE_KEYS=json.dumps([public]))
    agent, commander = ready_agent(env=env)
    updater = FakeUpdater(agent.state_dir)
    try:
        replies = commander.run("update", {"version": NEXT}, timeout=30)
    finally:
        updater.close()
    assert states(replies) == OK, replies[-1].error
    assert replies[-1].result["state"] == "handed_over"
    spooled = agent.state_dir / "updates" / NEXT
    made = out / NEXT
    assert sorted(p.name for p in spooled.iterdir()) == sorted(p.name for p in made.iterdir())
    for path in made.iterdir():
        assert (spooled / path.name).read_bytes() == path.read_bytes(), path.name


def test_an_agent_stopped_mid_fetch_leaves_no_release_subscription_behind(
    ready_agent: ReadyAgent, broker: Broker, start_agent: Callable[..., AgentProc]
) -> None:
    agent, commander = ready_agent(env=update_env(ARETE_AGENT_UPDATE__FETCH_TIMEOUT_S="60"))
    cmd = commander.command("update", {"version": NEXT})
    commander.send(cmd)
    topic = broker.topics.reply(agent.agent_id)
    commander.probe.wait_for_message(lambda m: m.topic == topic and b'"running"' in m.payload, 10)
    time.sleep(0.5)  # subscribed to the manifest, waiting for it
    agent.signal(signal.SIGTERM)
    agent.proc.wait(10)
    # The same agent again: same client id, the broker's persistent session.
    again = start_agent(
        agent.agent_id, env=update_env(), config=agent.config, state_dir=agent.state_dir
    )
    wait_status(commander.probe, broker.topics, agent.agent_id, lambda s: s.ts > time.time() - 5)
    publish(commander, broker, build_release(KEY, NEXT, wheels(NEXT)))
    time.sleep(2.0)
    assert "release message with no update fetching" not in again.output()
