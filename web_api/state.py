"""What the app holds while it runs: settings, the user store, the maestro, limiters."""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from web_api.auth.users import Principal, UserStore
from web_api.ratelimit import RateLimiter
from web_api.settings import WebSettings

if TYPE_CHECKING:
    from maestro.app import Maestro
    from web_api.jobs import JobRunner


@dataclass
class AppState:
    settings: WebSettings
    users: UserStore
    client_limit: RateLimiter
    user_limit: RateLimiter
    login_limit: RateLimiter
    maestro: Maestro | None = None
    jobs: JobRunner | None = None
    _token_cache: dict[str, tuple[Principal, float]] = field(default_factory=dict)

    @classmethod
    def build(cls, settings: WebSettings) -> AppState:
        return cls(
            settings=settings,
            users=UserStore(settings.users_db),
            client_limit=RateLimiter(settings.rate_per_client, settings.burst_per_client),
            user_limit=RateLimiter(settings.rate_per_user, settings.burst_per_user),
            login_limit=RateLimiter(settings.login_per_minute / 60.0, settings.login_per_minute),
        )

    async def principal_for_token(self, token: str) -> Principal | None:
        """Verify an API token (argon2, in a thread), trusting a recent success a while."""
        key = hashlib.sha256(token.encode()).hexdigest()
        now = time.monotonic()
        cached = self._token_cache.get(key)
        if cached is not None and now - cached[1] < self.settings.token_cache_s:
            return cached[0]
        principal = await asyncio.to_thread(self.users.verify_token, token)
        if principal is not None and self.settings.token_cache_s > 0:
            if len(self._token_cache) > 1000:
                self._token_cache.clear()
            self._token_cache[key] = (principal, now)
        return principal

    def forget_tokens(self) -> None:
        """After a user change: every token is verified again."""
        self._token_cache.clear()

    async def principal_for_session(self, session_id: str) -> Principal | None:
        return await asyncio.to_thread(self.users.session_user, session_id)
