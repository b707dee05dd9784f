"""Settings of the optional InfluxDB sink (the ``[influx]`` section of the maestro's).

The sink is off unless ``url`` is set. The token comes from ``token`` (set it through
the environment, e.g. ``ARETE_MAESTRO_INFLUX__TOKEN``) or from ``token_file``; it is
kept in a :class:`~pydantic.SecretStr` so it never shows in a log line or a repr.
VictoriaMetrics accepts any token (or none); InfluxDB 2.x needs a real one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Final, Self
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, model_validator

from maestro.errors import ConfigError
from maestro.secrets import SecretPath, read_secret_file

PLACEHOLDER_TOKENS: Final = frozenset(
    {
        "changeme",
        "change-me",
        "change_me",
        "my-token",
        "mytoken",
        "my-super-secret-auth-token",  # the token of InfluxDB's own docker examples
        "token",
        "secret",
        "password",
        "xxx",
        "todo",
    }
)


class InfluxSettings(BaseModel):
    """Where and how the sink writes; ``url=None`` turns the sink off."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str | None = None
    org: Annotated[str, Field(min_length=1, max_length=256)] = "arete"
    bucket: Annotated[str, Field(min_length=1, max_length=256)] = "arete"
    token: SecretStr | None = None
    token_file: SecretPath | None = None
    measurement: Annotated[str, Field(min_length=1, max_length=128)] = "arete"
    batch_lines: Annotated[int, Field(ge=1, le=100_000)] = 5000
    flush_s: Annotated[float, Field(gt=0, le=3600)] = 1.0
    # Most sample lines kept while the server is away; past it the OLDEST are dropped
    # (counted, and logged), so a very long outage keeps the newest history.
    max_spool_rows: Annotated[int, Field(ge=1)] = 5_000_000
    retry_min_s: Annotated[float, Field(gt=0, le=3600)] = 0.5
    retry_max_s: Annotated[float, Field(gt=0, le=3600)] = 30.0
    timeout_s: Annotated[float, Field(gt=0, le=600)] = 10.0

    _token: SecretStr | None = PrivateAttr(default=None)

    @property
    def enabled(self) -> bool:
        return self.url is not None

    def token_value(self) -> str | None:
        """The token to send (from ``token`` or ``token_file``), or None for no token."""
        return self._token.get_secret_value() if self._token is not None else None

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.url is not None:
            _check_url(self.url)
        if self.retry_max_s < self.retry_min_s:
            raise ValueError("retry_max_s must be at least retry_min_s")
        if self.max_spool_rows < self.batch_lines:
            raise ValueError("max_spool_rows must be at least batch_lines")
        if any(char in self.measurement for char in "\n\r\t") or self.measurement[0] == "#":
            raise ValueError("measurement must be one line and must not start with '#'")
        if self.token is not None and self.token_file is not None:
            raise ValueError("set token or token_file, not both")
        token = self.token
        if self.token_file is not None:
            token = SecretStr(_read_token_file(self.token_file))
        if token is not None:
            _check_token(token.get_secret_value())
        self._token = token
        return self


def _check_url(url: str) -> None:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
    except ValueError as exc:
        raise ValueError(f"url {url!r} is not a valid URL: {exc}") from None
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError(f"url must be http(s)://host[:port], got {url!r}")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError("url must not carry a query, a fragment or credentials (use token)")


def _read_token_file(path: Path) -> str:
    try:
        return read_secret_file(path, "token_file")
    except ConfigError as exc:  # a ValueError here becomes pydantic's validation error
        raise ValueError(str(exc)) from None


def _check_token(token: str) -> None:
    # The messages never repeat the token itself.
    if not token.strip():
        raise ValueError("the InfluxDB token is empty")
    if token.strip().lower() in PLACEHOLDER_TOKENS:
        raise ValueError("the InfluxDB token is a placeholder; set the real one")
    if any(char.isspace() or not char.isprintable() for char in token):
        raise ValueError("the InfluxDB token must be one word of printable characters")
