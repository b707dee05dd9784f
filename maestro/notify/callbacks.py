"""The Acknowledge / Silence 1 h buttons: a long poll on ``getUpdates`` for callback queries.

Only presses in the configured chats act (a bot can be added to any group; the chat id
is what the operator vouched for). The actor recorded is ``telegram:<username or id>``.
Every press is answered (the button stops spinning) and, once it acted, the message's
buttons for that alert are removed: both best effort, the action itself is what counts.

The update offset is kept in the store, so a restart neither replays presses it had
handled nor skips ones it had not (a crash between acting and saving the offset
replays that press; acknowledging twice is harmless).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Final, Protocol

from telegram import CallbackQuery, InlineKeyboardMarkup, Message
from telegram.error import Conflict, Forbidden, InvalidToken, RetryAfter, TelegramError

from arete.backoff import Backoff
from maestro.diskstate import Throttle
from maestro.errors import AlertError, MaestroError
from maestro.notify.outbox import get_state, set_state
from maestro.notify.render import parse_callback, without_alert_buttons
from maestro.notify.telegram import TelegramBot, keyboard, retry_after_s
from maestro.store.core import Store

log = logging.getLogger(__name__)

OFFSET_KEY: Final = "telegram.update_offset"


class AlertActions(Protocol):
    """What a button press may do; :class:`maestro.alerts.AlertService` provides it."""

    async def ack(self, alert_id: str, actor: str) -> Any: ...

    async def silence_alert(self, alert_id: str, duration_s: float, actor: str) -> Any: ...


def actor_of(query: CallbackQuery) -> str:
    user = query.from_user
    return f"telegram:{user.username or user.id}"


class CallbackPoller:
    def __init__(
        self,
        bot: TelegramBot,
        store: Store,
        actions: AlertActions,
        *,
        backoff: Backoff | None = None,
        gate: Callable[[], bool] | None = None,
    ) -> None:
        """``gate`` says whether this process polls now: Telegram lets one process poll a
        bot, so of several maestro replicas only the leader should."""
        self._bot = bot
        self._store = store
        self._actions = actions
        self._gate = gate
        self._allowed = frozenset(bot.settings.chat_ids)
        self._backoff = backoff or Backoff(1.0, 60.0)
        self.handled = 0
        self.ignored = 0
        self._store_log = Throttle()

    async def run(self) -> None:
        """Poll until cancelled, or until Telegram rejects the token for good."""
        stored = await self._store.read(lambda conn: get_state(conn, OFFSET_KEY))
        offset = int(stored) if stored and stored.isdigit() else None
        timeout = self._bot.settings.poll_timeout_s
        while True:
            if self._gate is not None and not self._gate():
                await asyncio.sleep(timeout)
                continue
            try:
                updates = await self._bot.bot.get_updates(
                    offset=offset, timeout=timeout, allowed_updates=["callback_query"]
                )
            except RetryAfter as exc:
                await asyncio.sleep(retry_after_s(exc))
                continue
            except (InvalidToken, Forbidden):
                log.error("telegram rejected the bot token; buttons stay inactive")
                return
            except Conflict:
                log.warning(
                    "telegram getUpdates conflict: another poller (a second maestro?) or a"
                    " webhook uses this bot"
                )
                await asyncio.sleep(self._backoff.next())
                continue
            except TelegramError as exc:
                delay = self._backoff.next()
                log.warning(
                    "telegram poll failed",
                    extra={"kv": {"error": self._bot.scrub(exc.message), "retry_in_s": delay}},
                )
                await asyncio.sleep(delay)
                continue
            self._backoff.reset()
            if not updates:
                continue
            for update in updates:
                if update.callback_query is not None:
                    await self._handle_safely(update.callback_query)
            offset = updates[-1].update_id + 1
            await self._save_offset(offset)

    async def _save_offset(self, offset: int) -> None:
        """Remember how far the buttons were handled; if the store refuses (disk full) the
        offset stays in memory (polling goes on from it) and the next save stores it."""
        try:
            await self._store.write(lambda conn: set_state(conn, OFFSET_KEY, str(offset)))
        except MaestroError as exc:
            if self._store_log.ready(time.monotonic()):
                log.error(
                    "telegram button offset not stored; kept in memory",
                    extra={"kv": {"error": str(exc), "repeats": self._store_log.suppressed}},
                )
        else:
            self._store_log.reset()

    async def _handle_safely(self, query: CallbackQuery) -> None:
        try:
            await self.handle(query)
        except Exception:  # one odd update must not stop the buttons for everyone
            log.exception("telegram callback could not be handled")

    async def handle(self, query: CallbackQuery) -> None:
        chat_id = query.message.chat.id if query.message is not None else None
        if chat_id not in self._allowed:
            self.ignored += 1
            log.warning(
                "telegram button press from a chat that is not configured; ignored",
                extra={"kv": {"chat_id": chat_id, "user_id": query.from_user.id}},
            )
            await self._answer(query, "Not allowed here.")
            return
        action = parse_callback(query.data)
        if action is None:
            self.ignored += 1
            await self._answer(query, "Unknown button.")
            return
        actor = actor_of(query)
        try:
            if action.action == "ack":
                await self._actions.ack(action.alert_id, actor)
                answer = "Acknowledged."
            else:
                await self._actions.silence_alert(action.alert_id, action.seconds, actor)
                answer = f"Silenced for {action.seconds // 60} min."
        except AlertError as exc:
            await self._answer(query, str(exc)[:190])
            return
        except MaestroError as exc:
            log.error("telegram button press failed", extra={"kv": {"error": str(exc)}})
            await self._answer(query, "Could not record that; try again.")
            return
        self.handled += 1
        log.info(
            "telegram button press",
            extra={"kv": {"action": action.action, "alert_id": action.alert_id, "actor": actor}},
        )
        await self._answer(query, answer)
        await self._drop_buttons(query, action.alert_id)

    async def _answer(self, query: CallbackQuery, text: str) -> None:
        try:
            await self._bot.bot.answer_callback_query(query.id, text=text)
        except TelegramError as exc:
            log.info(
                "telegram callback answer failed",
                extra={"kv": {"error": self._bot.scrub(exc.message)}},
            )

    async def _drop_buttons(self, query: CallbackQuery, alert_id: str) -> None:
        message = query.message
        if not isinstance(message, Message) or message.reply_markup is None:
            return
        rows = [
            [(button.text, str(button.callback_data)) for button in row]
            for row in message.reply_markup.inline_keyboard
        ]
        remaining: InlineKeyboardMarkup | None = keyboard(without_alert_buttons(rows, alert_id))
        try:
            await self._bot.bot.edit_message_reply_markup(
                chat_id=message.chat.id, message_id=message.message_id, reply_markup=remaining
            )
        except TelegramError as exc:
            log.info(
                "telegram buttons could not be removed",
                extra={"kv": {"error": self._bot.scrub(exc.message)}},
            )
