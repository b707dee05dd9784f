"""``arete agents ...``: give machines broker credentials and a ready agent config.

``add`` creates the agent's account in the broker's password file, writes
``DATA/agents/<id>.toml`` (mode 0600: it holds the password; with TLS, beside a copy of
the broker's ``ca.crt`` that the config names relatively) and sends the running broker
SIGHUP, the only way Mosquitto picks up new or changed passwords without a restart.
``remove`` revokes an agent the same way.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import tomllib
from pathlib import Path
from typing import Annotated, Final

import msgspec
import typer

from arete.errors import TopicError
from arete.topics import validate_agent_id
from arete_cli.options import data_dir_option
from edge_agent.settings import (
    AgentSettings,
    CommandSettings,
    MqttSettings,
    ShellSettings,
    render_toml,
)
from mosquitto.accounts import add_agent_credentials
from mosquitto.cli import reload_accounts
from mosquitto.config import validate_host
from mosquitto.errors import (
    BrokerConfigError,
    BrokerError,
    BrokerNotSetUp,
    UnknownAgent,
)
from mosquitto.layout import Layout, write_private
from mosquitto.state import BrokerInfo

agents_app = typer.Typer(
    help="Manage the agents allowed on the broker (credentials and config files).",
    no_args_is_help=True,
)

_LABEL_KEY_RE: Final = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MAX_LABEL_VALUE: Final = 256

DataDir = Annotated[
    Path, data_dir_option("The broker's data dir (the one given to 'arete broker run').")
]


def parse_labels(pairs: list[str]) -> dict[str, str]:
    """``["role=web", "site=paris"]`` -> ``{"role": "web", "site": "paris"}``."""
    labels: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not _LABEL_KEY_RE.fullmatch(key):
            raise typer.BadParameter(
                f"{pair!r}: use key=value, the key made of letters, digits, '.', '_', '-'",
                param_hint="--label",
            )
        if len(value) > MAX_LABEL_VALUE or not value.isprintable():
            raise typer.BadParameter(
                f"{pair!r}: the value must be printable and at most {MAX_LABEL_VALUE} characters",
                param_hint="--label",
            )
        if key in labels:
            raise typer.BadParameter(f"label {key!r} given twice", param_hint="--label")
        labels[key] = value
    return labels


def default_mqtt_host(bind_host: str) -> str:
    """Where agents reach a broker bound to ``bind_host``: itself, unless it is a wildcard."""
    try:
        if ipaddress.ip_address(bind_host).is_unspecified:
            return socket.getfqdn()
    except ValueError:
        pass
    return bind_host


def agent_settings(
    agent_id: str,
    info: BrokerInfo,
    *,
    host: str | None = None,
    tls: bool = False,
    ca_file: str | None = None,
    labels: dict[str, str] | None = None,
    shell: bool = True,
    state_dir: str | None = None,
    public_key: str | None = None,
) -> AgentSettings:
    """The config of a new agent of the broker described by ``info`` (no password yet).

    ``ca_file`` is written as given: a relative path is resolved by the agent against
    the directory of its config file.
    """
    try:
        validate_agent_id(agent_id)
    except TopicError as exc:
        raise BrokerConfigError(str(exc)) from None
    host = validate_host(host, "MQTT host") if host else default_mqtt_host(info.host)
    if tls and info.tls_port is None:
        raise BrokerConfigError(
            "the broker has no TLS listener: restart it with --tls-port N, or pass --no-tls"
        )
    if tls and ca_file is None:
        raise BrokerConfigError("TLS needs the CA file that signed the broker's certificate")
    mqtt = MqttSettings(
        host=host,
        port=info.tls_port if tls and info.tls_port is not None else info.port,
        root=info.root,
        tls=tls,
        ca_file=ca_file if tls else None,
    )
    return AgentSettings(
        id=agent_id,
        state_dir=state_dir,
        labels=dict(labels or {}),
        mqtt=mqtt,
        shell=ShellSettings(enabled=shell),
        commands=CommandSettings(public_key=public_key),
    )


def with_password(settings: AgentSettings, password: str) -> AgentSettings:
    mqtt = msgspec.structs.replace(settings.mqtt, password=password)
    return msgspec.structs.replace(settings, mqtt=mqtt)


def render_checked(settings: AgentSettings) -> str:
    """The TOML text, proven to load back into exactly these settings."""
    text = render_toml(settings)
    try:
        loaded = msgspec.convert(tomllib.loads(text), AgentSettings, strict=False)
    except (tomllib.TOMLDecodeError, msgspec.ValidationError) as exc:
        raise BrokerConfigError(f"invalid agent settings: {exc}") from None
    if loaded != settings:
        raise BrokerConfigError("the agent config does not survive a round trip through TOML")
    return text


# Wrong input (exit 2, nothing written) as opposed to a refused operation (exit 1).
_INPUT_ERRORS: Final = (BrokerConfigError, BrokerNotSetUp)


def _fail(exc: BrokerError) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(2 if isinstance(exc, _INPUT_ERRORS) else 1)


def issue_agent(
    layout: Layout, agent_id: str, settings: AgentSettings, *, rotate: bool = False
) -> Path:
    """Give ``agent_id`` a new password and write its config (and the CA copy for TLS).

    Everything is written while the password file is locked, so concurrent ``add
    --rotate`` runs of one agent always leave the config of the password that won.
    Returns the config's path.
    """
    config = layout.agent_config(agent_id)
    ca_pem = None
    if settings.mqtt.tls:
        from mosquitto.tls import ca_pem as read_ca_pem

        ca_pem = read_ca_pem(layout)  # before any write: a missing CA changes nothing

    def write_config(password: str) -> None:
        if ca_pem is not None:
            from mosquitto.tls import copy_agent_ca

            copy_agent_ca(layout, ca_pem)
        write_private(config, render_checked(with_password(settings, password)))

    add_agent_credentials(layout, agent_id, rotate=rotate, on_added=write_config)
    return config


@agents_app.command("add")
def add(  # noqa: PLR0917 - Typer passes CLI options as keyword arguments
    agent_id: Annotated[
        str,
        typer.Argument(
            metavar="ID", help="Agent id, also its MQTT username (letters, digits, . _ -)."
        ),
    ],
    data_dir: DataDir,
    mqtt_host: Annotated[
        str | None,
        typer.Option(
            "--mqtt-host",
            help="Broker address as the agent's machine sees it (default: the broker's "
            "bind address, or this machine's name when it binds every interface).",
        ),
    ] = None,
    label: Annotated[
        list[str] | None,
        typer.Option("--label", help="A key=value label reported in the status (repeatable)."),
    ] = None,
    rotate: Annotated[
        bool,
        typer.Option("--rotate", help="Replace an existing agent's password (the old one dies)."),
    ] = False,
    no_shell: Annotated[
        bool, typer.Option("--no-shell", help="Disable the 'shell' command on this agent.")
    ] = False,
    state_dir: Annotated[
        str | None,
        typer.Option(
            "--state-dir",
            help="The agent's state directory on its machine (default: the agent's own default).",
        ),
    ] = None,
    tls: Annotated[
        bool | None,
        typer.Option(
            "--tls/--no-tls",
            help="Connect over TLS (default: when the broker has a TLS listener).",
        ),
    ] = None,
) -> None:
    """Create an agent's broker credentials and its ready-to-use config.

    The config (DATA/agents/ID.toml, mode 0600) holds the agent's password:
    copy it to the agent's machine, with DATA/agents/ca.crt beside it when
    TLS is on (the config names it relatively). A running broker is told to
    reload (SIGHUP), so the agent can connect at once. --rotate issues a new
    password for an existing agent.

    Example: arete agents add web-01 --data-dir ./data --label role=web
    """
    from mosquitto.state import load_info

    try:
        validate_agent_id(agent_id)
    except TopicError as exc:
        raise typer.BadParameter(str(exc), param_hint="ID") from None
    labels = parse_labels(label or [])
    if state_dir is not None and not state_dir.strip():
        raise typer.BadParameter("must not be empty", param_hint="--state-dir")
    try:
        layout = Layout.at(data_dir)
        info = load_info(layout)
        use_tls = info.tls_port is not None if tls is None else tls
        settings = agent_settings(
            agent_id,
            info,
            host=mqtt_host,
            tls=use_tls,
            ca_file=layout.agent_ca_cert.name,
            labels=labels,
            shell=not no_shell,
            state_dir=state_dir,
            public_key=_maestro_public_key(Path(data_dir)),
        )
        # Every input is checked before the first write: a refused command changes nothing.
        render_checked(settings)
        config = issue_agent(layout, agent_id, settings, rotate=rotate)
    except BrokerError as exc:
        raise _fail(exc) from None

    verb = "issued a new password for" if rotate else "added"
    typer.echo(f"{verb} agent {agent_id!r}; its config (keep it private): {config}")
    reload_accounts(layout, say_stopped=True)
    if use_tls:
        typer.echo(
            f"the agent verifies the broker with {layout.agent_ca_cert}: copy it along, "
            "into the same directory as the config"
        )
    if settings.commands.public_key:
        typer.echo("the agent accepts only commands signed with this data dir's maestro key")
    else:
        typer.echo(
            "note: commands to this agent are not signature-checked; create a key with "
            f"`arete keys create --data-dir {data_dir}` before adding agents"
        )
    typer.echo(f"run the agent with:  arete agent run --config {config}")


def _maestro_public_key(data_dir: Path) -> str | None:
    """The maestro's command-signing public key of this data dir, if it has one."""
    from maestro.errors import ConfigError
    from maestro.keys import key_paths, read_public_key

    paths = key_paths(data_dir)
    if not (paths.private.exists() or paths.public.exists()):
        return None
    try:
        return read_public_key(data_dir)
    except ConfigError as exc:
        raise BrokerConfigError(str(exc)) from None


