"""Channel settings: secrets from env or files, placeholders and unsafe URLs refused,
and errors that never show the secret."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from maestro.errors import ConfigError
from maestro.notify.settings import DiscordSettings, NotifySettings, TelegramSettings

TOKEN = "123456789:AAEhBOweik6ad9r_QXMENQjcrGbqCr4K-ra"
WEBHOOK = "https://discord.com/api/webhooks/1234567890/abcdefSECRETtoken_xyz"


def test_a_real_looking_token_is_read_and_never_shown() -> None:
    settings = TelegramSettings(token=SecretStr(TOKEN), chat_ids=[-1001])
    assert settings.read_token() == TOKEN
    assert TOKEN not in repr(settings)


def test_a_token_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "tg"
    path.write_text(TOKEN + "\n", encoding="utf-8")
    path.chmod(0o600)
    assert TelegramSettings(token_file=path, chat_ids=[1]).read_token() == TOKEN


def test_a_token_file_other_users_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tg"
    path.write_text(TOKEN + "\n", encoding="utf-8")
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600") as caught:
        TelegramSettings(token_file=path, chat_ids=[1]).read_token()
    assert TOKEN not in str(caught.value)


@pytest.mark.parametrize("token", ["changeme", "your-token", "TOKEN", "<token>", "${TG_TOKEN}", ""])
def test_placeholder_tokens_are_refused(token: str) -> None:
    settings = TelegramSettings(token=SecretStr(token), chat_ids=[1])
    with pytest.raises(ConfigError, match="placeholder"):
        settings.read_token()


def test_something_that_is_not_a_bot_token_is_refused_without_echoing_it() -> None:
    settings = TelegramSettings(token=SecretStr("not-a-token-but-secret"), chat_ids=[1])
    with pytest.raises(ConfigError, match="does not look like a bot token") as caught:
        settings.read_token()
    assert "not-a-token-but-secret" not in str(caught.value)


def test_a_missing_token_file_is_a_clear_error(tmp_path: Path) -> None:
    settings = TelegramSettings(token_file=tmp_path / "nope", chat_ids=[1])
    with pytest.raises(ConfigError, match=r"telegram\.token_file"):
        settings.read_token()


def test_exactly_one_token_source() -> None:
    with pytest.raises(ValidationError, match="exactly one"):
        TelegramSettings(chat_ids=[1])
    with pytest.raises(ValidationError, match="exactly one"):
        TelegramSettings(token=SecretStr(TOKEN), token_file=Path("/x"), chat_ids=[1])


def test_at_least_one_chat_and_no_unknown_keys() -> None:
    with pytest.raises(ValidationError, match="chat_ids"):
        TelegramSettings(token=SecretStr(TOKEN), chat_ids=[])
    with pytest.raises(ValidationError, match="chat_id"):
        TelegramSettings.model_validate({"token": TOKEN, "chat_ids": [1], "chat_id": 2})


@pytest.mark.parametrize(
    "url",
    ["ftp://x/bot", "http://api.example.org/bot", "not a url"],
)
def test_the_bot_api_url_is_https_or_local(url: str) -> None:
    with pytest.raises(ValidationError, match="base_url"):
        TelegramSettings(token=SecretStr(TOKEN), chat_ids=[1], base_url=url)


def test_a_local_bot_api_server_over_http_is_fine() -> None:
    settings = TelegramSettings(
        token=SecretStr(TOKEN), chat_ids=[1], base_url="http://127.0.0.1:81/bot"
    )
    assert settings.base_url.startswith("http://127.0.0.1")


def test_a_webhook_url_is_read_and_checked() -> None:
    assert DiscordSettings(webhook_url=SecretStr(WEBHOOK)).read_webhook_url() == WEBHOOK
    for bad, message in [
        ("changeme", "placeholder"),
        ("http://discord.com/api/webhooks/1/x", "https"),
        ("https://discord.com/channels/1/2", "not a webhook URL"),
    ]:
        with pytest.raises(ConfigError, match=message) as caught:
            DiscordSettings(webhook_url=SecretStr(bad)).read_webhook_url()
        assert "/webhooks/1/x" not in str(caught.value)


def test_retry_bounds_are_consistent() -> None:
    with pytest.raises(ValidationError, match="retry_min_s"):
        NotifySettings(retry_min_s=10, retry_max_s=1)
    assert NotifySettings().telegram is None
