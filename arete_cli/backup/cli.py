"""``arete backup key|create|list|verify|restore``: encrypted archives of a data dir.

Wire into ``arete_cli/main.py`` with ``app.add_typer(backup_app, name="backup")``.
Every failure is one ``error:`` line on stderr and exit code 2.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from arete_cli.backup.errors import BackupError
from arete_cli.options import data_dir_option

# The commands import the archive code (cryptography, msgspec) when they run: `arete
# --help` stays fast, and works where only the base package is installed.
DEFAULT_KEEP = 7

backup_app = typer.Typer(
    help="Encrypted backups of a data dir (databases, broker accounts, keys, configs), "
    "and restoring them. See docs/backup.md.",
    no_args_is_help=True,
)

KeyFile = Annotated[
    Path | None,
    typer.Option(
        "--key-file",
        metavar="FILE",
        help="The backup key (default: $ARETE_BACKUP_KEY_FILE, $ARETE_BACKUP_KEY, or the "
        "systemd credential backup-key).",
    ),
]
OutDir = Annotated[
    Path,
    typer.Option("--out", metavar="DIR", envvar="ARETE_BACKUP_OUT", help="The archives' dir."),
]


@contextlib.contextmanager
def _one_line_errors() -> Iterator[None]:
    try:
        yield
    except BackupError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def _size(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    value = float(size)
    for unit in ("KiB", "MiB", "GiB"):
        value /= 1024
        if value < 1024 or unit == "GiB":
            break
    return f"{value:.1f} {unit}"


@backup_app.command("key")
def key(
    stdout: Annotated[bool, typer.Option("--stdout", help="Print the new key.")] = False,
    out: Annotated[
        Path | None, typer.Option("--out", metavar="FILE", help="Write it to FILE (0600).")
    ] = None,
) -> None:
    """Make a new backup key (32 random bytes, base64). Keep a copy away from the host:
    without it no archive can be restored.

    Examples:

    \b
      arete backup key --out ~/arete-backup.key
      arete backup key --stdout | systemd-creds encrypt --name=backup-key - \\
        /etc/credstore.encrypted/backup-key
    """
    from arete_cli.backup.crypto import key_id, key_text, new_key
    from arete_cli.backup.keys import write_key_file

    if stdout == (out is not None):
        typer.echo("error: give exactly one of --stdout or --out FILE", err=True)
        raise typer.Exit(2)
    with _one_line_errors():
        if out is not None:
            made = write_key_file(out)
            typer.echo(f"wrote a new backup key to {out} (key id {key_id(made)})")
            return
    made = new_key()
    typer.echo(key_text(made))
    typer.echo(f"key id {key_id(made)}", err=True)


@backup_app.command("create")
def create(
    data_dir: Annotated[Path, data_dir_option("The data dir to back up (services may run).")],
    out: OutDir,
    keep: Annotated[
        int, typer.Option(min=1, metavar="N", help="How many archives to keep in --out (newest).")
    ] = DEFAULT_KEEP,
    config: Annotated[
        list[Path] | None,
        typer.Option("--config", metavar="FILE", help="A config file to include (repeat)."),
    ] = None,
    key_file: KeyFile = None,
) -> None:
    """Write one encrypted, timestamped archive of DATA_DIR into --out, while everything
    runs; keep the newest --keep archives there and remove older ones.

    Examples:

    \b
      arete backup create --data-dir ./data --out ./backups --key-file KEY
      arete backup create --data-dir /var/lib/arete --out /var/backups/arete \\
        --keep 14 --config /etc/arete/control.toml --config /etc/arete/broker.toml
    """
    from arete_cli.backup.archive import create_archive
    from arete_cli.backup.keys import load_key

    with _one_line_errors():
        secret = load_key(key_file, os.environ)
        made = create_archive(data_dir, out, secret, configs=config or [], keep=keep)
    manifest = made.manifest
    typer.echo(
        f"wrote {made.path} ({len(manifest.files)} files, {_size(manifest.total_bytes)} "
        f"before encryption, archive {_size(made.path.stat().st_size)})"
    )
    for path in made.removed:
        typer.echo(f"removed {path} (keeping the newest {keep})")


@backup_app.command("list")
def list_(out: OutDir) -> None:
    """List the archives in --out, oldest first: name, time (UTC), size."""
    from arete_cli.backup.archive import list_archives

    with _one_line_errors():
        listed = list_archives(out)
    if not listed:
        typer.echo(f"no archives in {out}")
        return
    for item in listed:
        typer.echo(f"{item.path.name}\t{item.created:%Y-%m-%d %H:%M:%S}Z\t{_size(item.size)}")


@backup_app.command("verify")
def verify(
    archive: Annotated[Path, typer.Argument(metavar="ARCHIVE", help="The archive to check.")],
    key_file: KeyFile = None,
) -> None:
    """Decrypt and check a whole archive against its manifest; write nothing.

    Example:

    \b
      arete backup verify backups/arete-20261206T031500Z.backup --key-file KEY
    """
    from arete_cli.backup.keys import load_key
    from arete_cli.backup.restore import verify_archive

    with _one_line_errors():
        manifest = verify_archive(archive, load_key(key_file, os.environ))
    typer.echo(
        f"{archive}: ok, made {manifest.created_at} on {manifest.host} from "
        f"{manifest.data_dir}, {len(manifest.files)} files, {_size(manifest.total_bytes)}"
    )
    # Names, kinds and sizes only: a digest of a secret file would let anyone who sees
    # this output test guesses of the secret.
    for entry in manifest.files:
        where = "config: " if entry.area == "config" else ""
        typer.echo(f"  {where}{entry.path}\t{entry.kind}\t{entry.size}")


@backup_app.command("restore")
def restore(
    archive: Annotated[Path, typer.Argument(metavar="ARCHIVE", help="The archive to restore.")],
    data_dir: Annotated[
        Path,
        typer.Option(
            "--data-dir", metavar="DIR", help="Where to restore: a new or empty directory."
        ),
    ],
    config_dir: Annotated[
        Path | None,
        typer.Option(
            "--config-dir", metavar="DIR", help="Also write the archive's config files here."
        ),
    ] = None,
    key_file: KeyFile = None,
) -> None:
    """Restore an archive into a new or empty data dir (a non-empty one is refused).

    The whole archive is decrypted and checked before anything is put in place: a wrong
    key or a damaged archive changes nothing. Start the services on DIR afterwards.

    Examples:

    \b
      arete backup restore backups/arete-20261206T031500Z.backup \\
        --data-dir ./data --key-file KEY
      arete backup restore ARCHIVE --data-dir /var/lib/arete --config-dir DIR
    """
    from arete_cli.backup.keys import load_key
    from arete_cli.backup.restore import restore_archive

    with _one_line_errors():
        restored = restore_archive(
            archive, data_dir, load_key(key_file, os.environ), config_dir=config_dir
        )
    manifest = restored.manifest
    typer.echo(
        f"restored {len(manifest.files)} files ({_size(manifest.total_bytes)}) made "
        f"{manifest.created_at} on {manifest.host} into {data_dir}"
    )
    for path in restored.configs_written:
        typer.echo(f"wrote config {path}")
    if restored.configs_skipped:
        typer.echo(
            f"config files in the archive, not restored (no --config-dir): "
            f"{', '.join(restored.configs_skipped)}"
        )