@agents_app.command("remove")
def remove(
    agent_id: Annotated[str, typer.Argument(metavar="ID", help="The agent to revoke.")],
    data_dir: DataDir,
) -> None:
    """Revoke an agent: delete its broker account and its config file, and make MQTT
    clients forget it.

    A running broker is told to reload (SIGHUP): from then on it refuses the
    agent's password and drops the agent's connection. Other agents are not
    affected. Then the agent's retained status, alert state and Home Assistant
    discovery configs are cleared on the broker, so it disappears from MQTT apps
    and Home Assistant. Run it again while the broker runs if it was stopped.

    Example: arete agents remove web-01 --data-dir ./data
    """
    from mosquitto.accounts import remove_agent_credentials

    try:
        validate_agent_id(agent_id)
    except TopicError as exc:
        raise typer.BadParameter(str(exc), param_hint="ID") from None
    try:
        layout = Layout.at(data_dir)
        removed = remove_agent_credentials(layout, agent_id)
    except UnknownAgent as exc:
        # Revoked before, maybe while the broker was stopped: still make clients forget it.
        if not _forget(layout, agent_id, quiet=True):
            raise _fail(exc) from None
        typer.echo(f"(agent {agent_id!r} had been revoked before)")
        return
    except BrokerError as exc:
        raise _fail(exc) from None
    if layout.password_file in removed:
        typer.echo(f"removed agent {agent_id!r}: its password no longer works")
    else:
        typer.echo(f"agent {agent_id!r} had no broker account")
    config = layout.agent_config(agent_id)
    if config in removed:
        typer.echo(f"deleted its config {config}")
    reload_accounts(layout, say_stopped=True)
    _forget(layout, agent_id)


