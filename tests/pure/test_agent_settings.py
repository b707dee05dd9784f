"""Agent settings: TOML file, ARETE_AGENT_* overlay, refusals that say where, TOML rendering."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_agent.errors import ConfigError
from edge_agent.settings import (
    KNOWN_DEFAULT_SECRETS,
    AgentSettings,
    AllowRule,
    CommandSettings,
    MqttSettings,
    OutboxSettings,
    ShellSettings,
    load_settings,
    read_password,
    render_toml,
)

FULL_TOML = """\
id = "build-01"
state_dir = "/var/lib/arete-agent"
interval_s = 2.5
heartbeat_s = 5
labels = { site = "lyon", role = "ci" }
log_level = "debug"

[mqtt]
host = "broker.lan"
port = 8883
password_file = "/etc/arete/agent.password"
root = "acme/eu"
tls = true
ca_file = "/etc/arete/ca.pem"
metrics_qos = 0

[shell]
allow = ["uptime", "/usr/bin/df"]
allow_shell_strings = false

[outbox]
max_samples = 1000
"""


def write(tmp_path: Path, text: str, name: str = "agent.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_minimal_file_gets_every_default(tmp_path: Path) -> None:
    loaded = load_settings(write(tmp_path, 'id = "a1"\n'), env={})
    assert loaded == AgentSettings(id="a1")
    assert loaded.mqtt.port == 1883
    assert loaded.mqtt.root == "arete"
    assert loaded.mqtt.metrics_qos == 1
    assert loaded.heartbeat_s == 10.0
    assert loaded.username == "a1"


def test_full_file_is_read_into_typed_sections(tmp_path: Path) -> None:
    loaded = load_settings(write(tmp_path, FULL_TOML), env={})
    assert loaded.id == "build-01"
    assert loaded.interval_s == 2.5
    assert loaded.heartbeat_s == 5.0
    assert loaded.labels == {"site": "lyon", "role": "ci"}
    assert loaded.mqtt == MqttSettings(
        host="broker.lan",
        port=8883,
        password_file="/etc/arete/agent.password",
        root="acme/eu",
        tls=True,
        ca_file="/etc/arete/ca.pem",
        metrics_qos=0,
    )
    assert loaded.shell == ShellSettings(allow=["uptime", "/usr/bin/df"], allow_shell_strings=False)
    assert loaded.outbox == OutboxSettings(max_samples=1000)


def test_environment_overrides_the_file_with_nested_keys(tmp_path: Path) -> None:
    env = {
        "ARETE_AGENT_MQTT__PORT": "8884",
        "ARETE_AGENT_MQTT__HOST": "other.lan",
        "ARETE_AGENT_INTERVAL_S": "0.5",
        "ARETE_AGENT_SHELL__ENABLED": "false",
        "ARETE_AGENT_COMMANDS__MAX_TTL_S": "600",
        "UNRELATED": "ignored",
        "ARETE_MAESTRO_PORT": "1",
    }
    loaded = load_settings(write(tmp_path, FULL_TOML), env=env)
    assert loaded.mqtt.port == 8884
    assert loaded.mqtt.host == "other.lan"
    assert loaded.mqtt.root == "acme/eu"  # untouched keys keep the file's value
    assert loaded.interval_s == 0.5
    assert loaded.shell.enabled is False
    assert loaded.commands.max_ttl_s == 600.0


def test_environment_alone_is_enough() -> None:
    loaded = load_settings(None, env={"ARETE_AGENT_ID": "a1", "ARETE_AGENT_MQTT__PORT": "1884"})
    assert loaded.id == "a1"
    assert loaded.mqtt.port == 1884


def test_environment_lists_and_tables_are_json() -> None:
    env = {
        "ARETE_AGENT_ID": "a1",
        "ARETE_AGENT_SHELL__ALLOW": '["uptime", "df"]',
        "ARETE_AGENT_LABELS": '{"site": "lyon"}',
    }
    loaded = load_settings(None, env=env)
    assert loaded.shell.allow == ["uptime", "df"]
    assert loaded.labels == {"site": "lyon"}


def test_environment_json_that_does_not_parse_names_the_variable() -> None:
    env = {"ARETE_AGENT_ID": "a1", "ARETE_AGENT_SHELL__ALLOW": '["uptime",'}
    with pytest.raises(ConfigError, match="ARETE_AGENT_SHELL__ALLOW"):
        load_settings(None, env=env)


def test_environment_cannot_descend_into_a_plain_value(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ARETE_AGENT_ID__X"):
        load_settings(write(tmp_path, 'id = "a1"\n'), env={"ARETE_AGENT_ID__X": "1"})


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('id = "a1"\nbogus = 1\n', "bogus"),
        ('id = "a1"\n[mqtt]\nhots = "x"\n', r"`hots`.*\$\.mqtt"),
        ('id = "a1"\n[shell]\nallowed = []\n', r"`allowed`.*\$\.shell"),
        ('id = "a1"\n[nonsense]\nx = 1\n', "nonsense"),
    ],
)
def test_unknown_keys_are_refused_with_their_path(tmp_path: Path, text: str, where: str) -> None:
    with pytest.raises(ConfigError, match=f"unknown field.*{where}"):
        load_settings(write(tmp_path, text), env={})


def test_unknown_key_from_the_environment_is_refused() -> None:
    env = {"ARETE_AGENT_ID": "a1", "ARETE_AGENT_MQTT__HOTS": "x"}
    with pytest.raises(ConfigError, match=r"`hots`.*\$\.mqtt"):
        load_settings(None, env=env)


@pytest.mark.parametrize(
    ("line", "path"),
    [
        ("[mqtt]\nport = 70000", "$.mqtt.port"),
        ("[mqtt]\nport = 0", "$.mqtt.port"),
        ('[mqtt]\nport = "http"', "$.mqtt.port"),
        ("[mqtt]\nmetrics_qos = 2", "$.mqtt.metrics_qos"),
        ("[mqtt]\nkeepalive_s = 1", "$.mqtt.keepalive_s"),
        ("interval_s = 0", "$.interval_s"),
        ("heartbeat_s = -1", "$.heartbeat_s"),
        ('log_level = "loud"', "$.log_level"),
        ("labels = { a = 1 }", "$.labels"),
        ("[commands]\nmax_ttl_s = 3601", "$.commands.max_ttl_s"),
        ('[commands]\nrestart_mode = "reboot"', "$.commands.restart_mode"),
        ("[outbox]\nmax_samples = 1", "$.outbox.max_samples"),
        ("[screenshot]\nmax_bytes = 1", "$.screenshot.max_bytes"),
        ('[shell]\nallow = "uptime"', "$.shell.allow"),
    ],
)
def test_bad_values_are_refused_with_their_path(tmp_path: Path, line: str, path: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, f'id = "a1"\n{line}\n'), env={})
    assert path in str(caught.value)


def test_bad_value_from_the_environment_is_refused_with_its_path() -> None:
    with pytest.raises(ConfigError, match=r"\$\.mqtt\.port"):
        load_settings(None, env={"ARETE_AGENT_ID": "a1", "ARETE_AGENT_MQTT__PORT": "many"})


def test_missing_id_is_refused() -> None:
    with pytest.raises(ConfigError, match="`id`"):
        load_settings(None, env={})


@pytest.mark.parametrize("agent_id", ["", "a/b", "a+", "maestro", "Viewer", "x" * 65])
def test_invalid_or_reserved_agent_id_is_refused(tmp_path: Path, agent_id: str) -> None:
    with pytest.raises(ConfigError, match="agent id"):
        load_settings(write(tmp_path, f'id = "{agent_id}"\n'), env={})


def test_invalid_topic_root_is_refused() -> None:
    with pytest.raises(ConfigError, match="topic root"):
        load_settings(None, env={"ARETE_AGENT_ID": "a1", "ARETE_AGENT_MQTT__ROOT": "a/#"})


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"ARETE_AGENT_MQTT__PASSWORD": "s3cret!x", "ARETE_AGENT_MQTT__PASSWORD_FILE": "/p"},
            "mqtt.password or mqtt.password_file",
        ),
        (
            {"ARETE_AGENT_MQTT__RECONNECT_MIN_S": "5", "ARETE_AGENT_MQTT__RECONNECT_MAX_S": "1"},
            "reconnect_min_s",
        ),
        ({"ARETE_AGENT_MQTT__CA_FILE": "/ca.pem"}, "mqtt.tls"),
        (
            {"ARETE_AGENT_COMMANDS__PUBLIC_KEY": "k", "ARETE_AGENT_COMMANDS__PUBLIC_KEY_FILE": "f"},
            "commands.public_key",
        ),
    ],
)
def test_contradictory_settings_are_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(None, env={"ARETE_AGENT_ID": "a1", **env})


# -- files -------------------------------------------------------------------------------
def test_missing_file_is_a_config_error_naming_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.toml"
    with pytest.raises(ConfigError, match="does not exist") as caught:
        load_settings(path, env={})
    assert str(path) in str(caught.value)


@pytest.mark.parametrize("text", ['id = "a1', "id = ", "[mqtt\nport = 1", 'id = "a1"\nid = "a2"'])
def test_bad_toml_is_a_config_error_naming_the_path(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match="not valid TOML") as caught:
        load_settings(path, env={})
    assert str(path) in str(caught.value)


def test_a_directory_given_as_config_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        load_settings(tmp_path, env={})


def test_an_empty_environment_variable_is_a_plain_empty_value() -> None:
    with pytest.raises(ConfigError, match="invalid agent id"):
        load_settings(None, env={"ARETE_AGENT_ID": ""})
    settings = load_settings(None, env={"ARETE_AGENT_ID": "a1", "ARETE_AGENT_MQTT__HOST": ""})
    assert settings.mqtt.host == ""


def test_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_bytes(b'id = "\xff\xfe"\n')
    with pytest.raises(ConfigError, match=str(path)):
        load_settings(path, env={})


# -- passwords ---------------------------------------------------------------------------
def with_mqtt(**mqtt: Any) -> AgentSettings:
    return AgentSettings(id="a1", mqtt=MqttSettings(**mqtt))


@pytest.mark.parametrize(
    "secret", [*sorted(KNOWN_DEFAULT_SECRETS), "ChangeMe", " password ", "ARETE"]
)
def test_known_default_secrets_are_refused(secret: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="known default secret"):
        read_password(with_mqtt(password=secret))
    path = write(tmp_path, secret + "\n", "password")
    with pytest.raises(ConfigError, match="known default secret"):
        read_password(with_mqtt(password_file=str(path)))


def test_password_is_read_from_settings_or_from_its_file(tmp_path: Path) -> None:
    assert read_password(with_mqtt(password="x7-Vq2pL")) == "x7-Vq2pL"
    path = write(tmp_path, "  x7-Vq2pL\n", "password")
    assert read_password(with_mqtt(password_file=str(path))) == "x7-Vq2pL"
    assert read_password(with_mqtt()) is None


def test_unreadable_password_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"mqtt\.password_file"):
        read_password(with_mqtt(password_file=str(tmp_path / "missing")))


# -- rendering ---------------------------------------------------------------------------
def round_trip(tmp_path: Path, original: AgentSettings) -> AgentSettings:
    return load_settings(write(tmp_path, render_toml(original)), env={})


def test_render_then_load_gives_equal_settings_for_defaults(tmp_path: Path) -> None:
    original = AgentSettings(id="a1")
    assert render_toml(original) == 'id = "a1"\n'
    assert round_trip(tmp_path, original) == original


def test_render_then_load_gives_equal_settings_for_many_changes(tmp_path: Path) -> None:
    original = load_settings(write(tmp_path, FULL_TOML), env={})
    assert round_trip(tmp_path, original) == original


def test_render_writes_only_what_differs_from_the_defaults() -> None:
    original = AgentSettings(
        id="a1",
        state_dir="/var/lib/x",
        mqtt=MqttSettings(host="broker.lan", password="x7-Vq2pL"),
        commands=CommandSettings(public_key="QUJD"),
    )
    text = render_toml(original)
    assert text == (
        'id = "a1"\nstate_dir = "/var/lib/x"\n\n'
        '[mqtt]\nhost = "broker.lan"\npassword = "x7-Vq2pL"\n\n'
        '[commands]\npublic_key = "QUJD"\n'
    )


# Any text but lone surrogates (which cannot be written as UTF-8), control characters and
# DEL included: TOML wants those escaped, and render_toml must do it.
printable = st.text(st.characters(blacklist_categories=["Cs"]), max_size=20)


program_names = st.from_regex(r"[a-z][a-z0-9_-]{0,10}", fullmatch=True)
allow_entries = st.one_of(
    st.from_regex(r"[a-z][a-z0-9_-]{0,10}( [a-z0-9_.-]{1,8}){0,2}", fullmatch=True),
    st.builds(
        AllowRule,
        program=program_names,
        args=st.lists(st.sampled_from(["-l", "[0-9]+", "a b", 'q"uote']), max_size=2),
        cwd=st.none() | st.sampled_from(["/srv(/.*)?", "/tmp"]),
    ),
)
agent_settings = st.builds(
    AgentSettings,
    id=st.just("a1"),
    interval_s=st.floats(min_value=0.1, max_value=3600),
    labels=st.dictionaries(printable, printable, max_size=4),
    mqtt=st.builds(MqttSettings, host=printable, port=st.integers(min_value=1, max_value=65535)),
    shell=st.builds(ShellSettings, allow=st.lists(allow_entries, max_size=4)),
)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=50)
@given(original=agent_settings)
def test_render_then_load_round_trips_any_printable_values(
    tmp_path: Path, original: AgentSettings
) -> None:
    assert round_trip(tmp_path, original) == original


def test_relative_paths_in_a_config_file_are_relative_to_that_file(tmp_path: Path) -> None:
    folder = tmp_path / "etc-arete"
    folder.mkdir()
    path = write(
        folder,
        'id = "a1"\nstate_dir = "state"\n'
        '[mqtt]\ntls = true\nca_file = "ca.crt"\npassword_file = "secrets/pw"\n'
        '[commands]\npublic_key_file = "/abs/maestro.pub"\n',
    )
    settings = load_settings(path, env={})
    assert settings.mqtt.ca_file == str(folder / "ca.crt")
    assert settings.mqtt.password_file == str(folder / "secrets" / "pw")
    assert settings.state_dir == str(folder / "state")
    assert settings.commands.public_key_file == "/abs/maestro.pub", "absolute stays as is"


def test_paths_from_the_environment_are_taken_as_given(tmp_path: Path) -> None:
    path = write(tmp_path, 'id = "a1"\n')
    settings = load_settings(path, env={"ARETE_AGENT_MQTT__PASSWORD_FILE": "pw"})
    assert settings.mqtt.password_file == "pw"


# -- shell allowlist -----------------------------------------------------------------------
def test_allowlist_entries_are_exact_command_lines_or_tables_with_argument_patterns(
    tmp_path: Path,
) -> None:
    text = """\
