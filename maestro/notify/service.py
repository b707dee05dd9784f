"""The notifiers of one maestro: channels from settings, the outbox and its dispatcher,
and the Telegram button poller.

Wiring (the alert service needs the outbox, the poller needs the alert service)::

    notifiers = Notifiers.from_settings(store, settings.notify)
    alerts = AlertService(..., outbox=notifiers.outbox)
    group.create_task(notifiers.run(actions=alerts))
    ...
    await notifiers.aclose()
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

from maestro.notify.callbacks import AlertActions, CallbackPoller
from maestro.notify.channel import Channel
from maestro.notify.discord import DiscordChannel
from maestro.notify.dispatcher import Dispatcher
from maestro.notify.health import ChannelHealth, read_health
from maestro.notify.outbox import Outbox
from maestro.notify.settings import NotifySettings
from maestro.notify.telegram import TelegramBot
from maestro.store.core import Store

log = logging.getLogger(__name__)


class Notifiers:
    def __init__(
        self,
        store: Store,
        settings: NotifySettings,
        channels: Sequence[Channel],
        *,
        telegram: TelegramBot | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.outbox = Outbox([channel.name for channel in channels])
        self.dispatcher = Dispatcher(store, self.outbox, channels, settings, clock=clock)
        self.telegram = telegram
        self.poller: CallbackPoller | None = None
        # What the Telegram buttons act on; set it (or pass it to run()) once the alert
        # service exists, which itself needs this object's outbox.
        self.actions: AlertActions | None = None
        # Whether this replica polls the Telegram buttons now (e.g. the registry's
        # is_leader): Telegram allows one poller per bot.
        self.gate: Callable[[], bool] | None = None
        self._store = store

    @classmethod
    def from_settings(
        cls, store: Store, settings: NotifySettings, *, clock: Callable[[], float] = time.time
    ) -> Notifiers:
        """Read the secrets and build the channels; raises :class:`ConfigError`."""
        channels: list[Channel] = []
        telegram = None
        if settings.telegram is not None:
            telegram = TelegramBot(settings.telegram, settings.telegram.read_token())
            channels.extend(telegram.channels())
        if settings.discord is not None:
            url = settings.discord.read_webhook_url()
            channels.append(DiscordChannel(settings.discord, url))
        if not channels:
            log.info("no notification channel configured; alerts are published only")
        return cls(store, settings, channels, telegram=telegram, clock=clock)

    async def run(self, actions: AlertActions | None = None) -> None:
        """Deliver notifications (and, with ``actions``, handle Telegram buttons)."""
        actions = actions if actions is not None else self.actions
        async with asyncio.TaskGroup() as group:
            group.create_task(self.dispatcher.run(), name="notify-dispatcher")
            telegram = self.telegram
            if telegram is not None and telegram.settings.callbacks and actions is not None:
                self.poller = CallbackPoller(telegram, self._store, actions, gate=self.gate)
                group.create_task(self.poller.run(), name="notify-telegram-buttons")

    async def health(self) -> list[ChannelHealth]:
        """Each configured channel: last delivery, last failure and why, queue length."""
        names = sorted(self.dispatcher.channels)
        figures = await self._store.read(lambda conn: read_health(conn, names))
        d = self.dispatcher
        return [
            replace(
                figures[name],
                sent=d.sent.get(name, 0),
                failed=d.failed.get(name, 0),
                retried=d.retried.get(name, 0),
            )
            for name in names
        ]

    async def aclose(self) -> None:
        await self.dispatcher.aclose()
        if self.telegram is not None:
            await self.telegram.aclose()
