"""The broker's security, against the real Mosquitto started by ``arete broker run``.

Denied publishes are observed as MQTT 5 PUBACK reason 135 (Not authorized); denied
reads as messages that never arrive while a later, allowed message does.
"""

from __future__ import annotations

import re
import shutil
import signal
import ssl
import stat
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from arete.topics import BROKER_DROPPED, Kind, TermDirection, Topics
from edge_agent.settings import load_settings
from mosquitto.tls import write_ca
from tests.fixtures.broker import (
    START_TIMEOUT_S,
    Broker,
    chown_tree,
    distinct_free_ports,
    make_broker,
    run_cli,
)
from tests.fixtures.mqtt import (
    BAD_USERNAME_OR_PASSWORD,
    NOT_AUTHORIZED,
    ConnectRefused,
    Message,
    MqttProbe,
    accepted,
)
from tests.fixtures.procs import ARETE, Proc, port_open, wait_for
from tests.pure.test_clientids import CASES as CLIENT_ID_CASES

Mqtt = Callable[..., MqttProbe]
STATUS = b'{"state": "online"}'


def agent(broker: Broker, mqtt: Mqtt, agent_id: str) -> MqttProbe:
    broker.add_agent(agent_id)
    return mqtt(agent_id, broker.password_of(agent_id))


def kind_of(topics: Topics, message: Message) -> Kind | None:
    try:
        return topics.parse(message.topic).kind
    except ValueError:
        return None


def as_user(topics: Topics, kind: Kind, username: str) -> str:
    """The topic an agent pattern would give a user of this name (``%u`` substituted)."""
    return topics.acl_pattern(kind).replace("%u", username)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- who may connect -----------------------------------------------------------------
def test_anonymous_connection_is_refused(broker: Broker, mqtt: Mqtt) -> None:
    with pytest.raises(ConnectRefused) as refused:
        mqtt(None, None)
    assert refused.value.reason_code in (NOT_AUTHORIZED, BAD_USERNAME_OR_PASSWORD)


@pytest.mark.parametrize("who", ["maestro", "viewer", "unknown-user"])
def test_wrong_password_is_refused(broker: Broker, mqtt: Mqtt, who: str) -> None:
    with pytest.raises(ConnectRefused) as refused:
        mqtt(who, "wrong-" + broker.maestro_password)
    assert refused.value.reason_code in (NOT_AUTHORIZED, BAD_USERNAME_OR_PASSWORD)


# -- client ids: each account owns its own -------------------------------------------
def password_for(broker: Broker, username: str) -> str:
    if username == "maestro":
        return broker.maestro_password
    if username == "viewer":
        return broker.viewer_password
    if not broker.agent_config(username).exists():
        broker.add_agent(username)
    return broker.password_of(username)


def test_the_broker_applies_the_client_id_rule_of_the_contract(broker: Broker, mqtt: Mqtt) -> None:
    """Every case of the pure rule (tests/pure/test_clientids.py) against the C plugin."""
    for username, client_id, allowed in CLIENT_ID_CASES:
        password = password_for(broker, username)
        if allowed:
            mqtt(username, password, client_id=client_id).close()
        else:
            with pytest.raises(ConnectRefused) as refused:
                mqtt(username, password, client_id=client_id)
            assert refused.value.reason_code == NOT_AUTHORIZED, (username, client_id)


def test_the_plugin_still_lets_the_password_file_check_the_password(
    broker: Broker, mqtt: Mqtt
) -> None:
    with pytest.raises(ConnectRefused):
        mqtt("viewer", "wrong-" + broker.viewer_password, client_id="viewer:x")


