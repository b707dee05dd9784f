"""Settings of the web API: ``ARETE_WEB_*`` environment or keyword arguments.

Built when the app starts (``WebSettings(data_dir=...)``), never at import time.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator
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
    login_per_minute_per_user: float = Field(
        10.0,
        gt=0,
        description="Login attempts per minute per user name, from any address (so that"
        " many addresses cannot guess one password faster).",
    )
    trusted_proxies: tuple[str, ...] = Field(
        (),
        description="Addresses or networks (CIDR) of the reverse proxies whose"
        " X-Forwarded-For and X-Forwarded-Proto are believed. None by default: the client's"
        " address is the connection's own, and nobody can pick theirs with a header.",
    )
    max_body_bytes: int = Field(
        1024 * 1024,
        ge=1024,
        le=64 * 1024 * 1024,
        description="Largest request body (a larger one gets 413 before it is read) and"
        " largest websocket message.",
    )
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

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(
                    f"trusted proxy {entry!r} is not an IP address or network (10.0.0.5, "
                    "10.0.0.0/24, ::1)"
                ) from None
        return value

    def server_options(self) -> dict[str, Any]:
        """How uvicorn must run this app: forwarded headers only from trusted proxies."""
        return {
            "host": self.host,
            "port": self.port,
            # uvicorn would otherwise believe X-Forwarded-For from 127.0.0.1, letting any
            # local client pick its address (rate limits, audit) with a header.
            "proxy_headers": bool(self.trusted_proxies),
            "forwarded_allow_ips": list(self.trusted_proxies) or "",
            "server_header": False,
            "ws": "websockets-sansio",
            # Websocket messages (live-stream requests, terminal keystrokes) are small.
            "ws_max_size": self.max_body_bytes,
        }

    @property
    def users_db(self) -> Path:
        return self.data_dir / "web" / "users.db"

    def dashboard(self) -> Path | None:
        """The dashboard's dist dir, if one is built."""
        for candidate in (self.dashboard_dir, PACKAGE_DASHBOARD, self.data_dir / "dashboard"):
            if candidate is not None and (candidate / "index.html").is_file():
                return candidate
        return None
