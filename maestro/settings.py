"""Settings of the maestro: ``ARETE_MAESTRO_*`` environment, a TOML file, CLI options.

Precedence: command-line options > environment (``ARETE_MAESTRO_MQTT__PORT=1884``,
``__`` between nested names) > the TOML file (``--config``) > defaults. With a data dir
made by ``arete broker run`` nothing else is needed: the broker's address, topic root
and the maestro's password are read from it.

Secrets (the MQTT password, the Telegram token, the Discord webhook, the InfluxDB
token) come from the environment or from files, never from command-line arguments
(visible in ``ps``); known placeholder values are refused.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from arete.errors import TopicError
from arete.topics import DEFAULT_ROOT, Topics, validate_agent_id_or_replica
from maestro.alerts.settings import AlertSettings
from maestro.commands.settings import CommandSettings
from maestro.diskstate import DiskSettings
from maestro.errors import ConfigError
from maestro.homeassistant import HomeAssistantSettings
from maestro.influx.settings import InfluxSettings
from maestro.notify.settings import NotifySettings
from maestro.releases import ReleaseSettings
from maestro.secretrefs import SecretsSettings, SecretWatcher, resolve
from maestro.secrets import SecretPath, is_placeholder, read_secret_file
from maestro.store.settings import StoreSettings


class MqttSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str | None = Field(None, description="Broker host (default: from the data dir).")
    port: int | None = Field(None, ge=1, le=65535)
    tls: bool = False
    ca_file: Path | None = None
    root: str | None = Field(None, description="Topic root (default: the broker's).")
    username: str = "maestro"
    password: SecretStr | None = None
    password_file: SecretPath | None = None
    keepalive_s: int = Field(30, ge=5, le=600)
    session_expiry_s: int = Field(
        86_400,
        ge=0,
        le=7 * 86_400,
        description="How long the broker keeps messages for a stopped maestro.",
    )
    receive_maximum: int = Field(
        20_000,
        ge=10,
        le=65_535,
        description="Unacknowledged messages the broker may send at once (back-pressure).",
    )
    share_group: str = Field("maestro", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    live_max_agents: int = Field(
        200,
        ge=0,
        le=10_000,
        description="Agents followed by this replica's websockets that get a plain (non-shared)"
        " subscription, so every sample reaches them; beyond it only this replica's share.",
    )
    reconnect_min_s: float = Field(1.0, gt=0, le=60)
    reconnect_max_s: float = Field(30.0, gt=0, le=600)


class LivenessSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    late_after: int = Field(1, ge=1, le=100, description="Missed heartbeats before late.")
    critical_after: int = Field(3, ge=1, le=1000, description="Missed heartbeats before critical.")
    grace_s: float | None = Field(None, ge=0, le=600)
    tick_s: float = Field(0.5, gt=0, le=10)
    digest_s: float = Field(
        1.0, gt=0, le=60, description="How often replicas share which agents they heard."
    )
    will_settle_s: float = Field(
        1.0,
        ge=0,
        le=60,
        description="A Will (connection lost) counts only if this replica's broker link stays "
        "up this long after it: a broker that stops publishes every agent's Will "
        "(its own link drops within milliseconds, noticed within one tick_s).",
    )


class MaestroSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ARETE_MAESTRO_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    data_dir: Path
    replica: str = Field("main", description="This replica's name (unique per broker).")
    db_file: Path | None = None
    signing_key_file: SecretPath | None = None
    signing_key_pem: SecretStr | None = Field(
        None,
        description="The signing key's PEM itself (ARETE_MAESTRO_SIGNING_KEY_PEM, or"
        " 'infisical:NAME'), instead of signing_key_file.",
    )
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = Field(None, ge=0, le=65535)
    exporter_cache_s: float = Field(
        5.0, ge=0, le=300, description="Reuse the fleet's rendered /metrics for so long (0: off)."
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"
    mqtt: MqttSettings = MqttSettings()
    liveness: LivenessSettings = LivenessSettings()
    store: StoreSettings = StoreSettings()
    influx: InfluxSettings = InfluxSettings()
    alerts: AlertSettings = AlertSettings()
    notify: NotifySettings = NotifySettings()
    commands: CommandSettings = CommandSettings()
    disk: DiskSettings = DiskSettings()
    homeassistant: HomeAssistantSettings = HomeAssistantSettings()
    secrets: SecretsSettings = SecretsSettings()
    releases: ReleaseSettings = ReleaseSettings()

    # Set by load_settings when secrets come from Infisical: re-reads them (rotation).
    _secret_watcher: SecretWatcher | None = PrivateAttr(default=None)

    @property
    def secret_watcher(self) -> SecretWatcher | None:
        return self._secret_watcher

    @model_validator(mode="after")
    def _one_signing_key(self) -> MaestroSettings:
        if self.signing_key_file is not None and self.signing_key_pem is not None:
            raise ValueError("set signing_key_file or signing_key_pem, not both")
        return self

    # -- derived -----------------------------------------------------------------------
    @property
    def database(self) -> Path:
        return self.db_file or self.data_dir / "maestro" / f"{self.replica}.db"

    @property
    def signing_key(self) -> Path | None:
        """The command-signing key: the configured file, or the data dir's if present."""
        if self.signing_key_file is not None:
            return self.signing_key_file
        default = self.data_dir / "secrets" / "maestro-signing.key"
        return default if default.exists() else None


