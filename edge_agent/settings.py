"""Agent settings: a TOML file, overridden by ``ARETE_AGENT_*`` environment variables.

The agent deliberately uses msgspec rather than pydantic-settings for this: pydantic
roughly doubles the agent's resident memory, and the agent has a 30 MiB budget.
Nested keys use a double underscore in the environment: ``ARETE_AGENT_MQTT__HOST``.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Final, Literal

import msgspec

from arete.commands import MAX_COMMAND_TTL_S
from arete.errors import TopicError
from arete.topics import DEFAULT_ROOT, validate_agent_id, validate_root
from edge_agent.errors import ConfigError

ENV_PREFIX: Final = "ARETE_AGENT_"
KNOWN_DEFAULT_SECRETS: Final = frozenset(
    {"", "changeme", "change-me", "password", "secret", "admin", "arete", "mosquitto", "public"}
)
STOP_EXIT_CODE: Final = 64  # systemd unit: RestartPreventExitStatus=64 keeps a stop stopped
RESTART_EXIT_CODE: Final = 75  # systemd unit: Restart=always brings the agent back

_CREDENTIALS_RE: Final = re.compile(
    r"^\$(?:\{CREDENTIALS_DIRECTORY\}|CREDENTIALS_DIRECTORY)(?=/|$)"
)

# An update command has DEFAULT_TIMEOUT_S["update"] (300 s) to fetch, verify, spool and
# hand over; these two bounds keep both waits, with room to write the files, inside it.
MAX_FETCH_TIMEOUT_S: Final = 240.0
MAX_PICKUP_TIMEOUT_S: Final = 40.0
RELEASE_KEY_BYTES: Final = 32

Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]
PosFloat = Annotated[float, msgspec.Meta(gt=0)]


class _Section(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    pass


class MqttSettings(_Section, kw_only=True):
    host: str = "127.0.0.1"
    port: Port = 1883
    username: str | None = None  # defaults to the agent id (the ACL relies on it)
    password: str | None = None
    password_file: str | None = None
    root: str = DEFAULT_ROOT
    tls: bool = False
    ca_file: str | None = None  # CA that signed the broker's certificate
    keepalive_s: Annotated[int, msgspec.Meta(ge=2, le=3600)] = 15
    reconnect_min_s: PosFloat = 0.5
    reconnect_max_s: PosFloat = 30.0
    metrics_qos: Literal[0, 1] = 1


class AllowRule(_Section, kw_only=True, omit_defaults=True):
    """A ``shell.allow`` entry as a table (edge_agent/handlers/allowlist.py)."""

    program: str  # a name (looked up on PATH) or an absolute path
    args: list[str] = []  # one regular expression per argument, each matched whole
    any_args: bool = False  # any arguments: the program decides what runs (see docs)
    cwd: str | None = None  # regular expression for the working directory; None: no cwd


class ShellSettings(_Section, kw_only=True):
    enabled: bool = True
    # Empty: any command. Otherwise an argv must match an entry — a string is one exact
    # command line ("uptime" = uptime with no arguments), a table a program with
    # argument patterns — and shell strings are refused because they cannot be checked.
    allow: list[str | AllowRule] = []
    allow_shell_strings: bool = True


class TerminalSettings(_Section, kw_only=True):
    # -- remote terminal (edge_agent/terminal.py) --
    # A terminal is an unrestricted shell: it also needs shell.enabled, and is refused
    # while shell.allow or allow_shell_strings = false restrict the shell command.
    enabled: bool = True
    max_sessions: Annotated[int, msgspec.Meta(ge=1, le=64)] = 4
    max_idle_timeout_s: Annotated[float, msgspec.Meta(gt=0, le=86400)] = 3600.0
    shell: str | None = None  # None: the agent user's login shell, else /bin/sh


class ScreenshotSettings(_Section, kw_only=True):
    enabled: bool = True
    max_bytes: Annotated[int, msgspec.Meta(ge=16 * 1024, le=8 * 1024 * 1024)] = 4 * 1024 * 1024


class DockerSettings(_Section, kw_only=True):
    enabled: bool = True
    url: str | None = None  # None: DOCKER_HOST, else the engine's default socket
    timeout_s: PosFloat = 10.0


class CommandSettings(_Section, kw_only=True):
    # Ed25519 public key of the maestro (base64 of the raw 32 bytes), or a file holding
    # it (PEM or base64). When set, unsigned and badly signed commands are refused.
    public_key: str | None = None
    public_key_file: str | None = None
    max_ttl_s: Annotated[float, msgspec.Meta(gt=0, le=MAX_COMMAND_TTL_S)] = MAX_COMMAND_TTL_S
    # auto: exit with RESTART_EXIT_CODE under systemd (INVOCATION_ID set), else re-exec.
    restart_mode: Literal["auto", "exec", "exit"] = "auto"


class OutboxSettings(_Section, kw_only=True):
    max_samples: Annotated[int, msgspec.Meta(ge=10, le=10_000_000)] = 7 * 86400
    replay_batch: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 300


class UpdateSettings(_Section, kw_only=True):
    """Self-update (docs/updates.md): off unless enabled and given a release key."""

    enabled: bool = False
    # Ed25519 public keys that may sign releases (base64 of the raw 32 bytes): NOT the
    # command-signing key. More than one while a release key is being rotated.
    release_keys: list[str] = []
    # A file with more such keys, one per line ('#' starts a comment).
    release_key_file: str | None = None
    # How long the release may take to arrive from the broker (manifest and chunks).
    fetch_timeout_s: Annotated[float, msgspec.Meta(gt=0, le=MAX_FETCH_TIMEOUT_S)] = 120.0
    # How long the host's updater may take to pick a verified release up.
    pickup_timeout_s: Annotated[float, msgspec.Meta(gt=0, le=MAX_PICKUP_TIMEOUT_S)] = 15.0


class AgentSettings(_Section, kw_only=True):
    id: str
    state_dir: str | None = (
        None  # None: $STATE_DIRECTORY (systemd), else ~/.local/state/arete/agent-<id>
    )
    interval_s: Annotated[float, msgspec.Meta(ge=0.1, le=3600)] = 1.0
    heartbeat_s: Annotated[float, msgspec.Meta(ge=0.2, le=3600)] = 10.0
    labels: dict[str, str] = {}
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"
    mqtt: MqttSettings = msgspec.field(default_factory=MqttSettings)
    shell: ShellSettings = msgspec.field(default_factory=ShellSettings)
    terminal: TerminalSettings = msgspec.field(default_factory=TerminalSettings)
    screenshot: ScreenshotSettings = msgspec.field(default_factory=ScreenshotSettings)
    docker: DockerSettings = msgspec.field(default_factory=DockerSettings)
    commands: CommandSettings = msgspec.field(default_factory=CommandSettings)
    outbox: OutboxSettings = msgspec.field(default_factory=OutboxSettings)
    update: UpdateSettings = msgspec.field(default_factory=UpdateSettings)

    @property
    def username(self) -> str:
        return self.mqtt.username or self.id


def load_settings(path: str | Path | None, env: Mapping[str, str] | None = None) -> AgentSettings:
    """Read the TOML file (if any), overlay ``ARETE_AGENT_*`` variables, validate."""
    env = os.environ if env is None else env
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except PermissionError:
            raise ConfigError(f"config file {path} is not readable by this user") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
        except IsADirectoryError:
            raise ConfigError(f"config file {path} is a directory, not a file") from None
        except OSError as exc:
            raise ConfigError(f"config file {path} cannot be read: {exc}") from None
        _resolve_paths(data, Path(path).absolute().parent)
    _overlay_env(data, env)
    _expand_credentials(data, env)
    try:
        settings = msgspec.convert(data, AgentSettings, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid agent settings: {exc}") from None
    return _check(settings)


# File paths a config file may give relative to itself (so that a config and the files
# beside it, e.g. the broker's ca.crt, can be copied to another machine together).
_RELATIVE_PATHS: Final = (
    ("mqtt", "ca_file"),
    ("mqtt", "password_file"),
    ("commands", "public_key_file"),
    ("update", "release_key_file"),
    (None, "state_dir"),
)


def _resolve_paths(data: dict[str, Any], base: Path) -> None:
    for section, key in _RELATIVE_PATHS:
        table = data if section is None else data.get(section)
        if not isinstance(table, dict):
            continue  # a wrong type is reported by validation
        value = table.get(key)
        if not isinstance(value, str) or not value or value.startswith("$"):
            continue  # "$CREDENTIALS_DIRECTORY/..." is expanded after the environment
        if not Path(value).expanduser().is_absolute():
            table[key] = str(base / value)


def _expand_credentials(data: dict[str, Any], env: Mapping[str, str]) -> None:
    """``$CREDENTIALS_DIRECTORY/NAME`` in a file setting: a systemd credential."""
    for section, key in _RELATIVE_PATHS:
        table = data if section is None else data.get(section)
        value = table.get(key) if isinstance(table, dict) else None
        if not isinstance(value, str) or not isinstance(table, dict):
            continue
        match = _CREDENTIALS_RE.match(value)
        if match is None:
            continue
        directory = env.get("CREDENTIALS_DIRECTORY", "")
        if not directory:
            raise ConfigError(
                f"{'.'.join(filter(None, (section, key)))} = {value!r} names "
                "$CREDENTIALS_DIRECTORY, which is not set: run the agent under systemd with "
                "LoadCredential=/LoadCredentialEncrypted=, or give a plain path"
            )
        table[key] = directory + value[match.end() :]


def _overlay_env(data: dict[str, Any], env: Mapping[str, str]) -> None:
    for key, raw in env.items():
        if not key.startswith(ENV_PREFIX):
            continue
        path = key[len(ENV_PREFIX) :].lower().split("__")
        target = data
        for part in path[:-1]:
            nested = target.setdefault(part, {})
            if not isinstance(nested, dict):
                raise ConfigError(f"{key}: {part!r} is not a section")
            target = nested
        target[path[-1]] = _env_value(key, raw)


def _env_value(key: str, raw: str) -> Any:
    # Lists and tables come as JSON; scalars as text that msgspec converts (strict=False).
    if raw.startswith(("[", "{")):
        try:
            return msgspec.json.decode(raw)
        except msgspec.DecodeError as exc:
            raise ConfigError(f"{key}: not valid JSON: {exc}") from None
    return raw


def _check(settings: AgentSettings) -> AgentSettings:
    try:
        validate_agent_id(settings.id)
        validate_root(settings.mqtt.root)
    except TopicError as exc:
        raise ConfigError(str(exc)) from None
    if settings.mqtt.password is not None and settings.mqtt.password_file is not None:
        raise ConfigError("set mqtt.password or mqtt.password_file, not both")
    if settings.mqtt.reconnect_min_s > settings.mqtt.reconnect_max_s:
        raise ConfigError("mqtt.reconnect_min_s must not exceed mqtt.reconnect_max_s")
    if settings.mqtt.ca_file and not settings.mqtt.tls:
        raise ConfigError("mqtt.ca_file is set but mqtt.tls is false")
    if settings.commands.public_key and settings.commands.public_key_file:
        raise ConfigError("set commands.public_key or commands.public_key_file, not both")
    for index, key in enumerate(settings.update.release_keys):
        check_release_key(key, f"update.release_keys[{index}]")
    from edge_agent.handlers.allowlist import compile_rule  # it imports this module

    for index, entry in enumerate(settings.shell.allow):
        compile_rule(entry, f"shell.allow[{index}]")
    return settings


def check_release_key(text: str, where: str) -> bytes:
    """The raw 32 bytes of a base64 release key, or a ConfigError naming ``where``."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != RELEASE_KEY_BYTES:
        raise ConfigError(
            f"{where}: expected base64 of a raw 32-byte Ed25519 public key "
            "(`arete release key public` prints one)"
        )
    return raw


