"""Settings of the web API: ``ARETE_WEB_*`` environment or keyword arguments.

Built when the app starts (``WebSettings(data_dir=...)``), never at import time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PACKAGE_DASHBOARD = Path(__file__).resolve().parents[1] / "dashboards" / "web" / "dist"


class WebSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ARETE_WEB_", extra="forbid", frozen=True)

    data_dir: Path
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    allowed_origins: tuple[str, ...] = Field(
        (),
        description="Origins allowed for websockets and cookie-authenticated writes, besides"
        " the server's own (the request's Host).",
    )
    session_ttl_s: float = Field(12 * 3600.0, gt=0, le=30 * 86400)
    rate_per_client: float = Field(20.0, gt=0, description="Requests per second per IP.")
    burst_per_client: float = Field(40.0, ge=1)
    rate_per_user: float = Field(20.0, gt=0, description="Requests per second per user.")
    burst_per_user: float = Field(40.0, ge=1)
    login_per_minute: float = Field(5.0, gt=0, description="Login attempts per minute per IP.")
    dashboard_dir: Path | None = Field(
        None, description="The built dashboard (default: dashboards/web/dist or DATA/dashboard)."
    )
    cookie_secure: Literal["auto", "always", "never"] = "auto"
    metric_stream_s: float = Field(
        0.1, gt=0, le=60, description="How often subscribed metric streams look for new samples."
    )
    ws_recheck_s: float = Field(
        5.0,
        gt=0,
        le=300,
        description="How often an open websocket (live events, terminal) checks that its"
        " token or session still holds; a revoked one closes it (code 4401).",
    )
    token_cache_s: float = Field(
        60.0,
        ge=0,
        le=3600,
        description="How long a verified API token skips the slow hash check (its row is"
        " still read on every request, so revoking it takes effect at once).",
    )

    @property
    def users_db(self) -> Path:
        return self.data_dir / "web" / "users.db"

    def dashboard(self) -> Path | None:
        """The dashboard's dist dir, if one is built."""
        for candidate in (self.dashboard_dir, PACKAGE_DASHBOARD, self.data_dir / "dashboard"):
            if candidate is not None and (candidate / "index.html").is_file():
                return candidate
        return None