class _TomlSource(PydanticBaseSettingsSource):
    def __init__(self, settings_cls: type[BaseSettings], data: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self._data = data

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


def read_toml(config_file: Path) -> dict[str, Any]:
    """The TOML document in ``config_file``; :class:`ConfigError` says what is wrong."""
    try:
        return tomllib.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise ConfigError(f"cannot read the config file {config_file}: {reason}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{config_file} is not valid TOML: {exc}") from None


def describe_errors(exc: ValidationError) -> str:
    """Every problem of a validation error on one line, unknown keys named as such."""
    problems = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "settings"
        if err["type"] == "extra_forbidden":
            problems.append(f"unknown setting {where}")
        elif err["type"] == "missing" and where == "data_dir":
            problems.append("no data dir: give --data-dir DIR, or data_dir in the config file")
        else:
            problems.append(f"{where}: {err['msg']}")
    return "; ".join(problems)


def load_settings(config_file: Path | None = None, **options: Any) -> MaestroSettings:
    """Settings from CLI ``options`` > environment > ``config_file`` > defaults.

    Raises :class:`ConfigError` with every problem named.
    """
    data = read_toml(config_file) if config_file is not None else {}
    where = f" (from {config_file}, ARETE_MAESTRO_* or options)" if config_file else ""
    return settings_from(data, where, **options)


def settings_from(data: dict[str, Any], where: str = "", **options: Any) -> MaestroSettings:
    """:func:`load_settings` for a TOML table already read (``[maestro]`` of a
    control-plane file); ``where`` tells errors where it came from."""

    class _Settings(MaestroSettings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (init_settings, env_settings, _TomlSource(settings_cls, data))

    given = {key: value for key, value in options.items() if value is not None}
    try:
        settings = _Settings(**given)
    except SettingsError as exc:
        raise ConfigError(f"invalid maestro settings in the environment: {exc}") from None
    except ValidationError as exc:
        raise ConfigError(f"invalid maestro settings{where}: {describe_errors(exc)}") from None
    try:
        validate_agent_id_or_replica(settings.replica)
    except TopicError as exc:
        raise ConfigError(str(exc)) from None
    # Secrets named "infisical:NAME" are read now: a maestro never starts without them.
    resolved, watcher = resolve(MaestroSettings.model_validate(settings.model_dump()))
    resolved._secret_watcher = watcher
    return resolved


# -- what the broker's data dir says ------------------------------------------------------
class BrokerEndpoint(BaseModel):
    host: str
    port: int
    root: str
    tls: bool
    ca_file: Path | None
    username: str
    password: str = Field(repr=False)


def resolve_broker(settings: MaestroSettings) -> BrokerEndpoint:
    """The broker to connect to: explicit settings first, then the data dir's broker."""
    mqtt = settings.mqtt
    info = _broker_info(settings.data_dir)
    host = mqtt.host or (info.get("host") if info else None) or "127.0.0.1"
    if host == "0.0.0.0":  # noqa: S104 - a broker bound everywhere is reachable locally
        host = "127.0.0.1"
    default_port = None
    if info:
        default_port = info.get("tls_port") if mqtt.tls else info.get("port")
        if mqtt.tls and default_port is None and mqtt.port is None:
            raise ConfigError(
                "TLS is on but the data dir's broker has no TLS listener: run it with "
                "--tls-port N, or set mqtt.port"
            )
    port = mqtt.port or default_port or (8883 if mqtt.tls else 1883)
    if not isinstance(port, int) or not 0 < port < 65536:
        raise ConfigError(f"invalid broker port {port!r} in the data dir's broker.json")
    root = mqtt.root or (info.get("root") if info else None) or DEFAULT_ROOT
    try:
        Topics(root)
    except TopicError as exc:
        raise ConfigError(str(exc)) from None
    ca_file = mqtt.ca_file
    if mqtt.tls and ca_file is None:
        default_ca = settings.data_dir / "broker" / "tls" / "ca.crt"
        ca_file = default_ca if default_ca.exists() else None
    return BrokerEndpoint(
        host=host,
        port=port,
        root=root,
        tls=mqtt.tls,
        ca_file=ca_file,
        username=mqtt.username,
        password=_password(settings),
    )


def _broker_info(data_dir: Path) -> dict[str, Any] | None:
    import json

    path = data_dir / "broker" / "broker.json"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the broker's state {path}: {exc}") from None
    return raw if isinstance(raw, dict) else None


def _password(settings: MaestroSettings) -> str:
    mqtt = settings.mqtt
    if mqtt.password is not None:
        secret = mqtt.password.get_secret_value()
        where = "ARETE_MAESTRO_MQTT__PASSWORD"
    else:
        path = mqtt.password_file or settings.data_dir / "secrets" / f"{mqtt.username}.password"
        if mqtt.password_file is None and not path.exists():
            raise ConfigError(
                f"no MQTT password for the maestro: {path} does not exist (run `arete broker "
                f"run --data-dir {settings.data_dir}` first, or set ARETE_MAESTRO_MQTT__PASSWORD)"
            )
        secret = read_secret_file(path, "the maestro's MQTT password file")
        where = str(path)
    if is_placeholder(secret):
        raise ConfigError(f"refusing a placeholder MQTT password (from {where}); set a real one")
    return secret
