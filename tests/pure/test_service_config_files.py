"""One config file per service (control plane, broker, agent): options beat the
environment, which beats the file; an unknown key is refused with its name; secret
files may be systemd credentials named ``$CREDENTIALS_DIRECTORY/NAME``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from arete_cli.main import app
from edge_agent.errors import ConfigError as AgentConfigError
from edge_agent.settings import load_settings as load_agent_settings
from edge_agent.settings import read_password
from maestro.errors import ConfigError
from maestro.keys import (
    configured_signing_key,
    load_signing_key,
    new_private_key_pem,
    parse_signing_key,
    public_key_text,
)
from maestro.secrets import read_secret_file
from maestro.settings import load_settings, resolve_broker
from mosquitto.errors import BrokerConfigError
from mosquitto.passwords import read_password_file, verify_password
from mosquitto.settings import load_broker_settings
from web_api.settings import load_control

PASSWORD = "s3cret-Pa55-from-a-credential"


def data_dir(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    (data / "broker").mkdir(parents=True)
    (data / "broker" / "broker.json").write_text(
        json.dumps({"host": "127.0.0.1", "port": 18830, "root": "fleet", "tls_port": None})
    )
    return data


def credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **files: str) -> Path:
    """A $CREDENTIALS_DIRECTORY as systemd makes it: files 0400, the directory 0500."""
    creds = tmp_path / "credentials"
    creds.mkdir()
    for name, value in files.items():
        (creds / name).write_text(value + "\n")
        (creds / name).chmod(0o400)
    creds.chmod(0o500)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    return creds


# -- the control plane: arete web run --config control.toml --------------------------------
def control_file(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "control.toml"
    path.write_text(f'data_dir = "{data_dir(tmp_path)}"\n{body}')
    return path


def test_control_file_sets_both_the_web_api_and_the_maestro(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    credentials(tmp_path, monkeypatch, **{"mqtt-password": PASSWORD})
    config = control_file(
        tmp_path,
        '[web]\nport = 8081\ntrusted_proxies = ["127.0.0.1"]\n'
        '[maestro]\nreplica = "a"\n'
        '[maestro.mqtt]\npassword_file = "$CREDENTIALS_DIRECTORY/mqtt-password"\n',
    )
    web, maestro = load_control(config)
    assert (web.port, web.trusted_proxies) == (8081, ("127.0.0.1",))
    assert web.data_dir == maestro.data_dir == tmp_path / "data"
    assert maestro.replica == "a"
    assert resolve_broker(maestro).password == PASSWORD


def test_control_options_beat_environment_which_beats_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = control_file(
        tmp_path,
        '[web]\nport = 8081\nhost = "127.0.0.2"\nsession_ttl_s = 60.0\n'
        '[maestro]\nreplica = "file"\n[maestro.mqtt]\nkeepalive_s = 40\nport = 1111\n',
    )
    monkeypatch.setenv("ARETE_WEB_PORT", "8082")
    monkeypatch.setenv("ARETE_WEB_HOST", "127.0.0.3")
    monkeypatch.setenv("ARETE_MAESTRO_MQTT__PORT", "2222")
    monkeypatch.setenv("ARETE_MAESTRO_REPLICA", "env")
    web, maestro = load_control(config, replica="cli", port=8083)
    assert (web.port, web.host, web.session_ttl_s) == (8083, "127.0.0.3", 60.0)
    assert (maestro.replica, maestro.mqtt.port, maestro.mqtt.keepalive_s) == ("cli", 2222, 40)


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ("[webb]\nport = 1\n", "unknown setting webb"),
        ("[web]\nprot = 1\n", "unknown setting prot"),
        ("[maestro.mqtt]\nprot = 1\n", "unknown setting mqtt.prot"),
        ("[maestro]\nsigning_kye_file = 'x'\n", "unknown setting signing_kye_file"),
        ("[web]\nport = 'eighty'\n", "port"),
        ("web = 3\n", "web in"),
    ],
)
def test_control_file_unknown_or_bad_keys_are_named(tmp_path: Path, body: str, named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load_control(control_file(tmp_path, body))


def test_web_run_with_an_unknown_key_is_one_line_and_exit_2(tmp_path: Path) -> None:
    config = control_file(tmp_path, "[web]\nprot = 1\n")
    result = CliRunner().invoke(app, ["web", "run", "--config", str(config)])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"error: invalid web settings (from {config}, ARETE_WEB_* or options): unknown setting prot"
    ]
    assert not (tmp_path / "data" / "web").exists()  # nothing was started or created


def test_web_run_without_any_data_dir_says_where_to_give_one(tmp_path: Path) -> None:
    config = tmp_path / "control.toml"
    config.write_text("[web]\nport = 8081\n")
    result = CliRunner().invoke(
        app,
        ["web", "run", "--config", str(config)],
        env={"ARETE_DATA_DIR": None, "ARETE_MAESTRO_DATA_DIR": None, "ARETE_WEB_DATA_DIR": None},
    )
    assert result.exit_code == 2
    assert "no data dir: give --data-dir DIR, or data_dir in the config file" in result.output


def test_maestro_run_with_an_unknown_key_is_one_line_and_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "maestro.toml"
    config.write_text(f'data_dir = "{data_dir(tmp_path)}"\n[mqtt]\nprot = 1\n')
    result = CliRunner().invoke(app, ["maestro", "run", "--config", str(config)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: ")
    assert lines[0].endswith("unknown setting mqtt.prot")


# -- the broker: arete broker run --config broker.toml ---------------------------------------
def test_broker_file_with_environment_over_it(tmp_path: Path) -> None:
    config = tmp_path / "broker.toml"
    config.write_text('port = 1884\nhost = "0.0.0.0"\ntls_port = 8883\nservice_accounts = false\n')
    settings = load_broker_settings(config, {"ARETE_BROKER_PORT": "1885"})
    assert (settings.port, settings.host, settings.tls_port) == (1885, "0.0.0.0", 8883)
    assert settings.service_accounts is False
    assert load_broker_settings(None, {}).service_accounts is True


@pytest.mark.parametrize(
    ("toml", "env", "named"),
    [
        ("prot = 1\n", {}, "unknown broker setting 'prot'"),
        ("", {"ARETE_BROKER_TLS": "1"}, "unknown broker setting 'tls'"),
        ("port = 70000\n", {}, "port"),
        ("port = [\n", {}, "not valid TOML"),
    ],
)
def test_broker_unknown_or_bad_keys_are_named(
    tmp_path: Path, toml: str, env: dict[str, str], named: str
) -> None:
    config = tmp_path / "broker.toml"
    config.write_text(toml)
    with pytest.raises(BrokerConfigError, match=named):
        load_broker_settings(config, env)


def test_broker_run_with_an_unknown_key_is_one_line_and_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "broker.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\nprot = 1\n')
    result = CliRunner().invoke(app, ["broker", "run", "--config", str(config)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: unknown broker setting 'prot'")
    assert not (tmp_path / "data").exists()


def test_broker_passwd_stores_only_a_hash_of_the_password_read_from_stdin(tmp_path: Path) -> None:
    data = data_dir(tmp_path)  # a broker ran there (--remove wants an Areté data dir)
    runner = CliRunner()
    args = ["broker", "passwd", "maestro", "--data-dir", str(data)]
    first = runner.invoke(app, args, input=PASSWORD + "\n")
    assert (first.exit_code, first.output.strip()) == (0, "maestro: set")
    again = runner.invoke(app, args, input=PASSWORD + "\n")
    assert (again.exit_code, again.output.strip()) == (0, "maestro: unchanged")
    stored = read_password_file(data / "broker" / "passwd")
    assert verify_password(PASSWORD, stored["maestro"])
    every_file = [p for p in data.rglob("*") if p.is_file()]
    assert all(PASSWORD.encode() not in p.read_bytes() for p in every_file)
    assert not (data / "secrets" / "maestro.password").exists()
    short = runner.invoke(app, args, input="short\n")
    assert short.exit_code == 2
    removed = runner.invoke(app, [*args, "--remove"])
    assert (removed.exit_code, removed.output.strip()) == (0, "maestro: removed")
    assert "maestro" not in read_password_file(data / "broker" / "passwd")


# -- $CREDENTIALS_DIRECTORY -----------------------------------------------------------------
def test_every_secret_file_setting_expands_the_credentials_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    creds = credentials(
        tmp_path,
        monkeypatch,
        **{
            "mqtt-password": PASSWORD,
            "telegram": "123456789:AAF0bC1dE2fG3hI4jK5lM6nO7pQ8rS9tU0v",
            "discord": "https://discord.com/api/webhooks/1/abcdefghijklmnop",
            "influx": "influx-token-0a9b8c7d6e5f",
        },
    )
    settings = load_settings(
        data_dir=data_dir(tmp_path),
        signing_key_file="${CREDENTIALS_DIRECTORY}/signing-key",
        mqtt={"password_file": "$CREDENTIALS_DIRECTORY/mqtt-password"},
        notify={
            "telegram": {"token_file": "$CREDENTIALS_DIRECTORY/telegram", "chat_ids": [1]},
            "discord": {"webhook_url_file": "$CREDENTIALS_DIRECTORY/discord"},
        },
        influx={"url": "http://127.0.0.1:8086", "token_file": "$CREDENTIALS_DIRECTORY/influx"},
    )
    assert settings.signing_key == creds / "signing-key"
    assert resolve_broker(settings).password == PASSWORD
    assert settings.notify.telegram is not None
    assert settings.notify.telegram.read_token().startswith("123456789:")
    assert settings.notify.discord is not None
    assert settings.notify.discord.read_webhook_url().endswith("/abcdefghijklmnop")
    assert settings.influx.token_value() == "influx-token-0a9b8c7d6e5f"


def test_naming_the_credentials_directory_outside_systemd_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    with pytest.raises(ConfigError, match=r"\$CREDENTIALS_DIRECTORY, which is not set"):
        load_settings(
            data_dir=data_dir(tmp_path),
            mqtt={"password_file": "$CREDENTIALS_DIRECTORY/mqtt-password"},
        )


@pytest.mark.parametrize(("mode", "accepted"), [(0o400, True), (0o440, True), (0o444, False)])
def test_systemd_credential_modes_pass_the_permission_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: int, accepted: bool
) -> None:
    creds = credentials(tmp_path, monkeypatch)
    creds.chmod(0o700)
    (creds / "token").write_text("a-real-secret\n")
    (creds / "token").chmod(mode)
    if accepted:
        assert read_secret_file(creds / "token", "token_file") == "a-real-secret"
    else:
        with pytest.raises(ConfigError, match="readable by other users"):
            read_secret_file(creds / "token", "token_file")


def test_group_readable_secret_files_outside_the_credentials_directory_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    credentials(tmp_path, monkeypatch)
    loose = tmp_path / "token"
    loose.write_text("a-real-secret\n")
    loose.chmod(0o440)
    with pytest.raises(ConfigError, match="chmod 600"):
        read_secret_file(loose, "token_file")


def test_agent_password_file_may_be_a_credential(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    creds = credentials(tmp_path, monkeypatch, **{"mqtt-password": PASSWORD})
    config = tmp_path / "agent.toml"
    config.write_text(
        'id = "pc-1"\n[mqtt]\npassword_file = "$CREDENTIALS_DIRECTORY/mqtt-password"\n'
    )
    settings = load_agent_settings(config, env=dict(os.environ))
    assert settings.mqtt.password_file == str(creds / "mqtt-password")
    assert read_password(settings) == PASSWORD
    with pytest.raises(AgentConfigError, match=r"mqtt.password_file .*which is not set"):
        load_agent_settings(config, env={})


# -- the signing key without a plain file ---------------------------------------------------
def test_keys_generate_prints_a_key_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    generated = runner.invoke(app, ["keys", "generate", "--stdout"])
    assert generated.exit_code == 0
    pem = generated.stdout
    assert pem.startswith("-----BEGIN PRIVATE KEY-----\n")
    assert list(tmp_path.iterdir()) == []
    public = runner.invoke(app, ["keys", "public", "--private-key-file", "-"], input=pem)
    assert public.exit_code == 0
    # The same key through a credential file gives the same public key line.
    creds = credentials(tmp_path, monkeypatch, **{"signing-key": pem.strip()})
    from_file = runner.invoke(
        app, ["keys", "public", "--private-key-file", "$CREDENTIALS_DIRECTORY/signing-key"]
    )
    assert from_file.exit_code == 0
    assert from_file.stdout == public.stdout
    assert public.stdout.strip() == public_key_text(load_signing_key(creds / "signing-key"))


def test_keys_public_of_garbage_is_one_line_and_exit_2() -> None:
    result = CliRunner().invoke(
        app, ["keys", "public", "--private-key-file", "-"], input="not a key\n"
    )
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: the private key on stdin is not a PEM private key (expected what "
        "`arete keys create` or `arete keys generate --stdout` writes)"
    ]


def test_keys_generate_without_stdout_refuses() -> None:
    result = CliRunner().invoke(app, ["keys", "generate"])
    assert result.exit_code == 2
    assert "--stdout" in result.output


def test_admin_made_from_stdin_leaves_no_one_time_password_file(tmp_path: Path) -> None:
    from web_api.auth.users import UserStore, ensure_admin

    data = data_dir(tmp_path)
    secret = "correct horse battery staple 7"
    result = CliRunner().invoke(
        app,
        ["users", "add", "admin", "--role", "admin", "--password-stdin", "--data-dir", str(data)],
        input=secret + "\n",
    )
    assert result.exit_code == 0, result.output
    assert ensure_admin(data) is None  # what `arete web run` does first: nothing to make
    assert not (data / "web" / "admin-initial.password").exists()
    store = UserStore(data / "web" / "users.db")
    try:
        principal = store.verify_password("admin", secret)
        assert principal is not None
        assert not principal.must_change_password
    finally:
        store.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_broker_passwd_run_as_root_leaves_the_file_to_the_data_dirs_owner(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "broker").mkdir(parents=True)
    for path in (data, data / "broker"):
        os.chown(path, 4242, 4242)  # the service user that runs the broker
    result = CliRunner().invoke(
        app, ["broker", "passwd", "pc-7", "--data-dir", str(data)], input=PASSWORD + "\n"
    )
    assert result.exit_code == 0, result.output
    for name in ("passwd", ".passwd.lock"):
        info = (data / "broker" / name).stat()
        assert (info.st_uid, info.st_gid, info.st_mode & 0o777) == (4242, 4242, 0o600)


def test_the_signing_key_may_come_from_the_environment_even_on_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pem = new_private_key_pem().decode()
    expected = public_key_text(parse_signing_key(pem.encode(), "test"))
    data = data_dir(tmp_path)
    for value in (pem, pem.strip().replace("\n", "\\n")):
        monkeypatch.setenv("ARETE_MAESTRO_SIGNING_KEY_PEM", value)
        key = configured_signing_key(load_settings(data_dir=data))
        assert key is not None
        assert public_key_text(key) == expected
    with pytest.raises(ConfigError, match="signing_key_file or signing_key_pem, not both"):
        load_settings(data_dir=data, signing_key_file=tmp_path / "k")
