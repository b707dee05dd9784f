"""``arete broker run``'s settings from a TOML file (``--config``) and ``ARETE_BROKER_*``.

Precedence: command-line options > environment (``ARETE_BROKER_PORT=1884``) > the file >
defaults. A key the broker does not know is refused (a typo must not be ignored). With
a file, a key it leaves out takes its default, not the last run's value: the file is
the whole truth of a deployed broker (``tls_port`` left out = no TLS listener).

msgspec, like the agent's settings: the broker needs no pydantic.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Final

import msgspec

from mosquitto.errors import BrokerConfigError

ENV_PREFIX: Final = "ARETE_BROKER_"
Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]


class BrokerSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """Every key of broker.toml; None: not given (the option's own default applies)."""

    data_dir: str | None = None
    host: str | None = None
    port: Port | None = None
    root: str | None = None
    tls_port: Port | None = None
    ws_port: Port | None = None
    ws_host: str | None = None
    ws_all_interfaces: bool | None = None
    wss: bool | None = None
    max_queued_messages: Annotated[int, msgspec.Meta(ge=1)] | None = None
    sys_interval: Annotated[int, msgspec.Meta(ge=1, le=3600)] | None = None
    # False: the broker neither creates the maestro and viewer accounts nor writes their
    # passwords to DATA/secrets/; every account comes from `arete broker passwd`.
    service_accounts: bool = True


def load_broker_settings(path: Path | None, env: Mapping[str, str] | None = None) -> BrokerSettings:
    """The file (if any) with ``ARETE_BROKER_*`` over it; :class:`BrokerConfigError`
    names the file and the key on any problem."""
    env = os.environ if env is None else env
    data: dict[str, Any] = {}
    source = "ARETE_BROKER_*"
    if path is not None:
        source = f"{path} or ARETE_BROKER_*"
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise BrokerConfigError(f"config file {path} does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise BrokerConfigError(f"cannot read the config file {path}: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise BrokerConfigError(f"{path} is not valid TOML: {exc}") from None
    for key, raw in env.items():
        if key.startswith(ENV_PREFIX):
            data[key[len(ENV_PREFIX) :].lower()] = raw
    try:
        return msgspec.convert(data, BrokerSettings, strict=False)
    except msgspec.ValidationError as exc:
        message = str(exc)
        if message.startswith("Object contains unknown field"):
            name = message.split("`")[1] if "`" in message else message
            raise BrokerConfigError(
                f"unknown broker setting {name!r} (from {source}); known: "
                f"{', '.join(BrokerSettings.__struct_fields__)}"
            ) from None
        raise BrokerConfigError(f"invalid broker settings (from {source}): {message}") from None