def read_password(settings: AgentSettings) -> str | None:
    """The MQTT password from the settings or its file; refuses known default secrets."""
    mqtt = settings.mqtt
    password: str | None
    if mqtt.password_file is not None:
        try:
            password = Path(mqtt.password_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"mqtt.password_file: {exc}") from None
    else:
        password = mqtt.password
    if password is not None and password.strip().lower() in KNOWN_DEFAULT_SECRETS:
        raise ConfigError("mqtt password is a known default secret; set a real one")
    return password


def render_toml(settings: AgentSettings) -> str:
    """Write settings back as TOML (for ``arete agents add``); only non-default values."""
    document = msgspec.to_builtins(settings)
    defaults = msgspec.to_builtins(AgentSettings(id=settings.id, state_dir=settings.state_dir))
    lines: list[str] = []
    tables: list[tuple[str, dict[str, Any]]] = []
    for key, value in document.items():
        if value is None:
            continue
        if isinstance(value, dict) and key != "labels":
            changed = {
                k: v for k, v in value.items() if v is not None and defaults[key].get(k) != v
            }
            if changed:
                tables.append((key, changed))
        elif key in ("id", "state_dir") or defaults.get(key) != value:
            lines.append(f"{key} = {_toml_value(value)}")
    for name, table in tables:
        lines.append("")
        lines.append(f"[{name}]")
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in table.items())
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        inner = ", ".join(f"{_toml_string(k)} = {_toml_value(v)}" for k, v in value.items())
        return "{ " + inner + " }" if inner else "{}"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def _toml_string(text: str) -> str:
    # A JSON string is a valid TOML basic string, except that TOML wants DEL escaped.
    return msgspec.json.encode(text).decode().replace("\x7f", "\\u007f")