@pytest.mark.parametrize("attacker", ["viewer", "a2"])
@pytest.mark.parametrize(
    ("owner", "victim_id"), [("a1", "a1"), ("a1", "a1:agent"), ("maestro", "maestro:main")]
)
def test_no_account_can_take_over_another_accounts_client_id(
    broker: Broker, mqtt: Mqtt, attacker: str, owner: str, victim_id: str
) -> None:
    t = broker.topics
    victim = mqtt(owner, password_for(broker, owner), client_id=victim_id)
    topic = t.cmd("a1") if owner == "a1" else t.status("a1")
    victim.subscribe(topic)
    attacker_password = password_for(broker, attacker)

    for _ in range(3):  # again and again, as in the attack
        with pytest.raises(ConnectRefused) as refused:
            mqtt(attacker, attacker_password, client_id=victim_id)
        assert refused.value.reason_code == NOT_AUTHORIZED

    assert victim.connected
    assert victim.disconnects == 0, "the rightful owner was knocked off the broker"
    maestro = mqtt("maestro", broker.maestro_password)
    assert accepted(maestro.publish(topic, b"still here"))
    assert victim.wait_for_message(lambda m: m.topic == topic).payload == b"still here"


def test_the_viewer_cannot_resume_the_maestros_queued_session(broker: Broker, mqtt: Mqtt) -> None:
    t = broker.topics
    maestro = mqtt("maestro", broker.maestro_password, client_id="maestro:main", persistent=True)
    maestro.subscribe(t.all_of(Kind.METRICS), qos=1)
    maestro.close()  # offline: the broker queues its QoS 1 messages
    a1 = agent(broker, mqtt, "a1")
    for n in range(5):
        assert accepted(a1.publish(t.metrics("a1"), f"sample {n}".encode()))

    with pytest.raises(ConnectRefused):
        mqtt("viewer", broker.viewer_password, client_id="maestro:main", persistent=True)

    back = mqtt("maestro", broker.maestro_password, client_id="maestro:main", persistent=True)
    got = back.wait_for_messages(lambda m: m.topic == t.metrics("a1"), 5)
    assert [m.payload for m in got] == [f"sample {n}".encode() for n in range(5)]


# -- viewer --------------------------------------------------------------------------
def test_viewer_receives_retained_status_but_cannot_publish_anywhere(
    broker: Broker, mqtt: Mqtt
) -> None:
    t = broker.topics
    assert accepted(agent(broker, mqtt, "a1").publish(t.status("a1"), STATUS, retain=True))

    viewer = mqtt("viewer", broker.viewer_password)
    viewer.subscribe(t.all_of(Kind.STATUS))
    retained = viewer.wait_for_message(lambda m: m.topic == t.status("a1"))
    assert retained.retain
    assert retained.payload == STATUS

    targets = [
        t.status("a1"),
        t.metrics("a1"),
        t.heartbeat("a1"),
        t.reply("a1"),
        t.cmd("a1"),
        t.alerts("a1"),
        t.maestro("m1"),
        t.term("a1", "s1", TermDirection.IN),
        t.term("a1", "s1", TermDirection.OUT),
        # what the agent patterns would hand a user called "viewer"
        as_user(t, Kind.STATUS, "viewer"),
        as_user(t, Kind.REPLY, "viewer"),
        "elsewhere/outside-the-root",
    ]
    codes = {topic: viewer.publish(topic, b"forged", retain=True) for topic in targets}
    assert codes == dict.fromkeys(targets, NOT_AUTHORIZED)

    fresh = mqtt("viewer", broker.viewer_password)
    fresh.subscribe(t.status("a1"))
    assert fresh.wait_for_message(lambda m: m.topic == t.status("a1")).payload == STATUS


def test_viewer_never_receives_commands_replies_or_terminal_traffic(
    broker: Broker, mqtt: Mqtt
) -> None:
    t = broker.topics
    a1 = agent(broker, mqtt, "a1")
    maestro = mqtt("maestro", broker.maestro_password)
    viewer = mqtt("viewer", broker.viewer_password)
    for topic_filter in (
        t.everything(),
        t.cmd("a1"),
        t.all_of(Kind.REPLY),
        t.term_filter("a1", TermDirection.IN),
    ):
        viewer.subscribe(topic_filter)

    assert accepted(maestro.publish(t.cmd("a1"), b'{"name": "shell"}'))
    assert accepted(maestro.publish(t.term("a1", "s1", TermDirection.IN), b"cat secrets\n"))
    assert accepted(a1.publish(t.reply("a1"), b'{"result": "secret output"}'))
    assert accepted(a1.publish(t.term("a1", "s1", TermDirection.OUT), b"secret\n"))
    assert accepted(a1.publish(t.status("a1"), STATUS))  # sent last, allowed

    viewer.wait_for_message(lambda m: m.topic == t.status("a1"))
    viewer.expect_no_message(
        lambda m: kind_of(t, m) in (Kind.CMD, Kind.REPLY, Kind.TERM), within=0.3
    )