id = "a1"

[shell]
allow = [
  "uptime",
  "systemctl status 'my unit'",
  { program = "journalctl", args = ["-u", "[a-z0-9@._-]+", "-n", "[0-9]{1,4}"] },
  { program = "/usr/bin/ls", any_args = true, cwd = "/srv(/.*)?" },
]
"""
    loaded = load_settings(write(tmp_path, text), env={})
    assert loaded.shell.allow[:2] == ["uptime", "systemctl status 'my unit'"]
    assert loaded.shell.allow[2] == AllowRule(
        program="journalctl", args=["-u", "[a-z0-9@._-]+", "-n", "[0-9]{1,4}"]
    )
    assert loaded.shell.allow[3] == AllowRule(
        program="/usr/bin/ls", any_args=True, cwd="/srv(/.*)?"
    )


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ('""', "an empty entry allows nothing"),
        ('"echo \'unclosed"', "not a valid command line"),
        ('"bin/tool"', "not a relative one"),
        ('{ program = "grep", args = ["("] }', "not a valid regular expression"),
        ('{ program = "ls", cwd = "[" }', "not a valid regular expression"),
        ('{ program = "ls", args = ["-l"], any_args = true }', "not both"),
        ('{ program = "ls", argz = ["-l"] }', "argz"),
    ],
)
def test_bad_allowlist_entries_are_refused_with_their_place(
    tmp_path: Path, entry: str, message: str
) -> None:
    text = f'id = "a1"\n\n[shell]\nallow = ["uptime", {entry}]\n'
    with pytest.raises(ConfigError, match=message) as caught:
        load_settings(write(tmp_path, text), env={})
    assert "shell.allow[1]" in str(caught.value) or "$.shell.allow[1]" in str(caught.value)
