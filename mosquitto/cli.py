"""``arete broker ...``: run the locked-down Mosquitto broker and make its TLS files."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from arete.datadir import data_dir_problem
from arete.topics import DEFAULT_ROOT
from arete_cli.options import data_dir_option
from mosquitto.errors import BrokerConfigError, BrokerError, BrokerNotSetUp

if TYPE_CHECKING:
    from mosquitto.layout import Layout

broker_app = typer.Typer(
    help="Run Areté's Mosquitto broker (accounts, per-agent ACL, persistence, TLS).",
    no_args_is_help=True,
)

_T = TypeVar("_T")
DataDir = Annotated[
    Path,
    data_dir_option(
        "Directory holding the broker's config, accounts, persistence and TLS files.",
        create=True,
    ),
]


def _fail(exc: BrokerError, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(code)


@broker_app.command("run")
def run(  # noqa: PLR0915, PLR0917 - Typer passes options as keywords; each merges --config
    data_dir: Annotated[
        Path | None,
        data_dir_option(
            "Directory holding the broker's config, accounts, persistence and TLS files "
            "(default: the config file's data_dir).",
            create=True,
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="TOML file of these options (data_dir, host, port, root, tls_port, "
            "ws_port, ..., service_accounts); options and ARETE_BROKER_* override it.",
        ),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            "--port", min=1, max=65535, help="Plain MQTT port (default: the last run's, else 1883)."
        ),
    ] = None,
    host: Annotated[
        str | None,
        typer.Option(
            "--host",
            help="Address to bind (0.0.0.0 for every interface) (default: the last run's, "
            "else 127.0.0.1).",
        ),
    ] = None,
    root: Annotated[
        str | None,
        typer.Option("--root", help=f"Topic root (default: the last run's, else {DEFAULT_ROOT})."),
    ] = None,
    tls_port: Annotated[
        int | None,
        typer.Option(
            "--tls-port",
            min=1,
            max=65535,
            help="Also listen with TLS on this port (default: the last run's, if any; the "
            "CA and server certificate are generated on first use, see 'arete broker "
            "tls-init').",
        ),
    ] = None,
    no_tls: Annotated[
        bool,
        typer.Option("--no-tls", help="Drop the TLS listener a previous run had."),
    ] = False,
    ws_port: Annotated[
        int | None,
        typer.Option(
            "--ws-port",
            min=1,
            max=65535,
            help="Also listen for MQTT over websockets, for browsers and apps (default: the "
            "last run's, if any).",
        ),
    ] = None,
    no_ws: Annotated[
        bool,
        typer.Option("--no-ws", help="Drop the websockets listener a previous run had."),
    ] = False,
    ws_host: Annotated[
        str | None,
        typer.Option(
            "--ws-host",
            help="IP address of the websockets listener (default: the last run's, else --host).",
        ),
    ] = None,
    ws_all_interfaces: Annotated[
        bool,
        typer.Option(
            "--ws-all-interfaces",
            help="Accept a websockets listener on ALL interfaces (--ws-host 0.0.0.0 or ::).",
        ),
    ] = False,
    wss: Annotated[
        bool | None,
        typer.Option(
            "--wss/--no-wss",
            help="Websockets with TLS (wss://), with the broker's certificate (default: the "
            "last run's, else off).",
        ),
    ] = None,
    max_queued_messages: Annotated[
        int | None,
        typer.Option(
            "--max-queued-messages",
            min=1,
            help="Messages Mosquitto queues per client (the maestro) before it drops "
            "further ones (default: the last run's, else 200000).",
        ),
    ] = None,
    sys_interval: Annotated[
        int | None,
        typer.Option(
            "--sys-interval",
            min=1,
            max=3600,
            help="Seconds between Mosquitto's $SYS updates, which tell the maestro about "
            "dropped messages (default: the last run's, else 10).",
        ),
    ] = None,
) -> None:
    """Run Mosquitto in the foreground until Ctrl-C or SIGTERM.

    Every run regenerates mosquitto.conf and the ACL. The first run also
    creates the 'maestro' (full access) and 'viewer' (read-only) accounts,
    their passwords in DATA/secrets/ (readable only by you). A run without
    an option uses the last run's value (port, host, root, TLS and
    websockets listeners, queue limit, $SYS interval); --no-tls and --no-ws
    drop a listener.
    SIGHUP reloads the accounts and the ACL.

    Example: arete broker run --data-dir ./data --port 1883 --tls-port 8883
    """
    from mosquitto.config import (
        DEFAULT_HOST,
        DEFAULT_PORT,
        MAX_QUEUED_MESSAGES,
        SYS_INTERVAL_S,
        BrokerOptions,
        ws_warnings,
    )
    from mosquitto.layout import Layout
    from mosquitto.runner import PreparedBroker, run_broker
    from mosquitto.settings import load_broker_settings
    from mosquitto.state import BrokerInfo, load_info

    try:
        file = load_broker_settings(config)
    except BrokerError as exc:
        raise _fail(exc, 2) from None
    # Options > ARETE_BROKER_* > the file; with a file, a listener it leaves out is off.
    data_dir = data_dir or _file_data_dir(file.data_dir)
    port, host, root = _first(port, file.port), _first(host, file.host), _first(root, file.root)
    tls_port, ws_port = _first(tls_port, file.tls_port), _first(ws_port, file.ws_port)
    ws_host, wss = _first(ws_host, file.ws_host), _first(wss, file.wss)
    max_queued_messages = _first(max_queued_messages, file.max_queued_messages)
    sys_interval = _first(sys_interval, file.sys_interval)
    ws_all_interfaces = ws_all_interfaces or bool(file.ws_all_interfaces)
    no_tls = no_tls or (config is not None and tls_port is None)
    no_ws = no_ws or (config is not None and ws_port is None)
    if tls_port is not None and no_tls:
        raise _fail(BrokerConfigError("--tls-port and --no-tls contradict each other"), 2)
    if ws_port is not None and no_ws:
        raise _fail(BrokerConfigError("--ws-port and --no-ws contradict each other"), 2)
    try:
        layout = Layout.at(data_dir)
        previous: BrokerInfo | None = None
        try:
            previous = load_info(layout)
        except BrokerNotSetUp:
            pass
        except BrokerConfigError as exc:
            if port is None or host is None or root is None:
                raise BrokerConfigError(
                    f"{exc}; fix or delete it, or give --port, --host and --root (and "
                    "--tls-port / --ws-port if wanted) to start anyway and rewrite it"
                ) from None
            typer.echo(f"warning: {exc}; ignored, the options given are used", err=True)
        remembered_tls = None if previous is None or no_tls else previous.tls_port
        remembered_ws = None if previous is None or no_ws else previous.ws_port
        options = BrokerOptions(
            port=port if port is not None else (previous.port if previous else DEFAULT_PORT),
            host=host if host is not None else (previous.host if previous else DEFAULT_HOST),
            root=root if root is not None else (previous.root if previous else DEFAULT_ROOT),
            tls_port=tls_port if tls_port is not None else remembered_tls,
            ws_port=ws_port if ws_port is not None else remembered_ws,
            # A remembered websockets port was acknowledged when it was first given.
            ws_host=ws_host if ws_host is not None else (previous.ws_host if previous else None),
            ws_tls=wss if wss is not None else bool(previous and previous.ws_tls and remembered_ws),
            ws_all_interfaces=ws_all_interfaces or (ws_port is None and remembered_ws is not None),
            max_queued_messages=max_queued_messages
            if max_queued_messages is not None
            else (previous.max_queued_messages if previous else MAX_QUEUED_MESSAGES),
            sys_interval_s=sys_interval
            if sys_interval is not None
            else (previous.sys_interval_s if previous else SYS_INTERVAL_S),
            service_accounts=file.service_accounts,
        )
    except BrokerError as exc:
        raise _fail(exc, 2) from None
    if previous is not None and previous.root != options.root:
        typer.echo(
            f"warning: the topic root changes from {previous.root!r} to {options.root!r}; "
            "agent configs written before still use the old root",
            err=True,
        )
    for warning in ws_warnings(options):
        typer.echo(f"warning: {warning}", err=True)

    def announce(prepared: PreparedBroker) -> None:
        for secret in prepared.created_secrets:
            typer.echo(f"created the {secret.stem} account: password in {secret}")
        if prepared.tls_created:
            typer.echo(
                f"created a CA and server certificate in {layout.tls_dir}; agents verify "
                "the broker with its ca.crt (`arete agents add` copies it to "
                f"{layout.agent_ca_cert})"
            )
        listeners = [f"mqtt://{options.host}:{options.port}"]
        if options.tls_port is not None:
            listeners.append(f"mqtts://{options.host}:{options.tls_port}")
        if options.ws_port is not None:
            scheme = "wss" if options.ws_tls else "ws"
            listeners.append(f"{scheme}://{_url_host(options.ws_bind)}:{options.ws_port}")
        typer.echo(f"broker: {' '.join(listeners)} (root {options.root!r}, data {layout.data_dir})")

    try:
        code = run_broker(layout, options, on_prepared=announce)
    except BrokerError as exc:
        raise _fail(exc) from None
    raise typer.Exit(code)


@broker_app.command("tls-init")
def tls_init(
    data_dir: DataDir,
    names: Annotated[
        list[str] | None,
        typer.Option(
            "--name",
            help="Extra DNS name or IP address clients use for the broker (repeatable). "
            "localhost, 127.0.0.1, ::1 and this machine's host name are always included.",
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="Re-issue the server certificate (the CA is kept)."),
    ] = False,
    new_ca: Annotated[
        bool,
        typer.Option(
            "--new-ca",
            help="Also replace the CA: every agent then needs the new ca.crt.",
        ),
    ] = False,
) -> None:
    """Create a private CA and the broker's server certificate, once.

    The files go to DATA/broker/tls/ (keys readable only by you). Start the
    broker with --tls-port to use them; agents verify the broker with
    ca.crt, which 'arete agents add' copies beside their configs
    (DATA/agents/ca.crt). A running broker reads a re-issued certificate
    only when restarted.

    Example: arete broker tls-init --data-dir ./data --name broker.lan --force
    """
    from mosquitto.config import validate_host
    from mosquitto.layout import Layout
    from mosquitto.tls import init_tls

    try:
        layout = Layout.at(data_dir)
        for name in names or []:
            validate_host(name, "certificate name")
        layout.create()
        result = init_tls(layout, names or [], force=force or new_ca, new_ca=new_ca)
    except BrokerError as exc:
        raise _fail(exc, 2) from None
    if result.ca_created:
        typer.echo(f"created CA {layout.ca_cert} (key {layout.ca_key})")
    if result.server_created:
        typer.echo(
            f"created server certificate {layout.server_cert} for: {', '.join(result.names)}"
        )
    else:
        typer.echo(
            f"kept the existing certificate {layout.server_cert} for: {', '.join(result.names)} "
            "(--force re-issues it)"
        )


def _first(option: _T | None, configured: _T | None) -> _T | None:
    """The command-line value, else the environment's or the file's."""
    return option if option is not None else configured


def _file_data_dir(raw: str | None) -> Path:
    from arete.datadir import data_dir_problem

    if raw is None:
        typer.echo(
            "error: no data dir: give --data-dir DIR (or ARETE_DATA_DIR), or data_dir in "
            "the --config file",
            err=True,
        )
        raise typer.Exit(2)
    problem = data_dir_problem(raw, create=True)
    if problem is not None:
        typer.echo(f"error: {problem}", err=True)
        raise typer.Exit(2)
    return Path(raw)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


MIN_PASSWORD_CHARS = 16


@broker_app.command("passwd")
def passwd(
    username: Annotated[str, typer.Argument(help="The account: maestro, viewer or an agent id.")],
    data_dir: DataDir,
    remove: Annotated[bool, typer.Option("--remove", help="Delete the account instead.")] = False,
) -> None:
    """Set an account's password, read from stdin (one line); only its hash is stored.

    For deployments that create accounts with passwords made elsewhere (never in a
    file, never in argv). Prints "unchanged" when the password is already the one set.
    A broker running on DATA_DIR is told to reload (SIGHUP); one running as another
    user gets a warning (then: systemctl reload arete-broker).

    Examples:

    \b
      arete broker passwd maestro --data-dir /var/lib/arete  # password on stdin

    \b
      arete broker passwd pc-7 --remove --data-dir /var/lib/arete
    """
    from mosquitto.layout import Layout
    from mosquitto.passwd import CHANGED, set_account

    if remove:  # nothing to remove from a data dir that is not there: create none
        problem = data_dir_problem(data_dir, create=False)
        if problem is not None:
            typer.echo(f"error: {problem}", err=True)
            raise typer.Exit(2)
    password = None if remove else sys.stdin.readline().rstrip("\r\n")
    if password is not None and len(password) < MIN_PASSWORD_CHARS:
        typer.echo(
            f"error: give the password on stdin (one line, at least {MIN_PASSWORD_CHARS} "
            "characters: a random one)",
            err=True,
        )
        raise typer.Exit(2)
    try:
        layout = Layout.at(data_dir)
        outcome = set_account(layout, username, password)
    except BrokerError as exc:
        raise _fail(exc, 2) from None
    typer.echo(f"{username}: {outcome}")
    if outcome in CHANGED:
        reload_accounts(layout)


def reload_accounts(layout: Layout, *, say_stopped: bool = False) -> None:
    """Make the running broker reload its accounts (SIGHUP), and say what happened; a
    broker of another user or one that cannot be signalled is a warning, not an error."""
    from mosquitto.errors import ReloadNotPermitted
    from mosquitto.state import reload_broker

    try:
        pid = reload_broker(layout)
    except ReloadNotPermitted as exc:
        typer.echo(f"warning: {exc}", err=True)
        return
    except BrokerError as exc:
        typer.echo(f"warning: could not reload the broker: {exc}", err=True)
        return
    if pid is not None:
        typer.echo(f"the running broker (pid {pid}) reloaded its accounts")
    elif say_stopped:
        typer.echo("the broker is not running; it picks the change up when started")
