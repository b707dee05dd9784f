"""``arete maestro ...``: run the control plane."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from arete_cli.options import data_dir_option

maestro_app = typer.Typer(
    help="The maestro: fleet registry and liveness, metric storage, alerts, commands.",
    no_args_is_help=True,
)


@maestro_app.command("run")
def run(
    data_dir: Annotated[
        Path | None,
        data_dir_option(
            "Data dir of 'arete broker run' (broker address, root and the maestro's "
            "password are read from it); the store lives in DATA_DIR/maestro/. "
            "Default: the config file's data_dir."
        ),
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="TOML settings file (see docs/maestro.md).")
    ] = None,
    replica: Annotated[
        str | None,
        typer.Option(help="This replica's name; run several with different names."),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(help="Serve Prometheus metrics on this port (127.0.0.1; 0 = off)."),
    ] = None,
) -> None:
    """Run the maestro until SIGTERM or Ctrl-C.

    Examples:

    \b
      arete maestro run --data-dir ~/.local/share/arete

    \b
      ARETE_MAESTRO_NOTIFY__TELEGRAM__TOKEN_FILE=/run/secrets/tg \\
        arete maestro run --data-dir /var/lib/arete \\
        --config /etc/arete/maestro.toml

    \b
      arete maestro run --data-dir /var/lib/arete --replica b   # a second replica
    """
    from arete.datadir import data_dir_problem
    from maestro.errors import MaestroError
    from maestro.main import run_forever
    from maestro.settings import load_settings

    try:
        settings = load_settings(
            config, data_dir=data_dir, replica=replica, metrics_port=metrics_port
        )
        problem = data_dir_problem(settings.data_dir, create=False)
        if problem is not None:
            typer.echo(f"error: {problem}", err=True)
            raise typer.Exit(2)
        code = run_forever(settings)
    except MaestroError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    raise typer.Exit(code)


@maestro_app.command("retire")
def retire(
    data_dir: Annotated[Path, data_dir_option("Data dir of 'arete broker run', as for run.")],
    replica: Annotated[str, typer.Option(help="The replica to retire (it must be stopped).")],
    config: Annotated[
        Path | None, typer.Option("--config", help="TOML settings file (see docs/maestro.md).")
    ] = None,
    quiet_s: Annotated[
        float,
        typer.Option(min=0.5, max=60, help="Done when no sample arrived for this long."),
    ] = 2.0,
) -> None:
    """Remove a stopped replica for good: store the backlog the broker kept for it, hand
    its share of the metrics to the other replicas and end its broker session.

    A stopped replica's session is kept so that a restart loses nothing; meanwhile the
    broker queues that replica's share of the metrics, and drops them once the queue is
    full. Retire a replica you will not start again. Refused when no other replica is
    online (nobody would receive the metrics).

    Example:

    \b
      arete maestro retire --data-dir /var/lib/arete --replica b
    """
    import asyncio

    from arete.logs import setup_logging
    from maestro.errors import MaestroError
    from maestro.retire import retire as retire_replica
    from maestro.settings import load_settings

    try:
        settings = load_settings(config, data_dir=data_dir, replica=replica, metrics_port=0)
        setup_logging(settings.log_level, settings.log_format)
        done = asyncio.run(retire_replica(settings, quiet_s=quiet_s))
    except MaestroError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(
        f"replica {done.replica} retired: {done.samples} samples stored from its backlog "
        f"in {settings.database}; {', '.join(done.others)} now take all metrics"
    )
