"""Telegram through python-telegram-bot: one bot, one channel per configured chat.

PTB raises typed errors that map onto delivery outcomes: ``RetryAfter`` (a 429 with
``parameters.retry_after``), ``TimedOut`` and ``NetworkError`` (5xx, connection
failures: retried), ``BadRequest`` (chat not found, a message Telegram will never take),
``Forbidden`` (the bot was blocked) and ``InvalidToken`` (401/404: wrong token) are
refusals. The bot token sits in every request URL, so every error text is scrubbed of
it before it reaches a log or the outbox.
"""

from __future__ import annotations

import datetime as dt
import logging
import warnings
from collections.abc import Callable
from typing import Final

from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, LinkPreviewOptions
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)
from telegram.request import HTTPXRequest
from telegram.warnings import PTBDeprecationWarning

from maestro.notify.channel import Outcome, quiet_url_loggers, scrub
from maestro.notify.message import Notice
from maestro.notify.ratelimit import RateLimit
from maestro.notify.render import telegram_buttons, telegram_text
from maestro.notify.settings import TelegramSettings

log = logging.getLogger(__name__)

# PTB itself reads RetryAfter.retry_after when it builds one, warning each time that the
# attribute will become a timedelta; retry_after_s() below handles both types.
warnings.filterwarnings(
    "ignore", message=r".*attribute `retry_after`", category=PTBDeprecationWarning
)

CHANNEL_PREFIX: Final = "telegram:"


def retry_after_s(exc: RetryAfter) -> float:
    """Seconds a ``RetryAfter`` asks for, whichever type PTB hands out (int or timedelta)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = exc.retry_after
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    return float(value)


def keyboard(rows: list[list[tuple[str, str]]]) -> InlineKeyboardMarkup | None:
    if not rows:
        return None
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton(label, callback_data=data) for label, data in row] for row in rows]
    )


def outcome_of(exc: TelegramError, scrub_secret: Callable[[str], str]) -> Outcome:
    """The delivery outcome a PTB error stands for (the subclass order matters)."""
    outcome: Outcome
    if isinstance(exc, RetryAfter):
        outcome = Outcome.retry_after(retry_after_s(exc), "429 flood control")
    elif isinstance(exc, BadRequest):  # a NetworkError subclass: test it first
        outcome = Outcome.refused(f"bad request: {scrub_secret(exc.message)}")
    elif isinstance(exc, TimedOut):
        # The message may have arrived; retrying risks a duplicate rather than a loss.
        outcome = Outcome.retry("timed out")
    elif isinstance(exc, NetworkError):
        outcome = Outcome.retry(f"network or server error: {scrub_secret(exc.message)}")
    elif isinstance(exc, InvalidToken):
        outcome = Outcome.refused("the bot token was rejected (401/404)")
    elif isinstance(exc, Forbidden):
        outcome = Outcome.refused(f"forbidden: {scrub_secret(exc.message)}")
    elif isinstance(exc, ChatMigrated):
        outcome = Outcome.refused(f"the chat moved to {exc.new_chat_id}; update chat_ids")
    else:
        outcome = Outcome.retry(f"unexpected answer: {scrub_secret(exc.message)}")
    return outcome


class TelegramBot:
    """The shared bot: its HTTP clients (one for sends, one for the long poll)."""

    def __init__(self, settings: TelegramSettings, token: str) -> None:
        quiet_url_loggers()
        self.settings = settings
        self._token = token
        self._old_tokens: list[str] = []  # still scrubbed from errors after a rotation
        timeout = settings.request_timeout_s
        self._request = HTTPXRequest(
            connection_pool_size=8, read_timeout=timeout, write_timeout=timeout,
            connect_timeout=timeout, pool_timeout=timeout,
        )  # fmt: skip
        # The long poll holds its connection for poll_timeout_s; give it room beyond that.
        self._updates_request = HTTPXRequest(
            connection_pool_size=1, read_timeout=settings.poll_timeout_s + timeout,
            write_timeout=timeout, connect_timeout=timeout, pool_timeout=timeout,
        )  # fmt: skip
        self.bot = Bot(
            token,
            base_url=settings.base_url,
            request=self._request,
            get_updates_request=self._updates_request,
        )

    def scrub(self, text: str) -> str:
        return scrub(text, [self._token, *self._old_tokens])

    def set_token(self, token: str) -> None:
        """Use a new bot token (rotated in the secrets manager) from the next request."""
        self._old_tokens.append(self._token)
        self._token = token
        self.bot = Bot(
            token,
            base_url=self.settings.base_url,
            request=self._request,
            get_updates_request=self._updates_request,
        )

    def channels(self) -> list[TelegramChannel]:
        return [TelegramChannel(self, chat_id) for chat_id in self.settings.chat_ids]

    async def aclose(self) -> None:
        await self._request.shutdown()
        await self._updates_request.shutdown()


class TelegramChannel:
    """Sends notices to one chat, with Acknowledge / Silence buttons per firing alert."""

    def __init__(self, bot: TelegramBot, chat_id: int) -> None:
        self._bot = bot
        self.chat_id = chat_id

    @property
    def name(self) -> str:
        return f"{CHANNEL_PREFIX}{self.chat_id}"

    def new_limit(self) -> RateLimit:
        settings = self._bot.settings
        return RateLimit(settings.per_chat_limit, settings.per_chat_window_s)

    async def send(self, notice: Notice) -> Outcome:
        try:
            await self._bot.bot.send_message(
                chat_id=self.chat_id,
                text=telegram_text(notice),
                reply_markup=keyboard(telegram_buttons(notice)),
                link_preview_options=LinkPreviewOptions(is_disabled=True),
            )
        except TelegramError as exc:
            return outcome_of(exc, self._bot.scrub)
        return Outcome.sent()

    async def aclose(self) -> None:
        """The shared :class:`TelegramBot` owns the HTTP clients."""
