"""Maestro settings: data dir defaults, precedence, and refusals with clear reasons."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from maestro.errors import ConfigError
from maestro.settings import load_settings, resolve_broker

PASSWORD = "s3cret-Pa55"


def data_dir(tmp_path: Path, password: str = PASSWORD, mode: int = 0o600) -> Path:
    (tmp_path / "broker").mkdir()
    (tmp_path / "broker" / "broker.json").write_text(
        json.dumps({"host": "127.0.0.1", "port": 18830, "root": "fleet", "tls_port": None})
    )
    secrets = tmp_path / "secrets"
    secrets.mkdir(mode=0o700)
    (secrets / "maestro.password").write_text(password + "\n")
    (secrets / "maestro.password").chmod(mode)
    return tmp_path


def test_a_broker_data_dir_is_all_the_maestro_needs(tmp_path: Path) -> None:
    settings = load_settings(data_dir=data_dir(tmp_path))
    broker = resolve_broker(settings)
    assert (broker.host, broker.port, broker.root) == ("127.0.0.1", 18830, "fleet")
    assert broker.username == "maestro"
    assert broker.password == PASSWORD
    assert settings.database == tmp_path / "maestro" / "main.db"


def test_options_beat_environment_which_beats_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "maestro.toml"
    config.write_text('replica = "from-file"\n[mqtt]\nport = 1111\nkeepalive_s = 40\n')
    monkeypatch.setenv("ARETE_MAESTRO_MQTT__PORT", "2222")
    settings = load_settings(config, data_dir=data_dir(tmp_path), replica="from-cli")
    assert settings.replica == "from-cli"
    assert settings.mqtt.port == 2222
    assert settings.mqtt.keepalive_s == 40


@pytest.mark.parametrize(
    ("toml", "reason"),
    [
        ("[mqtt]\nport = 70000\n", "mqtt.port"),
        ("[mqtt]\nprot = 1\n", "mqtt.prot"),
        ("[liveness]\ncritical_after = 0\n", "liveness.critical_after"),
        ("[store]\nraw_retention_h = -1\n", "store.raw_retention_h"),
        ("replica = [1]\n", "replica"),
        ("not toml at all = = =\n", "not valid TOML"),
    ],
)
def test_bad_config_files_are_refused_with_the_setting_named(
    tmp_path: Path, toml: str, reason: str
) -> None:
    config = tmp_path / "maestro.toml"
    config.write_text(toml)
    with pytest.raises(ConfigError) as caught:
        load_settings(config, data_dir=data_dir(tmp_path))
    assert reason in str(caught.value)


def test_a_replica_name_that_cannot_be_a_topic_level_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="replica"):
        load_settings(data_dir=data_dir(tmp_path), replica="a/b")


def test_placeholder_passwords_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARETE_MAESTRO_MQTT__PASSWORD", "changeme")
    settings = load_settings(data_dir=data_dir(tmp_path))
    with pytest.raises(ConfigError, match="placeholder"):
        resolve_broker(settings)


def test_a_password_file_others_can_read_is_refused(tmp_path: Path) -> None:
    settings = load_settings(data_dir=data_dir(tmp_path, mode=0o644))
    with pytest.raises(ConfigError, match="chmod 600"):
        resolve_broker(settings)


def test_a_missing_data_dir_says_what_to_run(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "nothing-here")
    with pytest.raises(ConfigError, match="arete broker run"):
        resolve_broker(settings)


def test_the_settings_example_in_the_docs_loads(tmp_path: Path) -> None:
    docs = Path(__file__).resolve().parents[2] / "docs" / "maestro.md"
    example = docs.read_text().split("```toml\n", 1)[1].split("```", 1)[0]
    config = tmp_path / "maestro.toml"
    config.write_text(example)
    settings = load_settings(config, data_dir=data_dir(tmp_path))
    assert settings.metrics_port == 9464