def test_viewer_reads_only_the_one_level_topics_of_the_contract(broker: Broker, mqtt: Mqtt) -> None:
    t = broker.topics
    viewer = mqtt("viewer", broker.viewer_password)
    viewer.subscribe(t.everything())
    maestro = mqtt("maestro", broker.maestro_password)
    deeper = t.status("a1") + "/not-in-the-contract"

    assert accepted(maestro.publish(deeper, b"hidden"))
    assert accepted(maestro.publish(t.status("a1"), STATUS))  # sent last, allowed

    viewer.wait_for_message(lambda m: m.topic == t.status("a1"))
    viewer.expect_no_message(lambda m: m.topic == deeper, within=0.3)


# -- agents --------------------------------------------------------------------------
def test_an_agent_receives_the_maestros_status_retained_and_live(
    broker: Broker, mqtt: Mqtt
) -> None:
    t = broker.topics
    maestro = mqtt("maestro", broker.maestro_password)
    assert accepted(maestro.publish(t.maestro("m1"), b'{"state": "online"}', retain=True))

    a1 = agent(broker, mqtt, "a1")
    a1.subscribe(t.all_of(Kind.MAESTRO))
    retained = a1.wait_for_message(lambda m: m.topic == t.maestro("m1"))
    assert retained.retain
    assert retained.payload == b'{"state": "online"}'

    assert accepted(maestro.publish(t.maestro("m2"), b'{"state": "stopping"}'))
    live = a1.wait_for_message(lambda m: m.topic == t.maestro("m2"))
    assert live.payload == b'{"state": "stopping"}'


def test_agent_cannot_publish_on_another_agents_topics(broker: Broker, mqtt: Mqtt) -> None:
    t = broker.topics
    a1 = agent(broker, mqtt, "a1")
    broker.add_agent("a2")
    maestro = mqtt("maestro", broker.maestro_password)
    maestro.subscribe(t.everything())

    theirs = [
        t.status("a2"),
        t.metrics("a2"),
        t.heartbeat("a2"),
        t.reply("a2"),
        t.term("a2", "s1", TermDirection.OUT),
    ]
    assert {topic: a1.publish(topic, b"forged") for topic in theirs} == dict.fromkeys(
        theirs, NOT_AUTHORIZED
    )
    own = [topic.replace("/a2", "/a1") for topic in theirs]
    assert all(accepted(a1.publish(topic, b"mine")) for topic in own)

    maestro.wait_for_messages(lambda m: m.topic in own, len(own))
    maestro.expect_no_message(lambda m: m.topic in theirs, within=0.2)


def test_agent_cannot_receive_another_agents_commands(broker: Broker, mqtt: Mqtt) -> None:
    t = broker.topics
    a1 = agent(broker, mqtt, "a1")
    broker.add_agent("a2")
    maestro = mqtt("maestro", broker.maestro_password)
    for topic_filter in (
        t.cmd("a2"),
        t.all_of(Kind.CMD),
        t.term_filter("a2", TermDirection.IN),
        t.everything(),
    ):
        a1.subscribe(topic_filter)

    assert accepted(maestro.publish(t.cmd("a2"), b'{"for": "a2"}'))
    assert accepted(maestro.publish(t.term("a2", "s1", TermDirection.IN), b"ls\n"))
    assert accepted(maestro.publish(t.cmd("a1"), b'{"for": "a1"}'))  # sent last, allowed

    a1.wait_for_message(lambda m: m.topic == t.cmd("a1"))
    # Anything but its own command (the random root itself may contain "a2").
    a1.expect_no_message(lambda m: m.topic != t.cmd("a1"), within=0.3)


