"""Notifications: a durable outbox delivered to Telegram and Discord, within their limits."""

from __future__ import annotations

from maestro.notify.callbacks import AlertActions, CallbackPoller
from maestro.notify.channel import Channel, Outcome
from maestro.notify.discord import DiscordChannel
from maestro.notify.dispatcher import Dispatcher
from maestro.notify.message import Notice, NoticeItem, NoticeKind
from maestro.notify.outbox import NOTIFY_MIGRATIONS, Outbox
from maestro.notify.ratelimit import RateLimit, acquire
from maestro.notify.service import Notifiers
from maestro.notify.settings import DiscordSettings, NotifySettings, TelegramSettings
from maestro.notify.telegram import TelegramBot, TelegramChannel

__all__ = [
    "NOTIFY_MIGRATIONS",
    "AlertActions",
    "CallbackPoller",
    "Channel",
    "DiscordChannel",
    "DiscordSettings",
    "Dispatcher",
    "Notice",
    "NoticeItem",
    "NoticeKind",
    "Notifiers",
    "NotifySettings",
    "Outbox",
    "Outcome",
    "RateLimit",
    "TelegramBot",
    "TelegramChannel",
    "TelegramSettings",
    "acquire",
]
