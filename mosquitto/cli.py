"""``arete broker ...``: run the locked-down Mosquitto broker and make its TLS files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mosquitto.errors import BrokerError

broker_app = typer.Typer(
    help="Run Areté's Mosquitto broker (accounts, per-agent ACL, persistence, TLS).",
    no_args_is_help=True,
)

DataDir = Annotated[
    Path,
    typer.Option(
        "--data-dir",
        envvar="ARETE_DATA_DIR",
        help="Directory holding the broker's config, accounts, persistence and TLS files.",
    ),
]


def _fail(exc: BrokerError, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(code)


@broker_app.command("run")
def run(  # noqa: PLR0917 - Typer passes CLI options as keyword arguments
    data_dir: DataDir,
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
        typer.Option("--root", help="Topic root (default: the last run's, else arete)."),
    ] = None,
    tls_port: Annotated[
        int | None,
        typer.Option(
            "--tls-port",
            min=1,
            max=65535,
            help="Also listen with TLS on this port (the CA and server certificate are "
            "generated on first use; see `arete broker tls-init`).",
        ),
    ] = None,
    ws_port: Annotated[
        int | None,
        typer.Option(
            "--ws-port",
            min=1,
            max=65535,
            help="Also listen for MQTT over websockets (needs --ws-all-interfaces).",
        ),
    ] = None,
    ws_all_interfaces: Annotated[
        bool,
        typer.Option(
            "--ws-all-interfaces",
            help="Accept that Mosquitto 2.0.11 binds the websockets port on ALL interfaces.",
        ),
    ] = False,
) -> None:
    """Run Mosquitto in the foreground until Ctrl-C or SIGTERM.

    Every run regenerates mosquitto.conf and the ACL. The first run also
    creates the `maestro` (full access) and `viewer` (read-only) accounts,
    their passwords in DATA/secrets/ (readable only by you).
    SIGHUP reloads the accounts and the ACL.

    Example: arete broker run --data-dir ./data --port 1883 --tls-port 8883
    """
    from mosquitto.config import DEFAULT_HOST, DEFAULT_PORT, BrokerOptions
    from mosquitto.layout import Layout
    from mosquitto.runner import PreparedBroker, run_broker
    from mosquitto.state import load_info

    try:
        layout = Layout.at(data_dir)
        previous = load_info(layout) if layout.state_file.exists() else None
        options = BrokerOptions(
            port=port or (previous.port if previous else DEFAULT_PORT),
            host=host or (previous.host if previous else DEFAULT_HOST),
            root=root or (previous.root if previous else "arete"),
            tls_port=tls_port,
            ws_port=ws_port,
            ws_all_interfaces=ws_all_interfaces,
        )
    except BrokerError as exc:
        raise _fail(exc, 2) from None
    if previous is not None and previous.root != options.root:
        typer.echo(
            f"warning: the topic root changes from {previous.root!r} to {options.root!r}; "
            "agent configs written before still use the old root",
            err=True,
        )
    if options.ws_port is not None:
        typer.echo(
            f"warning: the websockets listener on port {options.ws_port} is reachable on "
            "ALL network interfaces (Mosquitto 2.0.11 ignores the bind address); "
            "firewall it if that is not what you want",
            err=True,
        )

    def announce(prepared: PreparedBroker) -> None:
        for secret in prepared.created_secrets:
            typer.echo(f"created the {secret.stem} account: password in {secret}")
        if prepared.tls_created:
            typer.echo(
                f"created a CA and server certificate in {layout.tls_dir}; "
                f"agents verify the broker with {layout.ca_cert}"
            )
        listeners = [f"mqtt://{options.host}:{options.port}"]
        if options.tls_port is not None:
            listeners.append(f"mqtts://{options.host}:{options.tls_port}")
        if options.ws_port is not None:
            listeners.append(f"ws://*:{options.ws_port}")
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
    DATA/broker/tls/ca.crt. A running broker reads a re-issued certificate
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
