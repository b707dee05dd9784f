"""Discord through an incoming webhook: ``POST <webhook url>?wait=true`` with JSON.

Answers: 2xx sent (``X-RateLimit-Remaining: 0`` with ``X-RateLimit-Reset-After`` pauses
the channel until the bucket refills); 429 carries ``retry_after`` seconds in the JSON
body and a ``Retry-After`` header; 5xx and network errors are retried; any other 4xx
(401 bad token, 404 unknown webhook, 400 a body Discord refuses) fails for good. The
webhook URL is the secret: it is never logged, and error texts are scrubbed of it.
"""

from __future__ import annotations

import json
import math
from typing import Final

import httpx

from maestro.notify.channel import Outcome, quiet_url_loggers, scrub
from maestro.notify.message import Notice
from maestro.notify.ratelimit import RateLimit
from maestro.notify.render import discord_payload
from maestro.notify.settings import DiscordSettings

CHANNEL_NAME: Final = "discord"
DEFAULT_RETRY_AFTER_S: Final = 1.0
MAX_RETRY_AFTER_S: Final = 3600.0


def _seconds(value: object) -> float | None:
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    if math.isnan(seconds) or seconds < 0:  # not an answer
        return None
    return min(seconds, MAX_RETRY_AFTER_S)


def retry_after_of(response: httpx.Response) -> float:
    """The wait a 429 asks for: the JSON ``retry_after`` first, then ``Retry-After``."""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    if isinstance(body, dict):
        seconds = _seconds(body.get("retry_after"))
        if seconds is not None:
            return seconds
    seconds = _seconds(response.headers.get("retry-after"))
    return DEFAULT_RETRY_AFTER_S if seconds is None else seconds


class DiscordChannel:
    def __init__(self, settings: DiscordSettings, webhook_url: str) -> None:
        quiet_url_loggers()
        self.settings = settings
        self._url = webhook_url
        self._client = httpx.AsyncClient(timeout=settings.request_timeout_s)

    @property
    def name(self) -> str:
        return CHANNEL_NAME

    def new_limit(self) -> RateLimit:
        return RateLimit(self.settings.limit, self.settings.window_s)

    def set_webhook_url(self, url: str) -> None:
        """Use a new webhook URL (rotated in the secrets manager) from the next send."""
        self._url = url

    def _scrub(self, text: str) -> str:
        return scrub(text, [self._url, self._url.rsplit("/", 1)[-1]])

    async def send(self, notice: Notice) -> Outcome:
        try:
            response = await self._client.post(
                self._url, params={"wait": "true"}, json=discord_payload(notice)
            )
        except httpx.HTTPError as exc:
            error = self._scrub(f"{type(exc).__name__} {exc}")
            return Outcome.retry(f"network error: {error}")
        status = response.status_code
        if 200 <= status < 300:
            remaining = response.headers.get("x-ratelimit-remaining")
            reset_after = _seconds(response.headers.get("x-ratelimit-reset-after"))
            if remaining == "0" and reset_after:
                return Outcome.sent(pause_s=reset_after)
            return Outcome.sent()
        if status == 429:
            return Outcome.retry_after(retry_after_of(response), "429 rate limited")
        if status >= 500:
            return Outcome.retry(f"server error {status}")
        return Outcome.refused(f"refused with {status}: {self._scrub(response.text[:200])}")

    async def aclose(self) -> None:
        await self._client.aclose()