def test_agent_cannot_publish_any_command_not_even_to_itself(broker: Broker, mqtt: Mqtt) -> None:
    t = broker.topics
    a1 = agent(broker, mqtt, "a1")
    broker.add_agent("a2")
    a2 = mqtt("a2", broker.password_of("a2"))
    a2.subscribe(t.cmd("a2"))
    a1.subscribe(t.cmd("a1"))

    forged = [
        t.cmd("a1"),
        t.cmd("a2"),
        t.term("a1", "s1", TermDirection.IN),
        t.alerts("a1"),
        t.maestro("m1"),
    ]
    assert {topic: a1.publish(topic, b"forged") for topic in forged} == dict.fromkeys(
        forged, NOT_AUTHORIZED
    )
    a1.expect_no_message(lambda m: True, within=0.2)
    a2.expect_no_message(lambda m: True, within=0.3)


def test_maestro_can_publish_commands_and_read_everything(broker: Broker, mqtt: Mqtt) -> None:
    t = broker.topics
    a1 = agent(broker, mqtt, "a1")
    a1.subscribe(t.cmd("a1"))
    maestro = mqtt("maestro", broker.maestro_password)
    maestro.subscribe(t.everything())

    assert accepted(maestro.publish(t.cmd("a1"), b'{"name": "metrics"}'))
    assert a1.wait_for_message(lambda m: m.topic == t.cmd("a1")).payload == b'{"name": "metrics"}'

    sent = [
        t.status("a1"),
        t.metrics("a1"),
        t.heartbeat("a1"),
        t.reply("a1"),
        t.term("a1", "s1", TermDirection.OUT),
    ]
    for topic in sent:
        assert accepted(a1.publish(topic, b"data"))
    maestro.wait_for_messages(lambda m: m.topic in sent, len(sent))
    for topic in (t.alerts("a1"), t.maestro("m1")):
        assert accepted(maestro.publish(topic, b'{"state": "ok"}', retain=True))


# -- persistence ---------------------------------------------------------------------
def test_only_the_maestro_reads_the_brokers_dropped_counter_and_nobody_can_forge_it(
    broker: Broker, mqtt: Mqtt
) -> None:
    t = broker.topics
    maestro = mqtt("maestro", broker.maestro_password)
    others = [agent(broker, mqtt, "a1"), mqtt("viewer", broker.viewer_password)]
    for probe in others:
        probe.subscribe("$SYS/#")
        probe.subscribe(BROKER_DROPPED)
        probe.subscribe(t.maestro("m1"))
    maestro.subscribe(BROKER_DROPPED)
    counter = maestro.wait_for_message(lambda m: m.topic == BROKER_DROPPED)
    assert counter.retain
    assert counter.payload.isdigit()

    for probe in (maestro, *others):
        assert probe.publish(BROKER_DROPPED, b"999999") == NOT_AUTHORIZED
    assert accepted(maestro.publish(t.maestro("m1"), b"{}"))  # sent last, allowed
    for probe in others:
        probe.wait_for_message(lambda m: m.topic == t.maestro("m1"))
        probe.expect_no_message(lambda m: m.topic.startswith("$"), within=0.1)


def test_retained_status_and_credentials_survive_a_broker_restart(
    broker: Broker, mqtt: Mqtt
) -> None:
    t = broker.topics
    a1 = agent(broker, mqtt, "a1")
    assert accepted(a1.publish(t.status("a1"), STATUS, retain=True))
    a1.close()
    viewer_password = broker.viewer_password

    broker.restart()

    assert broker.viewer_password == viewer_password, "accounts are created only once"
    viewer = mqtt("viewer", viewer_password)
    viewer.subscribe(t.status("a1"))
    assert viewer.wait_for_message(lambda m: m.topic == t.status("a1")).payload == STATUS
    mqtt("a1", broker.password_of("a1")).close()


