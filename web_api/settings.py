"""Settings of the web API: options > ``ARETE_WEB_*`` environment > a TOML file.

Built when the app starts (``WebSettings(data_dir=...)``), never at import time.
``arete web run --config control.toml`` runs the maestro in the same process: its
file has ``data_dir`` (shared by both), a ``[web]`` table of these settings and a
``[maestro]`` table with the keys of maestro.toml (see :func:`load_control`).
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)
from pydantic_settings.sources import InitSettingsSource

from maestro.errors import ConfigError
from maestro.settings import MaestroSettings, describe_errors, read_toml, settings_from

PACKAGE_DASHBOARD = Path(__file__).resolve().parents[1] / "dashboards" / "web" / "dist"


class AutoUpdateGroup(BaseModel):
    """One group of ``auto_update`` (web_api.auto_update, docs/updates.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    selector: dict[str, str] = Field(
        default_factory=dict, description="The group: agents with every one of these labels."
    )
    every_s: float = Field(300.0, ge=1, le=7 * 86400, description="How often to look.")
    canary: int = Field(1, ge=0, le=1000)
    batch_size: int = Field(10, ge=1, le=1000)
    max_failures: int = Field(0, ge=0, le=100_000)
    health_timeout_s: float = Field(180.0, ge=10, le=3600)


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
    auto_update: tuple[AutoUpdateGroup, ...] = Field(
        (),
        description="Label groups rolled out to the newest published release when one of"
        " their agents is behind (web_api.auto_update).",
    )
    metric_stream_s: float = Field(
        0.1,
        gt=0,
        le=60,
        description="No effect any more: each live sample is pushed as it arrives"
        " (maestro.live_feed); kept so that configs naming it still load.",
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


CONTROL_TABLES = ("data_dir", "web", "maestro")


def load_control(
    config_file: Path | None,
    *,
    data_dir: Path | None = None,
    replica: str | None = None,
    **web_options: Any,
) -> tuple[WebSettings, MaestroSettings]:
    """The web API's and the maestro's settings for ``arete web run``.

    Each: command-line options > environment (``ARETE_WEB_*``, ``ARETE_MAESTRO_*``) >
    ``config_file`` (``data_dir``, ``[web]``, ``[maestro]``) > defaults. Raises
    :class:`ConfigError` naming every problem (an unknown key included).
    """
    data = read_toml(config_file) if config_file is not None else {}
    source = f"{config_file}" if config_file is not None else "options"
    unknown = sorted(set(data) - set(CONTROL_TABLES))
    if unknown:
        raise ConfigError(
            f"unknown setting {', '.join(unknown)} in {source}: the file holds data_dir, "
            "[web] (web API) and [maestro] (the keys of maestro.toml)"
        )
    tables: dict[str, dict[str, Any]] = {}
    for name in ("web", "maestro"):
        table = data.get(name, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{name} in {source} must be a table ([{name}])")
        tables[name] = dict(table)
    if data_dir is None and "data_dir" in data:
        raw = data["data_dir"]
        if not isinstance(raw, str) or not raw:
            raise ConfigError(f"data_dir in {source} must be a path (a string)")
        data_dir = Path(raw)
    where = f" (from {config_file}, ARETE_MAESTRO_* or options)" if config_file else ""
    maestro = settings_from(tables["maestro"], where, data_dir=data_dir, replica=replica)
    web = _web_settings(tables["web"], source, data_dir=maestro.data_dir, **web_options)
    return web, maestro


def _web_settings(table: dict[str, Any], source: str, **options: Any) -> WebSettings:
    class _Settings(WebSettings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (init_settings, env_settings, InitSettingsSource(settings_cls, table))

    given = {key: value for key, value in options.items() if value is not None}
    try:
        settings = _Settings(**given)
    except SettingsError as exc:
        raise ConfigError(f"invalid web settings in the environment: {exc}") from None
    except ValidationError as exc:
        problems = describe_errors(exc)
        raise ConfigError(
            f"invalid web settings (from {source}, ARETE_WEB_* or options): {problems}"
        ) from None
    return WebSettings.model_validate(settings.model_dump())
