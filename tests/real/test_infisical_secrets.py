"""Secrets from Infisical (a local server speaking its documented API): read at start,
re-read on rotation, refused credentials and an unreachable server stop the start with
one clear line, rate limits are waited out, and a rotated MQTT password reconnects a
running maestro to a real broker with the new one."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import SecretStr

from arete.payloads import AlertSeverity
from maestro.errors import ConfigError
from maestro.infisical import Identity, InfisicalClient
from maestro.keys import (
    configured_signing_key,
    new_private_key_pem,
    parse_signing_key,
    public_key_text,
)
from maestro.notify.discord import DiscordChannel
from maestro.notify.message import Notice, NoticeItem, NoticeKind
from maestro.notify.settings import DiscordSettings, TelegramSettings
from maestro.notify.telegram import TelegramBot
from maestro.settings import load_settings, resolve_broker
from tests.fixtures import chat_servers
from tests.fixtures.broker import Broker
from tests.fixtures.chat_servers import FakeDiscord, FakeTelegram
from tests.fixtures.infisical import CLIENT_ID, CLIENT_SECRET, ENVIRONMENT, PROJECT, FakeInfisical
from tests.fixtures.maestro import MaestroThread
from tests.fixtures.procs import ARETE, REPO, free_port, wait_for

NEW_PASSWORD = "rotated-9f8e7d6c5b4a39281706f5e4d3c2b1a0"
TELEGRAM_TOKEN = "123456789:AAF0bC1dE2fG3hI4jK5lM6nO7pQ8rS9tU0v"


@pytest.fixture
def infisical() -> Iterator[FakeInfisical]:
    fake = FakeInfisical().start()
    try:
        yield fake
    finally:
        fake.stop()


def credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, secret: str = CLIENT_SECRET
) -> Path:
    """The machine identity as systemd credentials (0400 files in $CREDENTIALS_DIRECTORY)."""
    creds = tmp_path / "creds"
    creds.mkdir(mode=0o700)
    for name, value in (("infisical-id", CLIENT_ID), ("infisical-secret", secret)):
        (creds / name).write_text(value + "\n")
        (creds / name).chmod(0o400)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    return creds


def secrets_table(url: str) -> dict[str, Any]:
    return {
        "provider": "infisical",
        "site_url": url,
        "project_id": PROJECT,
        "environment": ENVIRONMENT,
        "client_id_file": "$CREDENTIALS_DIRECTORY/infisical-id",
        "client_secret_file": "$CREDENTIALS_DIRECTORY/infisical-secret",
        "refresh_s": 1,
    }


def write_config(path: Path, url: str, data_dir: Path) -> Path:
    table = secrets_table(url)
    lines = [f'data_dir = "{data_dir}"', "[mqtt]", 'password = "infisical:MQTT_PASSWORD"']
    lines += ["[secrets]", *(f"{k} = {json.dumps(v)}" for k, v in table.items())]
    path.write_text("\n".join(lines) + "\n")
    return path


def broker_dir(tmp_path: Path, port: int = 1) -> Path:
    data = tmp_path / "data"
    (data / "broker").mkdir(parents=True)
    (data / "broker" / "broker.json").write_text(
        json.dumps({"host": "127.0.0.1", "port": port, "root": "fleet", "tls_port": None})
    )
    return data


def test_secrets_are_read_at_start_from_credentials_named_in_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, infisical: FakeInfisical
) -> None:
    credentials(tmp_path, monkeypatch)
    infisical.set("MQTT_PASSWORD", "from-infisical-5e6f7a8b9c0d")
    infisical.set("TELEGRAM_TOKEN", TELEGRAM_TOKEN)
    config = write_config(tmp_path / "maestro.toml", infisical.url, broker_dir(tmp_path))
    monkeypatch.setenv("ARETE_MAESTRO_NOTIFY__TELEGRAM__TOKEN", "infisical:TELEGRAM_TOKEN")
    monkeypatch.setenv("ARETE_MAESTRO_NOTIFY__TELEGRAM__CHAT_IDS", "[42]")
    pem = new_private_key_pem().decode()
    infisical.set("SIGNING_KEY", pem)
    monkeypatch.setenv("ARETE_MAESTRO_SIGNING_KEY_PEM", "infisical:SIGNING_KEY")

    settings = load_settings(config)

    assert resolve_broker(settings).password == "from-infisical-5e6f7a8b9c0d"
    assert settings.notify.telegram is not None
    assert settings.notify.telegram.read_token() == TELEGRAM_TOKEN
    key = configured_signing_key(settings)
    assert key is not None
    assert public_key_text(key) == public_key_text(parse_signing_key(pem.encode(), "test"))
    assert infisical.requests["login"] == 1
    assert CLIENT_SECRET not in repr(settings)
    assert "from-infisical" not in repr(settings)


def test_a_rotated_secret_is_seen_at_the_next_refresh_and_only_changes_are_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, infisical: FakeInfisical
) -> None:
    credentials(tmp_path, monkeypatch)
    infisical.set("MQTT_PASSWORD", "first-0a1b2c3d4e5f")
    settings = load_settings(write_config(tmp_path / "m.toml", infisical.url, broker_dir(tmp_path)))
    watcher = settings.secret_watcher
    assert watcher is not None
    seen: list[tuple[tuple[str, ...], str]] = []
    watcher.on_change(lambda ref, value: seen.append((ref, value)))

    assert watcher.check() == []
    infisical.set("MQTT_PASSWORD", NEW_PASSWORD)
    assert watcher.check() == [("mqtt", "password")]
    assert seen == [(("mqtt", "password"), NEW_PASSWORD)]


def test_wrong_client_secret_is_one_clear_error_without_the_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, infisical: FakeInfisical
) -> None:
    credentials(tmp_path, monkeypatch, secret="wrong-secret-0f1e2d3c4b5a69788796a5b4")
    infisical.set("MQTT_PASSWORD", "first-0a1b2c3d4e5f")
    config = write_config(tmp_path / "m.toml", infisical.url, broker_dir(tmp_path))
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    message = str(caught.value)
    assert "refused the machine identity's client id and secret (HTTP 401)" in message
    assert "wrong-secret" not in message


def test_a_missing_secret_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, infisical: FakeInfisical
) -> None:
    credentials(tmp_path, monkeypatch)
    config = write_config(tmp_path / "m.toml", infisical.url, broker_dir(tmp_path))
    with pytest.raises(ConfigError, match="Infisical has no secret 'MQTT_PASSWORD'"):
        load_settings(config)


def test_rate_limits_are_waited_out_as_retry_after_says(infisical: FakeInfisical) -> None:
    infisical.set("TOKEN", "value-1a2b3c4d5e6f")
    waits: list[float] = []
    identity = Identity(infisical.url, CLIENT_ID, CLIENT_SECRET, PROJECT, ENVIRONMENT)
    infisical.rate_limit(2, retry_after="3")
    with InfisicalClient(identity, sleep=waits.append) as client:
        assert client.secret("TOKEN") == "value-1a2b3c4d5e6f"
        assert waits == [3.0, 3.0]
        infisical.rate_limit(100)
        with pytest.raises(ConfigError, match="kept answering 429"):
            client.secret("TOKEN")


def test_an_expired_access_token_is_renewed_by_one_new_login(infisical: FakeInfisical) -> None:
    infisical.set("TOKEN", "value-1a2b3c4d5e6f")
    identity = Identity(infisical.url, CLIENT_ID, CLIENT_SECRET, PROJECT, ENVIRONMENT)
    with InfisicalClient(identity) as client:
        client.secret("TOKEN")
        infisical.expire_tokens()
        assert client.secret("TOKEN") == "value-1a2b3c4d5e6f"
        assert client.logins == 2


def test_infisical_secrets_without_the_provider_are_refused(tmp_path: Path) -> None:
    data = broker_dir(tmp_path)
    with pytest.raises(ConfigError, match='provider is not "infisical"'):
        load_settings(data_dir=data, mqtt={"password": "infisical:MQTT_PASSWORD"})


def run_maestro(config: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ARETE, "maestro", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=False,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **env},
    )


def test_an_unreachable_infisical_stops_the_start_with_one_line_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    creds = credentials(tmp_path, monkeypatch)
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    config = write_config(tmp_path / "m.toml", down, broker_dir(tmp_path))
    done = run_maestro(config, {"CREDENTIALS_DIRECTORY": str(creds)})
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"error: cannot reach Infisical at {down}")


def test_credentials_named_without_systemd_are_one_clear_error(
    tmp_path: Path, infisical: FakeInfisical
) -> None:
    config = write_config(tmp_path / "m.toml", infisical.url, broker_dir(tmp_path))
    env = {k: v for k, v in os.environ.items() if k != "CREDENTIALS_DIRECTORY"}
    done = subprocess.run(
        [*ARETE, "maestro", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=False,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert "$CREDENTIALS_DIRECTORY, which is not set" in done.stderr


def test_a_rotated_mqtt_password_reconnects_the_running_maestro_with_it(
    broker: Broker,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    infisical: FakeInfisical,
) -> None:
    credentials(tmp_path, monkeypatch)
    infisical.set("MQTT_PASSWORD", broker.maestro_password)
    table = secrets_table(infisical.url)
    runner = MaestroThread(
        broker.data_dir,
        "main",
        {
            "mqtt": {
                "password": "infisical:MQTT_PASSWORD",
                "reconnect_min_s": 0.2,
                "reconnect_max_s": 1,
            },
            "secrets": table,
            # The release publisher's own connection uses the same account.
            "releases": {
                "public_keys": [public_key_text(Ed25519PrivateKey.generate().public_key())]
            },
        },
    ).start()
    try:
        assert runner.sync(lambda m: m.link.connects) == 1
        # Rotate: the broker gets the new password (old one gone), then Infisical.
        done = subprocess.run(
            [*ARETE, "broker", "passwd", "maestro", "--data-dir", str(broker.data_dir)],
            input=NEW_PASSWORD + "\n",
            capture_output=True,
            text=True,
            timeout=60,
            cwd=REPO,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert "reloaded its accounts" in done.stdout
        broker.wait_accepts("maestro", NEW_PASSWORD)
        infisical.set("MQTT_PASSWORD", NEW_PASSWORD)
        wait_for(lambda: runner.sync(lambda m: m.link.connects) >= 2, 15, "a reconnect")
        wait_for(lambda: runner.sync(lambda m: m.link.connected), 15, "connected again")
        assert runner.sync(lambda m: m.link.config.password) == NEW_PASSWORD
        publisher = runner.app.release_publisher
        assert publisher is not None
        assert publisher.connection.password == NEW_PASSWORD
        wait_for(lambda: publisher.connected, 15, "the release connection back")
    finally:
        runner.stop()


def test_rotated_chat_secrets_are_used_from_the_next_send(
    fake_telegram: FakeTelegram, fake_discord: FakeDiscord, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the watcher's listener does on a rotation: the next send uses the new
    token / webhook; errors never show the old or the new token."""
    telegram_settings = TelegramSettings(
        token=SecretStr(FakeTelegram.token), chat_ids=[7], base_url=fake_telegram.base_url
    )
    item = NoticeItem(
        alert_id="0123456789abcdef",
        rule="agent_offline",
        severity=AlertSeverity.CRITICAL,
        kind=NoticeKind.FIRING,
        summary="h1 is offline (connection lost)",
        since=time.time(),
    )
    notice = Notice(agent="h1", ts=time.time(), items=[item])
    new_token = "987654321:ROTATED-token-of-the-fake-bot-0000"
    new_webhook_token = "rotated-webhook-token-zyxwvutsrqponmlkjihgfedcba"

    async def scenario() -> list[str]:
        bot = TelegramBot(telegram_settings, FakeTelegram.token)
        [channel] = bot.channels()
        discord = DiscordChannel(
            DiscordSettings(webhook_url=SecretStr("x")), fake_discord.webhook_url
        )
        try:
            outcomes: list[str] = [(await channel.send(notice)).kind]
            outcomes.append((await discord.send(notice)).kind)
            monkeypatch.setattr(fake_telegram, "token", new_token)  # the old one is revoked
            monkeypatch.setattr(chat_servers, "DISCORD_WEBHOOK_TOKEN", new_webhook_token)
            refused = await channel.send(notice)
            outcomes.append(refused.kind)
            assert FakeTelegram.token not in refused.reason
            bot.set_token(new_token)
            discord.set_webhook_url(fake_discord.webhook_url)  # built from the new token
            outcomes += [(await channel.send(notice)).kind, (await discord.send(notice)).kind]
            return outcomes
        finally:
            await bot.aclose()
            await discord.aclose()

    assert asyncio.run(scenario()) == ["sent", "sent", "refused", "sent", "sent"]
    assert len(fake_telegram.sent()) == 2
    assert len(fake_discord.delivered()) == 2
