"""``arete users ...`` and ``arete web run``.

Wire into ``arete_cli/main.py`` with ``app.add_typer(users_app, name="users")`` and
``app.add_typer(web_app, name="web")``.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from arete_cli.options import data_dir_option

if TYPE_CHECKING:
    from web_api.auth.users import UserStore

users_app = typer.Typer(
    help="Users of the web API and dashboard, and their API tokens.", no_args_is_help=True
)
web_app = typer.Typer(help="The web API and dashboard.", no_args_is_help=True)

DataDir = Annotated[Path, data_dir_option("The data dir (users live in DATA_DIR/web/users.db).")]


@contextlib.contextmanager
def _users(data_dir: Path, *, create: bool = False) -> Iterator[UserStore]:
    """The user store, closed after; a UserError is one line on stderr and exit code 2.

    Only ``create`` (adding a user) may make the store: the other commands on a data
    dir that has none say so and leave the data dir as it was.
    """
    from web_api.auth.users import UserError, UserStore

    path = data_dir / "web" / "users.db"
    if not create and not path.is_file():
        typer.echo(
            f"error: {data_dir} has no users yet ({path} does not exist); 'arete web run' "
            f"or 'arete up' creates admin, or: arete users add NAME --data-dir {data_dir}",
            err=True,
        )
        raise typer.Exit(2)
    try:
        store = UserStore(path)
        try:
            yield store
        finally:
            store.close()
    except UserError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def _stdin_password() -> str:
    secret = sys.stdin.readline().rstrip("\r\n")
    if not secret:
        typer.echo("error: no password on stdin (one line expected)", err=True)
        raise typer.Exit(2)
    return secret


def _when(ts: float | None) -> str:
    return "never" if ts is None else datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")


@users_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="User name (letters, digits, _ . @ -).")],
    data_dir: DataDir,
    role: Annotated[str, typer.Option(help="viewer, operator or admin.")] = "viewer",
    password: Annotated[
        bool, typer.Option("--password", help="Also ask for a dashboard password.")
    ] = False,
    password_stdin: Annotated[
        bool,
        typer.Option(
            "--password-stdin",
            help="Read the dashboard password from stdin (one line; for deployments).",
        ),
    ] = False,
) -> None:
    """Add a user and print a new API token (shown this once; only its hash is kept).

    A deployment that creates admin this way (--password-stdin) before the first
    'arete web run' gets no one-time admin password file.

    Examples:

    \b
      arete users add ci --role operator --data-dir /var/lib/arete

    \b
      arete users add alice --role admin --password --data-dir /var/lib/arete
    """
    secret = _stdin_password() if password_stdin else None
    if password and not password_stdin:
        secret = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    with _users(data_dir, create=True) as store:
        store.add_user(name, role, secret)
        token = store.create_token(name, "created by arete users add")
    typer.echo(token)


@users_app.command("passwd")
def passwd(
    name: Annotated[str, typer.Argument(help="The user whose dashboard password to set.")],
    data_dir: DataDir,
    password_stdin: Annotated[
        bool,
        typer.Option("--password-stdin", help="Read it from stdin (one line), not a prompt."),
    ] = False,
) -> None:
    """Set a user's dashboard password (asked twice, never echoed); ends their sessions.

    Example (after 'arete up' printed admin's one-time password):

    \b
      arete users passwd admin --data-dir ./data
    """
    if password_stdin:
        secret = _stdin_password()
    else:
        secret = typer.prompt("New password", hide_input=True, confirmation_prompt=True)
    with _users(data_dir) as store:
        store.set_password(name, secret)
    typer.echo(f"password of {name} changed; their sessions are ended")


@users_app.command("list")
def list_users(data_dir: DataDir) -> None:
    """List users, their roles and how many API tokens each has."""
    with _users(data_dir) as store:
        users = store.list_users()
    for user in users:
        password = "password" if user.has_password else "no password"
        typer.echo(f"{user.name}\t{user.role}\t{password}\t{user.tokens} token(s)")


@users_app.command("remove")
def remove(
    name: Annotated[str, typer.Argument(help="The user to remove (with tokens, sessions).")],
    data_dir: DataDir,
) -> None:
    """Remove a user; their tokens and sessions stop working at once."""
    with _users(data_dir) as store:
        removed = store.remove_user(name)
    if not removed:
        typer.echo(f"error: no user {name!r}", err=True)
        raise typer.Exit(1)
    typer.echo(f"removed {name}")


@users_app.command("tokens")
def tokens(
    name: Annotated[str, typer.Argument(help="The user whose API tokens to list.")],
    data_dir: DataDir,
) -> None:
    """List a user's API tokens: id, label, when made and last used (never the secret).

    The id is the <id> of arete_<id>_<secret>; give it to 'arete users revoke'.

    Example:

    \b
      arete users tokens ci --data-dir /var/lib/arete
    """
    with _users(data_dir) as store:
        listed = store.list_tokens(name)
    if not listed:
        typer.echo(f"{name} has no API tokens; make one with: arete users token-add {name}")
        return
    width = max(len("LABEL"), *(len(t.label) for t in listed))
    typer.echo(f"{'ID':<16}  {'LABEL':<{width}}  {'CREATED':<16}  LAST USED")
    for token in listed:
        created = _when(token.created_at)
        typer.echo(f"{token.id}  {token.label:<{width}}  {created}  {_when(token.last_used_at)}")


@users_app.command("token-add")
def token_add(
    name: Annotated[str, typer.Argument(help="The user who gets another API token.")],
    data_dir: DataDir,
    label: Annotated[str, typer.Option(help="What the token is for (shown in lists).")] = "",
) -> None:
    """Print another API token for an existing user (shown this once; only its hash is kept).

    Example:

    \b
      arete users token-add ci --label "nightly deploy" --data-dir /var/lib/arete
    """
    with _users(data_dir) as store:
        token = store.create_token(name, label)
    typer.echo(token)


@users_app.command("revoke")
def revoke(
    name: Annotated[str, typer.Argument(help="The user the token belongs to.")],
    token_id: Annotated[
        str, typer.Argument(help="The token's id (from 'arete users tokens NAME').")
    ],
    data_dir: DataDir,
) -> None:
    """Revoke one API token; its next request gets 401 (the user and their other tokens stay).

    Example (the id is the 16 hex digits after arete_ in the token):

    \b
      arete users revoke ci 3f2a9c0d4b5e6f71 --data-dir /var/lib/arete
    """
    with _users(data_dir) as store:
        revoked = store.revoke_token(name, token_id)
    if not revoked:
        typer.echo(
            f"error: user {name!r} has no token {token_id!r} (see: arete users tokens {name})",
            err=True,
        )
        raise typer.Exit(1)
    typer.echo(f"revoked token {token_id} of {name}")


def announce_admin_password(data_dir: Path, password: str, terminal: bool) -> str:
    """The line that tells where the first admin's one-time password is.

    On a terminal it is the password itself. Otherwise the output likely goes to a log
    (the journal of a service), where a password must never be: it is written to
    ``DATA/web/admin-initial.password`` (0600) and the line names that file.
    """
    if terminal:
        return (
            f"created user admin with the one-time password: {password}\n"
            "(choose your own at the first sign-in)"
        )
    path = data_dir / "web" / "admin-initial.password"
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(password + "\n")
    return (
        f"created user admin; its one-time password is in {path} (mode 0600; choose your "
        "own at the first sign-in, then delete the file)"
    )


@web_app.command("run")
def run(
    data_dir: Annotated[
        Path | None,
        data_dir_option(
            "The data dir (users live in DATA_DIR/web/users.db); default: the config "
            "file's data_dir."
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="TOML settings file: data_dir, [web] and [maestro] (see docs/api.md).",
        ),
    ] = None,
    replica: Annotated[
        str | None,
        typer.Option(help="This control-plane replica's name; run several with different names."),
    ] = None,
    host: Annotated[
        str | None, typer.Option(help="Address to listen on (default 127.0.0.1).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="Port to listen on (default 8080).")
    ] = None,
) -> None:
    """Run the maestro and the web API in one process until SIGTERM or Ctrl-C.

    On the first start an admin user is created and its one-time password printed
    (written to DATA_DIR/web/admin-initial.password when the output is not a terminal).
    The API serves plain HTTP: put a TLS proxy in front of it to serve other machines.

    Settings: options > ARETE_WEB_* / ARETE_MAESTRO_* environment > --config file >
    defaults. The file holds data_dir, a [web] table (host, port, allowed_origins,
    trusted_proxies, ...) and a [maestro] table (the keys of maestro.toml).

    Examples:

    \b
      arete web run --data-dir ~/.local/share/arete
      ARETE_WEB_ALLOWED_ORIGINS='["https://arete.example.org"]' \\
        arete web run --data-dir /var/lib/arete --host 0.0.0.0 --port 8080

    \b
      arete web run --config /etc/arete/control.toml --replica a --port 8081
    """
    import uvicorn

    from arete.datadir import data_dir_problem
    from arete.logs import setup_logging
    from maestro.errors import MaestroError
    from maestro.settings import resolve_broker
    from web_api.app import create_app
    from web_api.auth.users import UserError, ensure_admin
    from web_api.settings import load_control

    try:
        settings, maestro_settings = load_control(
            config, data_dir=data_dir, replica=replica, host=host, port=port
        )
        data_dir = settings.data_dir
        problem = data_dir_problem(data_dir, create=False)
        if problem is not None:
            typer.echo(f"error: {problem}", err=True)
            raise typer.Exit(2)
        # Everything the maestro needs is checked before admin is made: a start that
        # cannot succeed must not use up the one-time password.
        resolve_broker(maestro_settings)
        password = ensure_admin(data_dir)
        if password is not None:
            typer.echo(announce_admin_password(data_dir, password, sys.stdout.isatty()))
    except (MaestroError, UserError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    # One logging setup for the maestro, the API and uvicorn (ARETE_MAESTRO_LOG_LEVEL,
    # ARETE_MAESTRO_LOG_FORMAT); one line per request only at debug.
    setup_logging(maestro_settings.log_level, maestro_settings.log_format)
    from maestro.main import tune_gc

    tune_gc()  # the maestro runs in this process: same collector settings as its own
    debug = maestro_settings.log_level == "debug"
    try:
        uvicorn.run(
            create_app(settings, maestro_settings=maestro_settings),
            log_config=None,
            log_level=maestro_settings.log_level,
            access_log=debug,
            **settings.server_options(),
        )
    except MaestroError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
