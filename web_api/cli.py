"""``arete users ...`` and ``arete web run``.

Wire into ``arete_cli/main.py`` with ``app.add_typer(users_app, name="users")`` and
``app.add_typer(web_app, name="web")``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

users_app = typer.Typer(
    help="Users of the web API and dashboard, and their API tokens.", no_args_is_help=True
)
web_app = typer.Typer(help="The web API and dashboard.", no_args_is_help=True)

DataDir = Annotated[
    Path, typer.Option("--data-dir", help="The data dir (users live in DATA_DIR/web/users.db).")
]


@users_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="User name (letters, digits, _ . @ -).")],
    data_dir: DataDir,
    role: Annotated[str, typer.Option(help="viewer, operator or admin.")] = "viewer",
    password: Annotated[
        bool, typer.Option("--password", help="Also ask for a dashboard password.")
    ] = False,
) -> None:
    """Add a user and print a new API token (shown this once; only its hash is kept).

    Examples:

      arete users add ci --role operator --data-dir /var/lib/arete

      arete users add alice --role admin --password --data-dir /var/lib/arete
    """
    from web_api.auth.users import UserError, UserStore

    secret = (
        typer.prompt("Password", hide_input=True, confirmation_prompt=True) if password else None
    )
    store = UserStore(data_dir / "web" / "users.db")
    try:
        store.add_user(name, role, secret)
        token = store.create_token(name, "created by arete users add")
    except UserError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    finally:
        store.close()
    typer.echo(token)


@users_app.command("passwd")
def passwd(
    name: Annotated[str, typer.Argument(help="The user whose dashboard password to set.")],
    data_dir: DataDir,
) -> None:
    """Set a user's dashboard password (asked twice, never echoed); ends their sessions.

    Example (after `arete up` printed admin's one-time password):

      arete users passwd admin --data-dir ./data
    """
    from web_api.auth.users import UserError, UserStore

    secret = typer.prompt("New password", hide_input=True, confirmation_prompt=True)
    store = UserStore(data_dir / "web" / "users.db")
    try:
        store.set_password(name, secret)
    except UserError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    finally:
        store.close()
    typer.echo(f"password of {name} changed; their sessions are ended")


@users_app.command("list")
def list_users(data_dir: DataDir) -> None:
    """List users, their roles and how many API tokens each has."""
    from web_api.auth.users import UserStore

    store = UserStore(data_dir / "web" / "users.db")
    try:
        for user in store.list_users():
            password = "password" if user.has_password else "no password"
            typer.echo(f"{user.name}\t{user.role}\t{password}\t{user.tokens} token(s)")
    finally:
        store.close()


@users_app.command("remove")
def remove(
    name: Annotated[str, typer.Argument(help="The user to remove (with tokens, sessions).")],
    data_dir: DataDir,
) -> None:
    """Remove a user; their tokens and sessions stop working at once."""
    from web_api.auth.users import UserStore

    store = UserStore(data_dir / "web" / "users.db")
    try:
        if not store.remove_user(name):
            typer.echo(f"error: no user {name!r}", err=True)
            raise typer.Exit(1)
    finally:
        store.close()
    typer.echo(f"removed {name}")


@web_app.command("run")
def run(
    data_dir: DataDir,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
) -> None:
    """Run the maestro and the web API in one process until SIGTERM or Ctrl-C.

    On the first start an ``admin`` user is created and its one-time password printed.

    Examples:

      arete web run --data-dir ~/.local/share/arete

      ARETE_WEB_ALLOWED_ORIGINS='["https://arete.example.org"]' \\
        arete web run --data-dir /var/lib/arete --host 0.0.0.0 --port 8443
    """
    import uvicorn

    from maestro.errors import MaestroError
    from web_api.app import create_app
    from web_api.auth.users import ensure_admin
    from web_api.settings import WebSettings

    settings = WebSettings(data_dir=data_dir, host=host, port=port)
    password = ensure_admin(data_dir)
    if password is not None:
        typer.echo(f"created user admin with the one-time password: {password}")
    try:
        uvicorn.run(
            create_app(settings),
            host=settings.host,
            port=settings.port,
            log_level="info",
            proxy_headers=True,
            ws="websockets-sansio",
        )
    except MaestroError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