# -- TLS -----------------------------------------------------------------------------
def test_tls_with_the_generated_ca_connects(tls_broker: Broker, mqtt: Mqtt) -> None:
    t = tls_broker.topics
    probe = mqtt(
        "maestro", tls_broker.maestro_password, port=tls_broker.tls_port, ca_file=tls_broker.ca_file
    )
    probe.subscribe(t.status("a1"))
    assert accepted(probe.publish(t.status("a1"), STATUS))
    probe.wait_for_message(lambda m: m.topic == t.status("a1"))

    config = tls_broker.add_agent("a1")
    assert f"port = {tls_broker.tls_port}" in config.read_text(), "agents add chose TLS"
    mqtt("a1", tls_broker.password_of("a1"), port=tls_broker.tls_port, ca_file=tls_broker.ca_file)


def test_a_tls_agent_config_copied_with_its_ca_to_another_machine_connects(
    tls_broker: Broker, mqtt: Mqtt, tmp_path: Path
) -> None:
    config = tls_broker.add_agent("a1", tls=True)
    assert 'ca_file = "ca.crt"' in config.read_text()
    elsewhere = tmp_path / "another-machine" / "etc-arete"
    elsewhere.mkdir(parents=True)
    shutil.copy(config, elsewhere / "agent.toml")
    shutil.copy(config.parent / "ca.crt", elsewhere / "ca.crt")

    settings = load_settings(elsewhere / "agent.toml", env={})
    assert settings.mqtt.ca_file == str(elsewhere / "ca.crt")
    probe = mqtt(
        settings.username,
        settings.mqtt.password,
        host=settings.mqtt.host,
        port=settings.mqtt.port,
        ca_file=settings.mqtt.ca_file,
    )
    assert settings.mqtt.port == tls_broker.tls_port
    assert accepted(probe.publish(tls_broker.topics.status("a1"), STATUS))


def test_tls_with_a_wrong_ca_is_refused(tls_broker: Broker, mqtt: Mqtt, tmp_path: Path) -> None:
    other_ca = tmp_path / "other-ca.crt"
    write_ca(tmp_path / "other-ca.key", other_ca, common_name="Somebody else's CA")
    with pytest.raises(ssl.SSLCertVerificationError):
        mqtt("maestro", tls_broker.maestro_password, port=tls_broker.tls_port, ca_file=other_ca)


# -- secrets at rest -----------------------------------------------------------------
def test_agent_configs_and_secret_files_are_readable_only_by_their_owner(
    broker: Broker,
) -> None:
    config = broker.add_agent("a1")
    data = broker.data_dir
    assert mode(config) == 0o600
    for secret in ("maestro.password", "viewer.password"):
        assert mode(data / "secrets" / secret) == 0o600
    assert mode(data / "broker" / "passwd") == 0o600
    for directory in (data, data / "secrets", data / "agents", data / "broker"):
        assert mode(directory) == 0o700


def test_no_plaintext_password_in_broker_files_or_process_arguments(broker: Broker) -> None:
    broker.add_agent("a1")
    passwords = [broker.maestro_password, broker.viewer_password, broker.password_of("a1")]
    broker_files = [p for p in (broker.data_dir / "broker").rglob("*") if p.is_file()]
    assert any(p.name == "mosquitto.conf" for p in broker_files)
    for path in broker_files:
        text = path.read_bytes()
        leaked = [pw for pw in passwords if pw.encode() in text]
        assert not leaked, f"{path} holds a plaintext password"
    assert broker.proc is not None
    runner = psutil.Process(broker.proc.pid)
    for process in [runner, *runner.children(recursive=True)]:
        argv = " ".join(process.cmdline())
        assert not [pw for pw in passwords if pw in argv], f"password in argv of {argv}"


# -- operating it --------------------------------------------------------------------
def test_rotating_an_agents_password_locks_out_the_old_one_without_a_restart(
    broker: Broker, mqtt: Mqtt
) -> None:
    broker.add_agent("a1")
    old = broker.password_of("a1")
    connected_with_old = mqtt("a1", old)
    broker.add_agent("a1", rotate=True)
    new = broker.password_of("a1")
    assert new != old
    mqtt("a1", new)
    with pytest.raises(ConnectRefused):
        mqtt("a1", old)
    wait_for(lambda: not connected_with_old.connected, 5, "the old session to be dropped")


