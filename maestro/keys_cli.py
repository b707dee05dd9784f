"""``arete keys ...``: the maestro's command-signing key pair."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from arete_cli.options import data_dir_option

keys_app = typer.Typer(
    help="Create and show the key pair the maestro signs commands with.",
    no_args_is_help=True,
)

MAX_KEY_BYTES = 16 * 1024
HELP = "The data dir shared with 'arete broker run' and 'arete maestro run'."
NewDataDir = Annotated[Path, data_dir_option(HELP, create=True)]
DataDir = Annotated[Path, data_dir_option(HELP)]


def _instructions(public_key: str, data_dir: Path) -> str:
    return f"""\
Public key (give it to every agent; it is not a secret):

  {public_key}

Agents then run only commands signed with this maestro's private key. Either put it
in the agent's TOML file:

  [commands]
  public_key = "{public_key}"

or set it in the agent's environment:

  ARETE_AGENT_COMMANDS__PUBLIC_KEY={public_key}

`arete agents add ID --data-dir {data_dir}` writes it into new agents' configs for you.
"""


@keys_app.command("create")
def create(
    data_dir: NewDataDir,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Replace an existing key pair (agents must then get the new public key).",
        ),
    ] = False,
) -> None:
    """Create the signing key pair and print how to give the public key to agents.

    Writes DATA_DIR/secrets/maestro-signing.key (private, mode 0600) and
    DATA_DIR/maestro-signing.pub. Refuses to replace an existing key without --force.

    Examples:

    \b
      arete keys create --data-dir ~/.local/share/arete

    \b
      arete keys create --data-dir /var/lib/arete --force   # rotate the key
    """
    from maestro.errors import ConfigError
    from maestro.keys import create_keys, read_public_key

    try:
        paths = create_keys(data_dir, force=force)
        public_key = read_public_key(data_dir)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"Private key: {paths.private} (keep it secret; the maestro reads it)")
    typer.echo(f"Public key file: {paths.public}\n")
    typer.echo(_instructions(public_key, data_dir), nl=False)


@keys_app.command("show")
def show(
    data_dir: DataDir,
    raw: Annotated[
        bool, typer.Option("--raw", help="Print only the public key (for scripts).")
    ] = False,
) -> None:
    """Print the public key and how to give it to agents.

    Examples:

    \b
      arete keys show --data-dir /var/lib/arete

    \b
      ARETE_AGENT_COMMANDS__PUBLIC_KEY=$(arete keys show --raw \\
        --data-dir /var/lib/arete)
    """
    from maestro.errors import ConfigError
    from maestro.keys import read_public_key

    try:
        public_key = read_public_key(data_dir)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if raw:
        typer.echo(public_key)
        return
    typer.echo(_instructions(public_key, data_dir), nl=False)


@keys_app.command("generate")
def generate(
    stdout: Annotated[
        bool,
        typer.Option("--stdout", help="Print the new private key (PEM) on standard output."),
    ] = False,
) -> None:
    """Print a new Ed25519 private key (PKCS#8 PEM) on stdout; nothing is written to disk.

    For deployments that keep the key out of plain files: pipe it straight into an
    encrypted systemd credential, then point the maestro's signing_key_file at
    $CREDENTIALS_DIRECTORY/signing-key. 'arete keys public' prints its public key.

    Example:

    \b
      arete keys generate --stdout | systemd-creds encrypt --with-key=host \\
        --name=signing-key - /etc/credstore.encrypted/signing-key
    """
    from maestro.keys import new_private_key_pem

    if not stdout:
        typer.echo(
            "error: give --stdout (the key is printed, never stored); to keep a key pair "
            "in a data dir use: arete keys create --data-dir DIR",
            err=True,
        )
        raise typer.Exit(2)
    sys.stdout.buffer.write(new_private_key_pem())
    sys.stdout.flush()


@keys_app.command("public")
def public(
    private_key_file: Annotated[
        str,
        typer.Option(
            "--private-key-file",
            metavar="PATH|-",
            help="The private key (PEM); '-' reads it from stdin; "
            "$CREDENTIALS_DIRECTORY/NAME is expanded.",
        ),
    ],
) -> None:
    """Print the public key (one base64 line, what an agent's commands.public_key takes)
    of a private key read from a file, a systemd credential or stdin.

    Examples:

    \b
      arete keys generate --stdout | arete keys public --private-key-file -

    \b
      arete keys public --private-key-file '$CREDENTIALS_DIRECTORY/signing-key'

    \b
      arete keys public --private-key-file ./data/secrets/maestro-signing.key
    """
    from maestro.errors import ConfigError
    from maestro.keys import load_signing_key, parse_signing_key, public_key_text
    from maestro.secrets import expand_credentials

    try:
        if private_key_file == "-":
            data = sys.stdin.buffer.read(MAX_KEY_BYTES + 1)
            if len(data) > MAX_KEY_BYTES:
                raise ConfigError("the private key on stdin is too large to be a key")
            key = parse_signing_key(data, "the private key on stdin")
        else:
            try:
                path = expand_credentials(private_key_file)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
            key = load_signing_key(path)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(public_key_text(key))
