"""Notification channel settings: Telegram (a bot and its chats) and a Discord webhook.

Secrets come from the environment (the maestro's settings map ``ARETE_MAESTRO_...``
variables onto these fields) or from files, never from a committed config; known
placeholders ("changeme", "your-token", ...) are refused so a copied example cannot
run half-configured. Nothing here prints a secret: ``SecretStr`` hides it in reprs and
errors name the field, never the value.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Final
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from maestro.errors import ConfigError
from maestro.secrets import SecretPath, read_secret_file

PLACEHOLDER_SECRETS: Final = frozenset(
    {
        "",
        "changeme",
        "change-me",
        "change_me",
        "token",
        "your-token",
        "your_token",
        "yourtoken",
        "bot-token",
        "bot_token",
        "secret",
        "password",
        "xxx",
        "todo",
        "none",
        "null",
        "webhook",
        "your-webhook-url",
        "https://discord.com/api/webhooks/...",
    }
)
# BotFather tokens: "<bot id>:<35 url-safe characters>"; a little leeway in the length.
_TELEGRAM_TOKEN_RE: Final = re.compile(r"^\d{1,20}:[A-Za-z0-9_-]{20,100}\Z")
_TEMPLATE_RE: Final = re.compile(r"^(<.*>|\$\{.*\}|\{\{.*\}\}|x+)\Z", re.IGNORECASE)

PosFloat = Annotated[float, Field(gt=0)]


def is_placeholder(secret: str) -> bool:
    value = secret.strip()
    return value.lower() in PLACEHOLDER_SECRETS or bool(_TEMPLATE_RE.fullmatch(value))


def _read_secret(value: SecretStr | None, file: Path | None, field: str, file_field: str) -> str:
    if file is not None:
        secret = read_secret_file(file, file_field)
    elif value is not None:
        secret = value.get_secret_value().strip()
    else:  # the model validator makes this unreachable
        raise ConfigError(f"set {field} or {file_field}")
    if is_placeholder(secret):
        raise ConfigError(f"{field} is a placeholder; set the real secret")
    return secret


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TelegramSettings(_Section):
    token: SecretStr | None = None
    token_file: SecretPath | None = None
    chat_ids: Annotated[list[int], Field(min_length=1, max_length=50)]
    base_url: str = "https://api.telegram.org/bot"
    # Telegram asks bots for about one message a second per chat.
    per_chat_limit: Annotated[int, Field(ge=1, le=30)] = 1
    per_chat_window_s: PosFloat = 1.0
    callbacks: bool = True  # long-poll getUpdates for the Acknowledge / Silence buttons
    poll_timeout_s: Annotated[int, Field(ge=1, le=50)] = 25
    request_timeout_s: PosFloat = 10.0

    @model_validator(mode="after")
    def _one_token_source(self) -> TelegramSettings:
        if (self.token is None) == (self.token_file is None):
            raise ValueError("set exactly one of telegram.token and telegram.token_file")
        return self

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        problem = url_problem(value, "telegram.base_url")
        if problem:
            raise ValueError(problem)
        return value

    def read_token(self) -> str:
        token = _read_secret(self.token, self.token_file, "telegram.token", "telegram.token_file")
        if not _TELEGRAM_TOKEN_RE.fullmatch(token):
            raise ConfigError(
                "telegram.token does not look like a bot token ('<digits>:<secret>' from"
                " @BotFather)"
            )
        return token


class DiscordSettings(_Section):
    webhook_url: SecretStr | None = None
    webhook_url_file: SecretPath | None = None
    # Discord's webhook bucket: 5 requests per 2 seconds.
    limit: Annotated[int, Field(ge=1, le=50)] = 5
    window_s: PosFloat = 2.0
    request_timeout_s: PosFloat = 10.0

    @model_validator(mode="after")
    def _one_url_source(self) -> DiscordSettings:
        if (self.webhook_url is None) == (self.webhook_url_file is None):
            raise ValueError("set exactly one of discord.webhook_url and discord.webhook_url_file")
        return self

    def read_webhook_url(self) -> str:
        url = _read_secret(
            self.webhook_url,
            self.webhook_url_file,
            "discord.webhook_url",
            "discord.webhook_url_file",
        )
        problem = url_problem(url, "discord.webhook_url")
        if problem:
            raise ConfigError(problem)
        if "/webhooks/" not in urlsplit(url).path:
            raise ConfigError(
                "discord.webhook_url is not a webhook URL (…/api/webhooks/<id>/<token>)"
            )
        return url


class NotifySettings(_Section):
    telegram: TelegramSettings | None = None
    discord: DiscordSettings | None = None
    retry_min_s: PosFloat = 1.0  # 5xx and network errors: jittered exponential backoff
    retry_max_s: PosFloat = 300.0
    # A notification still undelivered after this long is marked failed (stale news).
    give_up_after_s: PosFloat = 24 * 3600.0
    poll_s: PosFloat = 1.0  # how often each channel looks at the outbox when not woken
    keep_days: PosFloat = 30.0  # sent/failed rows are pruned after this

    @model_validator(mode="after")
    def _retry_bounds(self) -> NotifySettings:
        if self.retry_min_s > self.retry_max_s:
            raise ValueError("retry_min_s must not exceed retry_max_s")
        return self


def url_problem(url: str, field: str) -> str | None:
    """Why ``url`` is unusable, or ``None``: http(s) with a host, and plain http only to
    this machine (the token rides in the URL)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return f"{field} is not a valid URL"
    if parts.scheme not in ("http", "https") or not host:
        return f"{field} must be an http(s) URL"
    if parts.scheme == "http" and not _is_loopback(host):
        return f"{field} must use https (plain http only to localhost)"
    return None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
