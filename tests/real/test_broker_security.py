"""The broker's security, against the real Mosquitto started by ``arete broker run``.

Denied publishes are observed as MQTT 5 PUBACK reason 135 (Not authorized); denied
reads as messages that never arrive while a later, allowed message does.
"""

from __future__ import annotations

import ssl
import stat
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from arete.topics import Kind, TermDirection, Topics
from mosquitto.tls import write_ca
from tests.fixtures.broker import Broker, run_cli
from tests.fixtures.mqtt import (
    BAD_USERNAME_OR_PASSWORD,
    NOT_AUTHORIZED,
    ConnectRefused,
    Message,
    MqttProbe,
    accepted,
)
from tests.fixtures.procs import wait_for

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


# -- agents --------------------------------------------------------------------------
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
    a1.expect_no_message(lambda m: "a2" in m.topic, within=0.3)


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
    a2.expect_no_message(lambda m: True, within=0.0)


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


def test_a_second_broker_on_the_same_data_dir_is_refused(broker: Broker) -> None:
    second = run_cli(
        "broker", "run", "--data-dir", str(broker.data_dir), "--port", "1", check=False
    )
    assert second.returncode == 1
    assert "already running" in second.stderr
