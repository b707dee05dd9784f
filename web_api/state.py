"""What the app holds while it runs: settings, the user store, the maestro, limiters."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
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
    account_login_limit: RateLimiter
    maestro: Maestro | None = None
    jobs: JobRunner | None = None

    @classmethod
    def build(cls, settings: WebSettings) -> AppState:
        return cls(
            settings=settings,
            users=UserStore(settings.users_db, token_cache_s=settings.token_cache_s),
            client_limit=RateLimiter(settings.rate_per_client, settings.burst_per_client),
            user_limit=RateLimiter(settings.rate_per_user, settings.burst_per_user),
            login_limit=RateLimiter(settings.login_per_minute / 60.0, settings.login_per_minute),
            account_login_limit=RateLimiter(
                settings.login_per_minute_per_user / 60.0, settings.login_per_minute_per_user
            ),
        )

    async def principal_for_token(self, token: str) -> Principal | None:
        """Verify an API token in a thread (its row is read every time, argon2 only now
        and then: see ``UserStore``), so a revoked token fails on its next request."""
        return await asyncio.to_thread(self.users.verify_token, token)

    async def principal_for_session(self, session_id: str) -> Principal | None:
        return await asyncio.to_thread(self.users.session_user, session_id)
