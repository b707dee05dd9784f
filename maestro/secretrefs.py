"""Secrets read from a secrets manager: ``[secrets]`` settings and ``infisical:NAME``.

A secret setting of the maestro (``mqtt.password``, ``notify.telegram.token``,
``notify.discord.webhook_url``, ``influx.token``, ``signing_key_pem``) may hold
``"infisical:NAME"``: with
``[secrets] provider = "infisical"`` the value of secret NAME is read from Infisical
when the maestro starts (no start without it), then again every ``refresh_s``; a
changed value is handed to whoever uses it (the broker link reconnects with a new
password, the chat channels use a new token from their next send).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from maestro.errors import ConfigError
from maestro.infisical import Identity, InfisicalClient
from maestro.secrets import SecretPath, read_secret_file

if TYPE_CHECKING:
    from maestro.app import Maestro
    from maestro.settings import MaestroSettings

log = logging.getLogger("arete.maestro.secrets")

PREFIX: Final = "infisical:"
# Where a secret value may name an Infisical secret: (table path, field).
SECRET_FIELDS: Final[tuple[tuple[tuple[str, ...], str], ...]] = (
    ((), "signing_key_pem"),
    (("mqtt",), "password"),
    (("notify", "telegram"), "token"),
    (("notify", "discord"), "webhook_url"),
    (("influx",), "token"),
)
Ref = tuple[str, ...]  # the setting's path, e.g. ("mqtt", "password")


class SecretsSettings(BaseModel):
    """``[secrets]``: where ``infisical:NAME`` values are read from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: Literal["none", "infisical"] = "none"
    site_url: str = "https://app.infisical.com"
    project_id: str | None = Field(None, min_length=1, max_length=128)
    environment: str | None = Field(None, min_length=1, max_length=64)
    path: str = Field("/", pattern=r"^/")
    client_id_file: SecretPath | None = None
    client_secret_file: SecretPath | None = None
    refresh_s: float = Field(300.0, ge=1, le=86_400)
    timeout_s: float = Field(10.0, gt=0, le=120)

    @model_validator(mode="after")
    def _complete(self) -> SecretsSettings:
        if self.provider == "infisical":
            missing = [
                name
                for name in ("project_id", "environment", "client_id_file", "client_secret_file")
                if getattr(self, name) is None
            ]
            if missing:
                raise ValueError(f"provider infisical needs secrets.{', secrets.'.join(missing)}")
            if not self.site_url.startswith(("https://", "http://")):
                raise ValueError("site_url must be an http(s):// URL")
        return self

    def identity(self) -> Identity:
        """The machine identity, its client id and secret read from their files."""
        id_file, secret_file = self.client_id_file, self.client_secret_file
        if id_file is None or secret_file is None or not self.project_id or not self.environment:
            raise ConfigError("[secrets] provider infisical is not fully configured")
        return Identity(
            site_url=self.site_url,
            client_id=read_secret_file(id_file, "secrets.client_id_file"),
            client_secret=read_secret_file(secret_file, "secrets.client_secret_file"),
            project_id=self.project_id,
            environment=self.environment,
            path=self.path,
        )


def references(settings: MaestroSettings) -> dict[Ref, str]:
    """``{setting path: Infisical secret name}`` for every ``infisical:NAME`` value."""
    found: dict[Ref, str] = {}
    for ref, value in _secret_values(settings.model_dump()):
        if value.startswith(PREFIX):
            name = value[len(PREFIX) :].strip()
            if not name:
                raise ConfigError(f"{'.'.join(ref)} = 'infisical:' names no secret")
            found[ref] = name
    return found


def _secret_values(data: dict[str, Any]) -> Iterator[tuple[Ref, str]]:
    for tables, field in SECRET_FIELDS:
        table: Any = data
        for name in tables:
            table = table.get(name) if isinstance(table, dict) else None
        value = table.get(field) if isinstance(table, dict) else None
        if isinstance(value, SecretStr):
            yield (*tables, field), value.get_secret_value()


def substitute(settings: MaestroSettings, values: dict[Ref, str]) -> MaestroSettings:
    """``settings`` with each referenced setting holding its fetched value."""
    from maestro.settings import MaestroSettings

    data = settings.model_dump()
    for ref, value in values.items():
        table = data
        for name in ref[:-1]:
            table = table[name]
        table[ref[-1]] = SecretStr(value)
    try:
        return MaestroSettings.model_validate(data)
    except ValueError as exc:  # e.g. a fetched InfluxDB token that is a placeholder
        first = str(exc).splitlines()
        raise ConfigError(f"a secret read from Infisical is refused: {first[-1]}") from None


