"""Broker setup without a broker: config and ACL rendering, password hashes, accounts,
and the input checks of ``arete agents add``. No processes; files only under tmp_path.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import pwd
import random
import re
import shutil
import socket
import stat
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography import x509
from paho.mqtt.client import topic_matches_sub
from typer.testing import CliRunner, Result

from arete.payloads import MAX_REPLY_BYTES
from arete.topics import BROKER_DROPPED, Kind, TermDirection, Topics
from arete_cli.agents import (
    agent_settings,
    agents_app,
    default_mqtt_host,
    issue_agent,
    render_checked,
)
from arete_cli.main import app
from edge_agent.settings import load_settings
from mosquitto.accounts import add_agent_credentials, agent_ids, ensure_service_accounts
from mosquitto.acl import MAESTRO, SERVICE_ACCOUNTS, VIEWER, render_acl
from mosquitto.cli import broker_app
from mosquitto.config import BrokerOptions, render_config, ws_warnings
from mosquitto.errors import AccountExists, BrokerConfigError, PasswordFileError
from mosquitto.layout import Layout, write_private
from mosquitto.passwords import (
    hash_password,
    new_password,
    read_password_file,
    remove_user,
    set_user,
    verify_password,
)
from mosquitto.runner import prepare_broker
from mosquitto.state import BrokerInfo, load_info, save_info
from mosquitto.tls import init_tls

LAYOUT = Layout(Path("/srv/arete"))
TRUE = shutil.which("true") or "/bin/true"  # a "Mosquitto" that exits at once


def directives(config: str) -> list[tuple[str, str]]:
    """``(key, value)`` for every non-comment line of a Mosquitto config."""
    pairs = []
    for line in config.splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition(" ")
            pairs.append((key, value))
    return pairs


def value_of(config: str, key: str) -> str:
    values = [value for k, value in directives(config) if k == key]
    assert len(values) == 1, f"{key} appears {len(values)} times"
    return values[0]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- mosquitto.conf --------------------------------------------------------------------
def test_config_refuses_anonymous_clients_and_uses_the_generated_password_and_acl_files() -> None:
    config = render_config(LAYOUT, BrokerOptions(), user="arete")
    assert value_of(config, "allow_anonymous") == "false"
    assert value_of(config, "per_listener_settings") == "false"
    assert value_of(config, "password_file") == "/srv/arete/broker/passwd"
    assert value_of(config, "acl_file") == "/srv/arete/broker/acl"


def test_config_loads_the_client_id_plugin_built_in_the_data_dir() -> None:
    config = render_config(LAYOUT, BrokerOptions(), user="arete")
    assert value_of(config, "plugin") == "/srv/arete/broker/arete_clientid.so"


def test_config_listens_on_localhost_by_default_and_on_the_host_given() -> None:
    assert value_of(render_config(LAYOUT, BrokerOptions(), user="u"), "listener") == (
        "1883 127.0.0.1"
    )
    options = BrokerOptions(port=2883, host="0.0.0.0")
    assert value_of(render_config(LAYOUT, options, user="u"), "listener") == "2883 0.0.0.0"


def test_config_names_a_user_only_when_asked_and_logs_to_stderr() -> None:
    config = render_config(LAYOUT, BrokerOptions())
    assert "user" not in dict(directives(config))
    assert value_of(config, "log_dest") == "stderr"
    assert value_of(render_config(LAYOUT, BrokerOptions(), user="root"), "user") == "root"


@pytest.mark.parametrize("name", ["CORP\\jane.doe", "jane@corp.example", "1000", "Zoë", "a$"])
def test_config_accepts_any_user_name_the_system_may_have(name: str) -> None:
    assert value_of(render_config(LAYOUT, BrokerOptions(), user=name), "user") == name


@pytest.mark.parametrize(("euid", "user_line"), [(4242, None), (0, "root")])
def test_broker_config_names_root_only_when_started_as_root_passwd_entry_or_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, euid: int, user_line: str | None
) -> None:
    real_getpwuid = pwd.getpwuid

    def getpwuid(uid: int) -> pwd.struct_passwd:
        if uid == euid and euid != 0:
            raise KeyError(f"getpwuid(): uid not found: {uid}")  # a container's user
        return real_getpwuid(uid)

    monkeypatch.setattr(os, "geteuid", lambda: euid)
    monkeypatch.setattr(pwd, "getpwuid", getpwuid)
    prepared = prepare_broker(Layout.at(tmp_path / "data"), BrokerOptions(), mosquitto=TRUE)
    config = prepared.layout.config_file.read_text()
    assert dict(directives(config)).get("user") == user_line


def test_config_persists_retained_messages_with_a_short_autosave() -> None:
    config = render_config(LAYOUT, BrokerOptions(), user="u")
    assert value_of(config, "persistence") == "true"
    assert value_of(config, "persistence_location") == "/srv/arete/broker/persistence/"
    assert int(value_of(config, "autosave_interval")) <= 10


def test_queue_limits_are_far_above_mosquittos_silent_drop_default() -> None:
    config = render_config(LAYOUT, BrokerOptions(), user="u")
    assert int(value_of(config, "max_queued_messages")) >= 100_000  # default: 1000
    assert int(value_of(config, "max_queued_bytes")) >= 256 * 1024 * 1024


def test_queue_limit_can_be_changed_and_sys_counters_are_updated_every_10_s() -> None:
    config = render_config(LAYOUT, BrokerOptions(), user="u")
    assert int(value_of(config, "sys_interval")) == 10  # Mosquitto's default, made explicit
    config = render_config(LAYOUT, BrokerOptions(max_queued_messages=5, sys_interval_s=1), user="u")
    assert int(value_of(config, "max_queued_messages")) == 5
    assert int(value_of(config, "sys_interval")) == 1


def test_max_packet_size_fits_the_largest_screenshot_reply() -> None:
    config = render_config(LAYOUT, BrokerOptions(), user="u")
    assert int(value_of(config, "max_packet_size")) > MAX_REPLY_BYTES


def test_tls_listener_uses_the_generated_ca_and_server_certificate() -> None:
    config = render_config(LAYOUT, BrokerOptions(tls_port=8883), user="u")
    assert [v for k, v in directives(config) if k == "listener"] == [
        "1883 127.0.0.1",
        "8883 127.0.0.1",
    ]
    assert value_of(config, "cafile") == "/srv/arete/broker/tls/ca.crt"
    assert value_of(config, "certfile") == "/srv/arete/broker/tls/server.crt"
    assert value_of(config, "keyfile") == "/srv/arete/broker/tls/server.key"
    assert value_of(config, "tls_version") == "tlsv1.2"


def test_websockets_binds_its_address_through_socket_domain() -> None:
    config = render_config(LAYOUT, BrokerOptions(ws_port=9001), user="u")
    assert ("listener", "9001 127.0.0.1") in directives(config)
    assert ("socket_domain", "ipv4") in directives(config)
    assert ("protocol", "websockets") in directives(config)
    v6 = render_config(LAYOUT, BrokerOptions(ws_port=9001, ws_host="::1"), user="u")
    assert ("socket_domain", "ipv6") in directives(v6)


def test_websockets_on_all_interfaces_or_a_host_name_is_refused_unless_acknowledged() -> None:
    with pytest.raises(BrokerConfigError, match="ALL network interfaces"):
        BrokerOptions(ws_port=9001, ws_host="0.0.0.0")
    with pytest.raises(BrokerConfigError, match="needs an IP address"):
        BrokerOptions(ws_port=9001, host="broker.example")
    with pytest.raises(BrokerConfigError, match="needs a websockets port"):
        BrokerOptions(ws_tls=True)
    everywhere = BrokerOptions(ws_port=9001, ws_host="0.0.0.0", ws_all_interfaces=True)
    assert ("listener", "9001 0.0.0.0") in directives(render_config(LAYOUT, everywhere))


def test_websockets_with_tls_uses_the_brokers_certificate() -> None:
    config = render_config(LAYOUT, BrokerOptions(ws_port=9001, ws_tls=True), user="u")
    ws = config[config.index("listener 9001") :]
    assert "certfile /srv/arete/broker/tls/server.crt" in ws
    assert "keyfile /srv/arete/broker/tls/server.key" in ws


def test_a_websockets_listener_others_can_reach_without_tls_is_warned_about() -> None:
    assert ws_warnings(BrokerOptions(ws_port=9001)) == [], "loopback: nothing to say"
    assert ws_warnings(BrokerOptions()) == []
    [clear] = ws_warnings(BrokerOptions(ws_port=9001, ws_host="10.1.2.3"))
    assert "cross the network in clear" in clear
    assert "--wss" in clear
    assert ws_warnings(BrokerOptions(ws_port=9001, ws_host="10.1.2.3", ws_tls=True)) == []
    everywhere = BrokerOptions(ws_port=9001, ws_host="0.0.0.0", ws_all_interfaces=True)
    interfaces, clear_too = ws_warnings(everywhere)
    assert "ALL network interfaces" in interfaces
    assert "cross the network in clear" in clear_too
    secure = BrokerOptions(ws_port=9001, ws_host="0.0.0.0", ws_all_interfaces=True, ws_tls=True)
    [only] = ws_warnings(secure)
    assert "ALL network interfaces" in only


def test_a_plain_config_has_no_tls_or_websockets_listener() -> None:
    config = render_config(LAYOUT, BrokerOptions(), user="u")
    keys = {key for key, _ in directives(config)}
    assert not keys & {"cafile", "certfile", "keyfile"}
    assert ("protocol", "websockets") not in directives(config)


@pytest.mark.parametrize(
    "options",
    [
        {"host": "127.0.0.1\nallow_anonymous true"},  # a line smuggled into the config
        {"host": "my host"},
        {"host": ""},
        {"port": 0},
        {"port": 65536},
        {"tls_port": 1883},  # same as the plain port
        {"root": "arete/#"},
        {"root": ""},
        {"max_queued_messages": 0},  # "no limit" to Mosquitto
        {"max_queued_messages": True},
        {"sys_interval_s": 0},  # no $SYS updates: drops would go unseen
        {"sys_interval_s": 3601},
    ],
)
def test_invalid_broker_options_are_refused(options: dict[str, object]) -> None:
    with pytest.raises(BrokerConfigError):
        BrokerOptions(**options)  # type: ignore[arg-type]


def test_a_data_dir_with_whitespace_is_refused_because_mosquitto_cannot_express_it() -> None:
    with pytest.raises(BrokerConfigError, match="whitespace"):
        Layout.at("/tmp/my data")


def test_a_system_user_name_cannot_inject_config_lines() -> None:
    with pytest.raises(BrokerConfigError):
        render_config(LAYOUT, BrokerOptions(), user="root\nallow_anonymous true")


# -- ACL -------------------------------------------------------------------------------
class AclModel:
    """Mosquitto 2.0's acl_file rules, for checking the rendered ACL by reading it.

    A user's deny lines are checked first, then its own lines, then every ``pattern``
    line with ``%u`` replaced by the username (patterns apply to every user).
    """

    def __init__(self, text: str) -> None:
        self.users: dict[str, list[tuple[str, str]]] = {}
        self.patterns: list[tuple[str, str]] = []
        current: list[tuple[str, str]] | None = None
        for line in text.splitlines():
            if not line.strip() or line.startswith("#"):
                continue
            words = line.split()
            if words[0] == "user":
                current = self.users.setdefault(words[1], [])
            elif words[0] == "topic":
                assert current is not None, "topic lines before a user line are unused"
                current.append((words[1], words[2]))
            elif words[0] == "pattern":
                self.patterns.append((words[1], words[2]))
            else:
                raise AssertionError(f"unexpected ACL line {line!r}")

    def allows(self, user: str, access: str, topic: str) -> bool:
        own = self.users.get(user, [])
        if any(kind == "deny" and topic_matches_sub(t, topic) for kind, t in own):
            return False
        rules = own + [(kind, t.replace("%u", user)) for kind, t in self.patterns]
        return any(
            access in kind and kind != "deny" and topic_matches_sub(t, topic) for kind, t in rules
        )


def every_topic(topics: Topics, agent_ids: list[str]) -> list[str]:
    concrete = []
    for agent in agent_ids:
        concrete += [
            topics.status(agent),
            topics.metrics(agent),
            topics.heartbeat(agent),
            topics.cmd(agent),
            topics.reply(agent),
            topics.alerts(agent),
            topics.stored(agent),
            topics.term(agent, "s1", TermDirection.IN),
            topics.term(agent, "s1", TermDirection.OUT),
        ]
    releases = [topics.release_manifest("0.2.0"), topics.release_chunk("0.2.0", 1, 2)]
    return [*concrete, topics.maestro("m1"), *releases]


def term(topics: Topics, agent: str, direction: TermDirection) -> str:
    return topics.term(agent, "s1", direction)


@pytest.fixture(params=["arete", "acme/eu-west"])
def topics(request: pytest.FixtureRequest) -> Topics:
    return Topics(request.param)


def test_maestro_may_read_and_write_everything_under_the_root(topics: Topics) -> None:
    acl = AclModel(render_acl(topics))
    for topic in every_topic(topics, ["a1"]):
        assert acl.allows(MAESTRO, "write", topic)
        assert acl.allows(MAESTRO, "read", topic)


def test_viewer_can_publish_nowhere_not_even_on_topics_named_after_itself(
    topics: Topics,
) -> None:
    acl = AclModel(render_acl(topics))
    # "viewer" substituted into the agent patterns would be viewer's own topics.
    named_after_viewer = [t.replace("/a1", "/viewer") for t in every_topic(topics, ["a1"])]
    for topic in every_topic(topics, ["a1"]) + named_after_viewer:
        assert not acl.allows(VIEWER, "write", topic), topic


def test_viewer_reads_status_metrics_heartbeat_alerts_maestro_and_releases_only(
    topics: Topics,
) -> None:
    acl = AclModel(render_acl(topics))
    readable = {t for t in every_topic(topics, ["a1"]) if acl.allows(VIEWER, "read", t)}
    assert readable == {
        topics.status("a1"),
        topics.metrics("a1"),
        topics.heartbeat("a1"),
        topics.alerts("a1"),
        topics.maestro("m1"),
        topics.release_manifest("0.2.0"),
        topics.release_chunk("0.2.0", 1, 2),
    }


def test_an_agent_writes_only_its_own_status_metrics_heartbeat_reply_and_terminal_output(
    topics: Topics,
) -> None:
    acl = AclModel(render_acl(topics))
    writable = {t for t in every_topic(topics, ["a1", "a2"]) if acl.allows("a1", "write", t)}
    assert writable == {
        topics.status("a1"),
        topics.metrics("a1"),
        topics.heartbeat("a1"),
        topics.reply("a1"),
        term(topics, "a1", TermDirection.OUT),
    }


def test_an_agent_reads_only_its_own_commands_terminal_input_stored_acks_maestro_releases(
    topics: Topics,
) -> None:
    acl = AclModel(render_acl(topics))
    readable = {t for t in every_topic(topics, ["a1", "a2"]) if acl.allows("a1", "read", t)}
    assert readable == {
        topics.cmd("a1"),
        topics.stored("a1"),
        term(topics, "a1", TermDirection.IN),
        topics.maestro("m1"),
        topics.release_manifest("0.2.0"),
        topics.release_chunk("0.2.0", 1, 2),
    }


def test_only_the_maestro_publishes_releases(topics: Topics) -> None:
    acl = AclModel(render_acl(topics))
    release = [topics.release_manifest("0.2.0"), topics.release_chunk("0.2.0", 0, 0)]
    for topic in release:
        assert acl.allows(MAESTRO, "write", topic)
        for user in (VIEWER, "a1", "maestro2"):
            assert not acl.allows(user, "write", topic), (user, topic)


def test_only_the_maestro_reads_the_brokers_dropped_counter_and_nobody_writes_it(
    topics: Topics,
) -> None:
    acl = AclModel(render_acl(topics))
    assert acl.allows(MAESTRO, "read", BROKER_DROPPED)
    for user in (MAESTRO, VIEWER, "a1"):
        assert not acl.allows(user, "write", BROKER_DROPPED), user
    for user in (VIEWER, "a1"):
        assert not acl.allows(user, "read", BROKER_DROPPED), user
    assert not acl.allows(MAESTRO, "read", "$SYS/broker/clients/connected"), "one topic only"


def test_viewer_reads_one_level_below_each_kind_as_the_contract_topics_are(
    topics: Topics,
) -> None:
    acl = AclModel(render_acl(topics))
    assert acl.allows(VIEWER, "read", topics.status("a1"))
    for topic in (topics.status("a1"), topics.metrics("a1"), topics.maestro("m1")):
        assert not acl.allows(VIEWER, "read", topic + "/deeper"), topic


def test_acl_rules_are_built_from_the_topic_contract() -> None:
    text = render_acl(Topics("lab"))
    assert f"pattern read {Topics('lab').acl_pattern(Kind.CMD)}" in text
    assert f"topic readwrite {Topics('lab').everything()}" in text
    assert Topics().root + "/" not in text, "no default root leaks into another root's ACL"


# -- password hashes -------------------------------------------------------------------
def test_password_hash_is_mosquitto_2_pbkdf2_sha512_and_verifies_with_hashlib() -> None:
    encoded = hash_password("correct horse")
    match = re.fullmatch(r"\$7\$(\d+)\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)", encoded)
    assert match, encoded
    iterations, salt, digest = int(match[1]), base64.b64decode(match[2]), match[3]
    assert len(salt) == 12
    expected = hashlib.pbkdf2_hmac("sha512", b"correct horse", salt, iterations, 64)
    assert base64.b64decode(digest) == expected


def test_a_hash_written_by_mosquitto_passwd_verifies() -> None:
    # `mosquitto_passwd -b pw alice s3cret` (Mosquitto 2.0.11) wrote this line.
    line = (
        "alice:$7$101$68qwrkNSEYaZ8Ulx$R4uIgcVVNulO9J3HModo+LcyjK2x3aSqibJKNgL03tMWV6DCYoOL2y"
        "egcu9uq7oJSNHEMyOlAFwlXGzbDCH6hQ=="
    )
    encoded = line.partition(":")[2]
    assert verify_password("s3cret", encoded)
    assert not verify_password("s3cret!", encoded)


def test_same_password_hashes_differently_each_time() -> None:
    first, second = hash_password("pw-1"), hash_password("pw-1")
    assert first != second
    assert verify_password("pw-1", first)
    assert verify_password("pw-1", second)


@pytest.mark.parametrize("encoded", ["", "$6$101$abc$def", "$7$x$abc$def", "$7$101$!!$def"])
def test_malformed_hashes_never_verify(encoded: str) -> None:
    assert not verify_password("anything", encoded)


def test_generated_passwords_are_long_random_and_shell_safe() -> None:
    passwords = {new_password() for _ in range(20)}
    assert len(passwords) == 20
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{43,}", p) for p in passwords)


# -- password file and accounts --------------------------------------------------------
def test_password_file_add_replace_remove_keeps_other_users_and_stays_private(
    tmp_path: Path,
) -> None:
    path = tmp_path / "passwd"
    set_user(path, "a1", "one-111")
    set_user(path, "a2", "two-222")
    set_user(path, "a1", "uno-111")
    entries = read_password_file(path)
    assert list(entries) == ["a1", "a2"]
    assert verify_password("uno-111", entries["a1"])
    assert verify_password("two-222", entries["a2"])
    assert mode(path) == 0o600
    assert remove_user(path, "a1")
    assert not remove_user(path, "a1")
    assert list(read_password_file(path)) == ["a2"]
    assert "two-222" not in path.read_text()


@pytest.mark.parametrize("username", ["a:b", "a\nb", "", "a b"])
def test_password_file_refuses_usernames_that_would_break_its_lines(
    tmp_path: Path, username: str
) -> None:
    with pytest.raises(PasswordFileError):
        set_user(tmp_path / "passwd", username, "pw-123")


def test_a_garbled_password_file_is_reported_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "passwd"
    path.write_text("a1:$7$101$x$y\nnot a valid line\n")
    with pytest.raises(PasswordFileError, match=r"passwd:2"):
        read_password_file(path)


def test_service_accounts_are_created_once_with_private_secret_files(tmp_path: Path) -> None:
    layout = Layout.at(tmp_path / "data")
    layout.create()
    created = ensure_service_accounts(layout)
    assert created == [layout.secret_file(MAESTRO), layout.secret_file(VIEWER)]
    assert mode(layout.secrets_dir) == 0o700
    entries = read_password_file(layout.password_file)
    for account in SERVICE_ACCOUNTS:
        secret = layout.secret_file(account)
        assert mode(secret) == 0o600
        password = secret.read_text().strip()
        assert verify_password(password, entries[account])
        assert password not in layout.password_file.read_text()
    before = {a: layout.secret_file(a).read_text() for a in SERVICE_ACCOUNTS}
    assert ensure_service_accounts(layout) == []
    assert before == {a: layout.secret_file(a).read_text() for a in SERVICE_ACCOUNTS}


def test_a_loosened_secret_file_is_made_private_again(tmp_path: Path) -> None:
    layout = Layout.at(tmp_path / "data")
    layout.create()
    ensure_service_accounts(layout)
    layout.secret_file(VIEWER).chmod(0o644)
    ensure_service_accounts(layout)
    assert mode(layout.secret_file(VIEWER)) == 0o600


def test_agent_credentials_refuse_duplicates_unless_rotated(tmp_path: Path) -> None:
    layout = Layout.at(tmp_path / "data")
    layout.create()
    first = add_agent_credentials(layout, "web-01")
    with pytest.raises(AccountExists, match="--rotate"):
        add_agent_credentials(layout, "web-01")
    second = add_agent_credentials(layout, "web-01", rotate=True)
    encoded = read_password_file(layout.password_file)["web-01"]
    assert verify_password(second, encoded)
    assert not verify_password(first, encoded)
    assert agent_ids(layout) == ["web-01"]


# -- arete agents add ------------------------------------------------------------------
def broker_dir(tmp_path: Path, **info: object) -> Layout:
    """A data dir as `arete broker run` leaves it (without running Mosquitto)."""
    layout = Layout.at(tmp_path / "data")
    layout.create()
    ensure_service_accounts(layout)
    values: dict[str, object] = {"host": "127.0.0.1", "port": 18830, "root": "lab"}
    values.update(info)
    save_info(layout, BrokerInfo(**values))  # type: ignore[arg-type]
    return layout


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    "agent_id",
    ["bad/id", "viewer", "Maestro", "a" * 65, "has space", "plus+", "hash#", "ünï", "."],
)
def test_agents_add_refuses_a_bad_id_with_exit_2_and_writes_nothing(
    tmp_path: Path, agent_id: str
) -> None:
    layout = broker_dir(tmp_path)
    before = snapshot(layout.data_dir)
    result = CliRunner().invoke(agents_app, ["add", agent_id, "--data-dir", str(layout.data_dir)])
    assert result.exit_code == 2, result.output
    assert "agent id" in result.output
    assert snapshot(layout.data_dir) == before


@pytest.mark.parametrize(
    "extra",
    [
        ["--label", "novalue"],
        ["--label", "=v"],
        ["--label", "k=v", "--label", "k=w"],
        ["--mqtt-host", "two words"],
        ["--tls"],  # the broker has no TLS listener
    ],
)
def test_agents_add_refuses_bad_options_with_exit_2_and_writes_nothing(
    tmp_path: Path, extra: list[str]
) -> None:
    layout = broker_dir(tmp_path)
    before = snapshot(layout.data_dir)
    result = CliRunner().invoke(
        agents_app, ["add", "web-01", "--data-dir", str(layout.data_dir), *extra]
    )
    assert result.exit_code == 2, result.output
    assert snapshot(layout.data_dir) == before


def test_agents_add_without_a_broker_says_to_run_it_first(tmp_path: Path) -> None:
    result = CliRunner().invoke(agents_app, ["add", "web-01", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "arete broker run" in result.output
    assert not (tmp_path / "agents").exists()


def test_agents_add_writes_a_private_config_the_agent_loads_as_is(tmp_path: Path) -> None:
    layout = broker_dir(tmp_path)
    result = CliRunner().invoke(
        agents_app,
        [
            "add",
            "web-01",
            "--data-dir",
            str(layout.data_dir),
            "--label",
            "role=web",
            "--label",
            "site=paris",
            "--no-shell",
            "--mqtt-host",
            "broker.lan",
        ],
    )
    assert result.exit_code == 0, result.output
    config = layout.agent_config("web-01")
    assert str(config) in result.output
    assert f"arete agent run --config {config}" in result.output
    assert mode(config) == 0o600
    settings = load_settings(config, env={})
    assert (settings.id, settings.mqtt.host, settings.mqtt.port) == ("web-01", "broker.lan", 18830)
    assert settings.mqtt.root == "lab"
    assert settings.labels == {"role": "web", "site": "paris"}
    assert settings.shell.enabled is False
    assert settings.mqtt.tls is False
    assert settings.mqtt.password is not None
    hashed = read_password_file(layout.password_file)["web-01"]
    assert verify_password(settings.mqtt.password, hashed)


def test_agents_add_uses_tls_with_a_ca_copy_beside_the_config_it_names_relatively(
    tmp_path: Path,
) -> None:
    layout = broker_dir(tmp_path, tls_port=18883)
    init_tls(layout)
    result = CliRunner().invoke(agents_app, ["add", "a1", "--data-dir", str(layout.data_dir)])
    assert result.exit_code == 0, result.output
    config = layout.agent_config("a1")
    assert 'ca_file = "ca.crt"' in config.read_text()
    assert (layout.agents_dir / "ca.crt").read_bytes() == layout.ca_cert.read_bytes()
    assert mode(layout.agents_dir / "ca.crt") == 0o644

    # The config and the copy moved together to the agent's machine still work.
    elsewhere = tmp_path / "agent-machine"
    elsewhere.mkdir()
    shutil.copy(config, elsewhere / "a1.toml")
    shutil.copy(layout.agents_dir / "ca.crt", elsewhere / "ca.crt")
    settings = load_settings(elsewhere / "a1.toml", env={})
    assert settings.mqtt.tls is True
    assert settings.mqtt.port == 18883
    assert settings.mqtt.ca_file == str(elsewhere / "ca.crt")


def test_agents_add_with_tls_but_no_ca_says_how_to_make_one_and_writes_nothing(
    tmp_path: Path,
) -> None:
    layout = broker_dir(tmp_path, tls_port=18883)
    before = snapshot(layout.data_dir)
    result = CliRunner().invoke(agents_app, ["add", "a1", "--data-dir", str(layout.data_dir)])
    assert result.exit_code == 1
    assert "arete broker tls-init" in result.output
    assert snapshot(layout.data_dir) == before


def test_a_new_ca_refreshes_the_copy_agent_configs_name(tmp_path: Path) -> None:
    layout = broker_dir(tmp_path, tls_port=18883)
    init_tls(layout)
    CliRunner().invoke(agents_app, ["add", "a1", "--data-dir", str(layout.data_dir)])
    old = layout.agent_ca_cert.read_bytes()
    init_tls(layout, new_ca=True)
    assert layout.agent_ca_cert.read_bytes() == layout.ca_cert.read_bytes() != old


def test_concurrent_rotations_of_one_agent_leave_a_config_whose_password_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    layout = broker_dir(tmp_path)
    settings = agent_settings("a1", BrokerInfo(host="127.0.0.1", port=18830, root="lab"))
    issue_agent(layout, "a1", settings)

    def slow_disk(path: Path, text: str, file_mode: int = 0o600) -> None:
        time.sleep(random.uniform(0, 0.02))  # noqa: S311 - timing jitter, not a secret
        write_private(path, text, file_mode)

    monkeypatch.setattr("arete_cli.agents.write_private", slow_disk)
    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(lambda _: issue_agent(layout, "a1", settings, rotate=True), range(12)))
    password = load_settings(layout.agent_config("a1"), env={}).mqtt.password
    assert password is not None
    assert verify_password(password, read_password_file(layout.password_file)["a1"])


def test_agents_list_shows_agents_and_their_configs(tmp_path: Path) -> None:
    layout = broker_dir(tmp_path)
    runner = CliRunner()
    empty = runner.invoke(agents_app, ["list", "--data-dir", str(layout.data_dir)])
    assert "no agents yet" in empty.output
    runner.invoke(agents_app, ["add", "a1", "--data-dir", str(layout.data_dir)])
    listed = runner.invoke(agents_app, ["list", "--data-dir", str(layout.data_dir)])
    assert listed.exit_code == 0
    assert "a1" in listed.output
    assert MAESTRO not in listed.output


def test_agents_remove_revokes_one_agent_and_keeps_the_others(tmp_path: Path) -> None:
    layout = broker_dir(tmp_path)
    runner = CliRunner()
    for agent in ("a1", "a2"):
        runner.invoke(agents_app, ["add", agent, "--data-dir", str(layout.data_dir)])
    result = runner.invoke(agents_app, ["remove", "a1", "--data-dir", str(layout.data_dir)])
    assert result.exit_code == 0, result.output
    assert "removed agent 'a1'" in result.output
    assert not layout.agent_config("a1").exists()
    assert layout.agent_config("a2").exists()
    assert list(read_password_file(layout.password_file)) == [MAESTRO, VIEWER, "a2"]


@pytest.mark.parametrize(("agent_id", "code"), [("ghost", 1), ("viewer", 2), ("bad/id", 2)])
def test_agents_remove_refuses_unknown_agents_and_service_accounts(
    tmp_path: Path, agent_id: str, code: int
) -> None:
    layout = broker_dir(tmp_path)
    before = snapshot(layout.data_dir)
    result = CliRunner().invoke(
        agents_app, ["remove", agent_id, "--data-dir", str(layout.data_dir)]
    )
    assert result.exit_code == code, result.output
    assert snapshot(layout.data_dir) == before


def test_agent_config_points_wildcard_binds_at_this_machine() -> None:
    assert default_mqtt_host("127.0.0.1") == "127.0.0.1"
    assert default_mqtt_host("0.0.0.0") not in ("0.0.0.0", "")
    info = BrokerInfo(host="broker.lan", port=1883, root="arete")
    text = render_checked(agent_settings("a1", info, labels={"k": 'quote " and = sign'}))
    assert 'quote \\" and = sign' in text


def test_agents_add_twice_without_rotate_exits_1_and_keeps_the_first_config(
    tmp_path: Path,
) -> None:
    layout = broker_dir(tmp_path)
    runner = CliRunner()
    first = runner.invoke(agents_app, ["add", "a1", "--data-dir", str(layout.data_dir)])
    assert first.exit_code == 0, first.output
    before = snapshot(layout.data_dir)
    again = runner.invoke(agents_app, ["add", "a1", "--data-dir", str(layout.data_dir)])
    assert again.exit_code == 1
    assert "--rotate" in again.output
    assert snapshot(layout.data_dir) == before


# -- arete broker ----------------------------------------------------------------------
def test_broker_run_without_mosquitto_says_how_to_install_it_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ARETE_MOSQUITTO", str(tmp_path / "no-such-mosquitto"))
    data = tmp_path / "data"
    result = CliRunner().invoke(broker_app, ["run", "--data-dir", str(data)])
    assert result.exit_code == 1
    assert "apt-get install -y mosquitto" in result.output
    assert not data.exists()


def test_tls_init_makes_a_ca_and_a_server_certificate_for_local_and_extra_names(
    tmp_path: Path,
) -> None:
    layout = Layout.at(tmp_path / "data")
    result = init_tls(layout, ["broker.example.lan", "10.0.0.7"])
    assert result.ca_created
    assert result.server_created
    for name in ("localhost", "127.0.0.1", "::1", socket.gethostname()):
        assert name in result.names
    assert {"broker.example.lan", "10.0.0.7"} <= set(result.names)
    assert mode(layout.ca_key) == 0o600
    assert mode(layout.server_key) == 0o600
    ca = x509.load_pem_x509_certificate(layout.ca_cert.read_bytes())
    server = x509.load_pem_x509_certificate(layout.server_cert.read_bytes())
    server.verify_directly_issued_by(ca)
    assert ca.not_valid_after_utc - ca.not_valid_before_utc >= dt.timedelta(days=3650)


def test_tls_init_keeps_existing_files_and_force_reissues_only_the_server_certificate(
    tmp_path: Path,
) -> None:
    layout = Layout.at(tmp_path / "data")
    init_tls(layout)
    ca, server = layout.ca_cert.read_bytes(), layout.server_cert.read_bytes()
    again = init_tls(layout)
    assert not again.ca_created
    assert not again.server_created
    assert (layout.ca_cert.read_bytes(), layout.server_cert.read_bytes()) == (ca, server)
    forced = init_tls(layout, ["new.example.lan"], force=True)
    assert forced.server_created
    assert not forced.ca_created
    assert layout.ca_cert.read_bytes() == ca, "agents keep trusting the same CA"
    assert "new.example.lan" in forced.names


def test_tls_init_refuses_a_name_that_is_not_a_host_name(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        broker_app, ["tls-init", "--data-dir", str(tmp_path / "d"), "--name", "bad name"]
    )
    assert result.exit_code == 2
    assert "certificate name" in result.output
    assert not (tmp_path / "d").exists()


def test_tls_init_checks_extra_names_before_writing_anything(tmp_path: Path) -> None:
    layout = Layout.at(tmp_path / "data")
    with pytest.raises(BrokerConfigError, match="certificate name"):
        init_tls(layout, (name for name in ["ok.example.lan", "bad name"]))
    assert not layout.tls_dir.exists()
    result = init_tls(layout, (name for name in ["ok.example.lan"]))
    assert "ok.example.lan" in result.names


# -- broker run remembers its listeners ------------------------------------------------
def run_fake_broker(data: Path, *args: str) -> str:
    """``arete broker run`` with a "Mosquitto" that exits at once; the output."""
    result = CliRunner().invoke(broker_app, ["run", "--data-dir", str(data), *args])
    assert result.exit_code == 0, result.output
    return result.output


def recorded(data: Path) -> BrokerInfo:
    return load_info(Layout.at(data))


def test_broker_run_remembers_every_listener_until_told_otherwise(
    tmp_path: Path, fake_mosquitto: None
) -> None:
    data = tmp_path / "data"
    run_fake_broker(data, "--port", "18831", "--tls-port", "18832", "--ws-port", "18833", "--wss")
    output = run_fake_broker(data)
    assert "mqtts://127.0.0.1:18832" in output
    assert "wss://127.0.0.1:18833" in output
    assert recorded(data).ws_tls
    assert (recorded(data).port, recorded(data).tls_port, recorded(data).ws_port) == (
        18831,
        18832,
        18833,
    )
    config = (data / "broker" / "mosquitto.conf").read_text()
    assert ("listener", "18832 127.0.0.1") in directives(config)

    run_fake_broker(data, "--tls-port", "18834")  # an explicit option wins
    assert recorded(data).tls_port == 18834
    output = run_fake_broker(data, "--no-tls", "--no-ws")
    assert "mqtts://" not in output
    assert "ws://" not in output
    assert (recorded(data).tls_port, recorded(data).ws_port) == (None, None)
    assert recorded(data).port == 18831


def test_broker_run_remembers_the_queue_limit_and_sys_interval(
    tmp_path: Path, fake_mosquitto: None
) -> None:
    data = tmp_path / "data"
    run_fake_broker(data)
    assert (recorded(data).max_queued_messages, recorded(data).sys_interval_s) == (200_000, 10)
    run_fake_broker(data, "--max-queued-messages", "500000", "--sys-interval", "2")
    run_fake_broker(data)
    config = (data / "broker" / "mosquitto.conf").read_text()
    assert value_of(config, "max_queued_messages") == "500000"
    assert value_of(config, "sys_interval") == "2"
    run_fake_broker(data, "--sys-interval", "10")  # an explicit option wins
    assert (recorded(data).max_queued_messages, recorded(data).sys_interval_s) == (500_000, 10)


def test_a_broker_json_from_before_the_queue_options_gets_the_defaults(tmp_path: Path) -> None:
    layout = Layout.at(tmp_path / "data")
    layout.create()
    layout.state_file.write_text('{"host": "127.0.0.1", "port": 1883, "root": "arete"}')
    assert (load_info(layout).max_queued_messages, load_info(layout).sys_interval_s) == (
        200_000,
        10,
    )


def test_broker_run_refuses_contradictory_listener_options(
    tmp_path: Path, fake_mosquitto: None
) -> None:
    result = CliRunner().invoke(
        broker_app, ["run", "--data-dir", str(tmp_path / "d"), "--tls-port", "8883", "--no-tls"]
    )
    assert result.exit_code == 2
    assert "--no-tls" in result.output
    assert not (tmp_path / "d").exists()


# -- broken files in the data dir ------------------------------------------------------
@pytest.fixture
def fake_mosquitto(monkeypatch: pytest.MonkeyPatch) -> None:
    """A "Mosquitto" that exits at once: `broker run` writes everything, then returns 0."""
    monkeypatch.setenv("ARETE_MOSQUITTO", TRUE)


def assert_one_clear_error(result: Result, *words: str) -> None:
    assert result.exit_code != 0
    assert not isinstance(result.exception, Exception), "an uncaught exception"
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: ")
    for word in words:
        assert word in lines[0]


NOT_UTF8 = b"\xff\xfe not text \x80\n"


@pytest.mark.parametrize(
    "command",
    [
        ["agents", "list"],
        ["agents", "add", "a1"],
        ["agents", "remove", "a1"],
        ["broker", "run", "--port", "18830", "--host", "127.0.0.1", "--root", "lab"],
    ],
)
def test_a_password_file_that_is_not_text_gives_one_clear_line(
    tmp_path: Path, fake_mosquitto: None, command: list[str]
) -> None:
    layout = broker_dir(tmp_path)
    layout.password_file.write_bytes(NOT_UTF8)
    result = CliRunner().invoke(app, [*command, "--data-dir", str(layout.data_dir)])
    assert_one_clear_error(result, str(layout.password_file))


def test_a_secret_file_that_is_not_text_gives_one_clear_line(
    tmp_path: Path, fake_mosquitto: None
) -> None:
    layout = broker_dir(tmp_path)
    layout.secret_file(VIEWER).write_bytes(NOT_UTF8)
    result = CliRunner().invoke(app, ["broker", "run", "--data-dir", str(layout.data_dir)])
    assert_one_clear_error(result, str(layout.secret_file(VIEWER)))


@pytest.mark.parametrize(
    "command",
    [
        ["agents", "add", "a1"],
        ["agents", "list"],
        ["broker", "run", "--port", "18830", "--host", "127.0.0.1", "--root", "lab"],
        ["broker", "tls-init"],
    ],
)
def test_a_broker_dir_that_is_a_file_gives_one_clear_line(
    tmp_path: Path, fake_mosquitto: None, command: list[str]
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "broker").write_text("not a directory\n")
    result = CliRunner().invoke(app, [*command, "--data-dir", str(data)])
    assert_one_clear_error(result, str(data / "broker"))


def test_accounts_added_by_hand_with_other_names_are_not_listed_as_agents(
    tmp_path: Path,
) -> None:
    layout = broker_dir(tmp_path)
    CliRunner().invoke(agents_app, ["add", "a1", "--data-dir", str(layout.data_dir)])
    with layout.password_file.open("a") as passwd:
        passwd.write(f"admin:{hash_password('by-hand')}\n")
    listed = CliRunner().invoke(agents_app, ["list", "--data-dir", str(layout.data_dir)])
    assert listed.exit_code == 0, listed.output
    assert [line.split()[0] for line in listed.output.splitlines()] == ["a1"]


def test_a_corrupt_broker_json_does_not_block_a_run_given_every_option(
    tmp_path: Path, fake_mosquitto: None
) -> None:
    layout = broker_dir(tmp_path)
    layout.state_file.write_text("{not json")
    refused = CliRunner().invoke(broker_app, ["run", "--data-dir", str(layout.data_dir)])
    assert refused.exit_code == 2
    assert str(layout.state_file) in refused.output
    assert "--port, --host and --root" in refused.output

    output = run_fake_broker(
        layout.data_dir, "--port", "18840", "--host", "127.0.0.1", "--root", "lab"
    )
    assert "warning:" in output
    assert (recorded(layout.data_dir).port, recorded(layout.data_dir).root) == (18840, "lab")


@pytest.mark.parametrize(
    "record",
    [
        {"host": 2130706433, "port": 1883, "root": "arete"},  # an int is an IPv4 address
        {"host": "127.0.0.1", "port": 1883, "root": "arete", "ws_port": 0},
        {"host": "127.0.0.1", "port": 1883, "root": "arete", "ws_port": "9001"},
        {"host": "127.0.0.1", "port": 1883, "root": "arete", "ws_port": 1883},
        {"host": "127.0.0.1", "port": 1883, "root": 7},
        {"host": "127.0.0.1", "port": 1883, "root": "arete", "max_queued_messages": "5"},
        {"host": "127.0.0.1", "port": 1883, "root": "arete", "sys_interval_s": 0},
        ["127.0.0.1", 1883],
    ],
)
def test_a_hand_broken_broker_json_is_reported_with_its_path(
    tmp_path: Path, record: object
) -> None:
    layout = Layout.at(tmp_path / "data")
    layout.create()
    layout.state_file.write_text(json.dumps(record))
    with pytest.raises(BrokerConfigError, match=re.escape(str(layout.state_file))):
        load_info(layout)