def _forget(layout: Layout, agent_id: str, *, quiet: bool = False) -> bool:
    """Clear what the broker retains about the agent, and say so; whether it cleared any."""
    from arete_cli.forget import forget_agent

    try:
        # Quiet: the account was removed before (or never existed): clear what is there.
        cleared = forget_agent(layout, agent_id, removed=not quiet)
    except BrokerError as exc:
        typer.echo(f"warning: could not clear the agent's retained messages: {exc}", err=True)
        return False
    if cleared is None:
        if not quiet:
            typer.echo(
                "the broker is not running: MQTT clients still see the agent's last status; "
                "run this command again while the broker runs to clear it"
            )
        return False
    if cleared:
        typer.echo(f"cleared its retained messages ({len(cleared)}): {', '.join(cleared)}")
    elif not quiet:
        typer.echo("the broker held no retained message of it")
    return bool(cleared)


@agents_app.command("list")
def list_agents(data_dir: DataDir) -> None:
    """List the agents that have broker credentials, with their config files.

    Example: arete agents list --data-dir ./data
    """
    from mosquitto.accounts import agent_ids

    try:
        layout = Layout.at(data_dir)
        ids = agent_ids(layout)
    except BrokerError as exc:
        raise _fail(exc) from None
    if not ids:
        typer.echo(f"no agents yet; add one with: arete agents add ID --data-dir {layout.data_dir}")
        return
    width = max(len(agent) for agent in ids)
    for agent in ids:
        config = layout.agent_config(agent)
        where = str(config) if config.exists() else "(no config file)"
        typer.echo(f"{agent:<{width}}  {where}")