def resolve(
    settings: MaestroSettings,
    client_factory: Callable[[SecretsSettings], InfisicalClient] | None = None,
) -> tuple[MaestroSettings, SecretWatcher | None]:
    """The settings with every ``infisical:NAME`` read, and a watcher to re-read them
    (None when nothing comes from Infisical). Raises :class:`ConfigError`."""
    refs = references(settings)
    if not refs:
        return settings, None
    if settings.secrets.provider != "infisical":
        names = ", ".join(".".join(ref) for ref in refs)
        raise ConfigError(
            f'{names} name an Infisical secret but [secrets] provider is not "infisical"'
        )
    factory = client_factory or _client
    client = factory(settings.secrets)
    watcher = SecretWatcher(client, refs, settings.secrets.refresh_s)
    values = watcher.fetch()
    log.info("read %d secret(s) from Infisical at %s", len(values), settings.secrets.site_url)
    return substitute(settings, values), watcher


def _client(secrets: SecretsSettings) -> InfisicalClient:
    return InfisicalClient(secrets.identity(), timeout_s=secrets.timeout_s)


Listener = Callable[[Ref, str], None]


class SecretWatcher:
    """Re-reads the referenced secrets every ``refresh_s``; tells listeners of changes."""

    def __init__(self, client: InfisicalClient, refs: dict[Ref, str], refresh_s: float) -> None:
        self.client = client
        self.refs = refs
        self.refresh_s = refresh_s
        self.values: dict[Ref, str] = {}
        self.failures = 0
        self.rotations = 0
        self._listeners: list[Listener] = []

    def on_change(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def fetch(self) -> dict[Ref, str]:
        """Read every referenced secret now (blocking); raises :class:`ConfigError`."""
        values = {ref: self.client.secret(name) for ref, name in self.refs.items()}
        self.values = values
        return dict(values)

    def check(self) -> list[Ref]:
        """Read again; tell listeners of every changed value; the changed settings."""
        previous = self.values
        values = self.fetch()
        changed = [ref for ref, value in values.items() if previous.get(ref) != value]
        for ref in changed:
            self.rotations += 1
            log.warning(
                "secret %s changed in Infisical (%s); using the new value",
                self.refs[ref],
                ".".join(ref),
            )
            for listener in self._listeners:
                try:
                    listener(ref, values[ref])
                except Exception:
                    log.exception("applying the new value of %s failed", ".".join(ref))
        return changed

    async def run(self) -> None:
        """Check every ``refresh_s`` until cancelled; a failed read keeps the old values."""
        while True:
            await asyncio.sleep(self.refresh_s)
            try:
                await asyncio.to_thread(self.check)
                self.failures = 0
            except ConfigError as exc:
                self.failures += 1
                log.warning("re-reading secrets from Infisical failed (old values kept): %s", exc)

    def close(self) -> None:
        self.client.close()


def rotation_listener(maestro: Maestro) -> Listener:
    """Applies a rotated secret to the running maestro (on its event loop): the broker
    link reconnects with a new password; Telegram and Discord use a new token or webhook
    from their next send. A new InfluxDB token or signing key takes effect at the next start."""
    from maestro.notify.discord import DiscordChannel

    loop = asyncio.get_running_loop()

    def apply(ref: Ref, value: str) -> None:
        if ref == ("mqtt", "password"):
            maestro.link.set_password(value)
            if maestro.release_publisher is not None:  # its own connection, same account
                maestro.release_publisher.set_password(value)
        elif ref == ("notify", "telegram", "token") and maestro.notifier.telegram is not None:
            maestro.notifier.telegram.set_token(value)
        elif ref == ("notify", "discord", "webhook_url"):
            for channel in maestro.notifier.dispatcher.channels.values():
                if isinstance(channel, DiscordChannel):
                    channel.set_webhook_url(value)
        else:
            log.warning("%s changed; the new value is used from the next start", ".".join(ref))

    def on_change(ref: Ref, value: str) -> None:  # called on the watcher's thread
        loop.call_soon_threadsafe(apply, ref, value)

    return on_change