def test_a_removed_agent_can_no_longer_connect_and_the_others_still_can(
    broker: Broker, mqtt: Mqtt
) -> None:
    a1 = agent(broker, mqtt, "a1")
    old = broker.password_of("a1")
    broker.add_agent("a2")

    done = broker.remove_agent("a1")

    assert "reloaded" in done.stdout
    with pytest.raises(ConnectRefused):
        mqtt("a1", old)
    wait_for(lambda: not a1.connected, 5, "the removed agent's session to be dropped")
    mqtt("a2", broker.password_of("a2")).close()
    assert not broker.agent_config("a1").exists()
    listed = run_cli("agents", "list", "--data-dir", str(broker.data_dir)).stdout
    assert [line.split()[0] for line in listed.splitlines()] == ["a2"]


def test_a_second_broker_on_the_same_data_dir_is_refused(broker: Broker) -> None:
    second = run_cli(
        "broker", "run", "--data-dir", str(broker.data_dir), "--port", "1", check=False
    )
    assert second.returncode == 1
    assert "already running" in second.stderr


def test_two_broker_runs_started_at_once_on_one_data_dir_leave_exactly_one(
    procs: Callable[..., Proc], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    ports = distinct_free_ports(2)
    runs = [
        procs(
            [*ARETE, "broker", "run", "--data-dir", str(data), "--port", str(port)], f"run-{port}"
        )
        for port in ports
    ]

    wait_for(lambda: any(not run.alive() for run in runs), START_TIMEOUT_S, "one run to give up")
    (loser,) = [run for run in runs if not run.alive()]
    (winner,) = [run for run in runs if run.alive()]
    assert loser.wait(5) != 0
    assert "already running" in loser.output()
    assert "Traceback" not in loser.output()

    port = ports[runs.index(winner)]
    wait_for(lambda: port_open(port), START_TIMEOUT_S, f"the broker on port {port}")
    announced = re.search(r"mqtt://127\.0\.0\.1:(\d+)", winner.output())
    assert announced is not None
    assert int(announced[1]) == port, "the running broker listens where it said"
    assert not port_open(ports[runs.index(loser)])
    assert winner.alive()


# -- other system users (root only) ----------------------------------------------------
def test_a_broker_runs_as_a_user_without_a_passwd_entry(
    other_user: tuple[int, Path], procs: Callable[..., Proc], mqtt: Mqtt
) -> None:
    uid, home = other_user
    broker = make_broker(procs, home / "data", uid=uid)
    try:
        config = broker.config_file.read_text()
        assert not re.search(r"^user ", config, re.MULTILINE), "only root needs the user line"
        mqtt("maestro", broker.maestro_password, port=broker.port).close()
        assert broker.proc is not None
        mosquitto = psutil.Process(broker.proc.pid).children()
        assert [child.uids().effective for child in mosquitto] == [uid]
    finally:
        broker.stop()


def test_agents_add_says_when_the_running_broker_belongs_to_another_user(
    other_user: tuple[int, Path], procs: Callable[..., Proc]
) -> None:
    uid, home = other_user
    broker = make_broker(procs, home / "data")  # run by root
    try:
        chown_tree(broker.data_dir, uid)  # the data dir is the caller's, the process is not
        done = run_cli("agents", "add", "a1", "--data-dir", str(broker.data_dir), uid=uid)
        assert "runs as another user" in done.stderr
        assert "systemctl reload arete-broker" in done.stderr
        assert "not running" not in done.stdout
        password = broker.password_of("a1")
        assert not broker.accepts("a1", password), "the broker was not told to reload"
        assert broker.proc is not None
        broker.proc.signal(signal.SIGHUP)  # what `systemctl reload arete-broker` does
        broker.wait_accepts("a1", password)
    finally:
        broker.stop()
