"""``arete release ...``: the release key, signed releases and the maestro's release store
(docs/updates.md).

The release key signs what agents install; it is NOT the command-signing key (``arete
keys``): keep it offline, on the machine that builds releases.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sys
import time
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Final, NoReturn

import typer

from arete_cli.options import data_dir_option

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

release_app = typer.Typer(
    help="Signed releases of Areté for the agents' 'update' command (docs/updates.md).",
    no_args_is_help=True,
)
key_app = typer.Typer(
    help="The release signing key (not the command-signing key).", no_args_is_help=True
)
release_app.add_typer(key_app, name="key")

MAX_KEY_BYTES: Final = 16 * 1024
_DURATION = re.compile(r"^([0-9]+(?:\.[0-9]+)?)([smhdw]?)\Z")
_UNITS: Final = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
DataDir = Annotated[Path, data_dir_option("The maestro's data dir (its release store).")]
PublicKeys = Annotated[
    list[str],
    typer.Option(
        "--public-key",
        metavar="KEY|FILE",
        help="A trusted release public key (base64, PEM, or a file holding one); repeatable.",
    ),
]
StoreKeys = Annotated[
    list[str] | None,
    typer.Option(
        "--public-key",
        metavar="KEY|FILE",
        help="A trusted release public key; repeatable. Default: the maestro's"
        " [releases] public_keys (from --config and ARETE_MAESTRO_RELEASES__*).",
    ),
]
Config = Annotated[
    Path | None,
    typer.Option("--config", metavar="FILE", help="The maestro's TOML settings file."),
]


def _fail(message: str, code: int = 2) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def parse_duration(text: str) -> float:
    """Seconds in ''30d'', ''12h'', ''90m'', ''3600s'' or ''3600''."""
    match = _DURATION.match(text.strip())
    if match is None or float(match[1]) <= 0:
        raise ValueError(f"invalid duration {text!r}: use e.g. 30d, 12h, 90m or 3600s")
    return float(match[1]) * _UNITS[match[2]]


def wheel_version(wheel: Path) -> str | None:
    """The ''Version:'' of a wheel's METADATA, or None when it has none."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            names = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
            if len(names) != 1:
                return None
            with archive.open(names[0]) as handle:
                for raw in handle.read(256 * 1024).decode("utf-8", "replace").splitlines():
                    if raw.startswith("Version:"):
                        return raw.split(":", 1)[1].strip()
                    if not raw.strip():
                        break  # the headers end at the first empty line
    except (OSError, zipfile.BadZipFile):
        return None
    return None


def _private_key(path: Path) -> Ed25519PrivateKey:
    from maestro.errors import ConfigError
    from maestro.keys import load_signing_key

    try:
        return load_signing_key(path)
    except ConfigError as exc:
        _fail(str(exc).replace("signing key", "release key"))


def _trusted_keys(values: list[str]) -> dict[str, Ed25519PublicKey]:
    from arete.errors import KeyFormatError
    from arete.release import key_file_entries, load_keyring

    sources: list[tuple[str, str]] = []
    for value in values:
        where = f"--public-key {value[:40]!r}"
        if not value.strip().startswith("-----BEGIN") and Path(value).is_file():
            sources += key_file_entries(where, Path(value).read_text(encoding="utf-8"))
        else:
            sources.append((where, value))
    try:
        keys = load_keyring(sources)
    except KeyFormatError as exc:
        _fail(str(exc))
    if not keys:
        _fail("give at least one --public-key")
    return keys


def _store_keys(
    values: list[str], config: Path | None, data_dir: Path
) -> dict[str, Ed25519PublicKey]:
    """--public-key values, else the maestro's own ''[releases]'' keys."""
    if values:
        return _trusted_keys(values)
    from maestro.errors import ConfigError
    from maestro.settings import load_settings

    try:
        keys = load_settings(config, data_dir=data_dir).releases.keys()
    except ConfigError as exc:
        _fail(str(exc))
    if not keys:
        _fail("no release public key: give --public-key, or set [releases] public_keys")
    return keys


# -- key ------------------------------------------------------------------------------
@key_app.command("generate")
def key_generate(
    out: Annotated[
        Path | None, typer.Option("--out", metavar="FILE", help="Write the key here (0600).")
    ] = None,
    stdout: Annotated[
        bool, typer.Option("--stdout", help="Print the key instead (for a secrets manager).")
    ] = False,
) -> None:
    """Make a new release signing key (Ed25519, PEM). Refuses to overwrite a file.

    Keep it offline, on the machine that builds releases: whoever holds it decides what
    every agent with '[update] enabled = true' installs. It must not be the maestro's
    command-signing key ('arete keys').

    Examples:

    \b
      arete release key generate --out ~/.arete/release.key
      arete release key public ~/.arete/release.key
    """
    from maestro.keys import new_private_key_pem

    if (out is None) == (not stdout):
        _fail("give exactly one of --out FILE or --stdout")
    pem = new_private_key_pem()
    if out is None:
        sys.stdout.write(pem.decode("ascii"))
        return
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        _fail(f"{out} already exists; refusing to overwrite a key")
    except OSError as exc:
        _fail(f"cannot create {out}: {exc.strerror}")
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    typer.echo(f"release key written to {out} (mode 0600)")


@key_app.command("public")
def key_public(
    key_file: Annotated[Path, typer.Argument(metavar="FILE", help="The release private key.")],
) -> None:
    """Print the release public key (base64 of its raw 32 bytes: what agents' '[update]
    release_keys' and the maestro's '[releases] public_keys' take) and its key id."""
    from arete.release import key_id, public_key_text

    public = _private_key(key_file).public_key()
    typer.echo(public_key_text(public))
    typer.echo(f"key id: {key_id(public)}")


# -- create / verify / add / list -----------------------------------------------------
@release_app.command("create")
def create(  # noqa: PLR0917 - Typer passes CLI options as keyword arguments
    wheels: Annotated[Path, typer.Option("--wheels", metavar="DIR", help="Wheels to ship.")],
    version: Annotated[str, typer.Option("--version", help="The arete version released.")],
    key: Annotated[Path, typer.Option("--key", metavar="FILE", help="Release private key.")],
    out: Annotated[Path, typer.Option("--out", metavar="DIR", help="Writes OUT/<version>/.")],
    min_from: Annotated[
        str, typer.Option("--min-from", help="Oldest version that may update to it.")
    ] = "0",
    expires_in: Annotated[
        str, typer.Option("--expires-in", help="Validity: 30d, 12h, 90m, 3600s.")
    ] = "30d",
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--command-key-dir",
            metavar="DIR",
            envvar="ARETE_DATA_DIR",
            help="A maestro data dir whose command-signing key the release key must not be.",
        ),
    ] = None,
) -> None:
    """Sign a release: OUT/<version>/release.json plus copies of every wheel of DIR.

    DIR must hold the arete wheel of VERSION and every wheel that pip install
    --no-index 'arete[agent]==VERSION' needs on the agents (pip download them).

    Examples:

    \b
      arete release create --wheels dist --version 0.2.0 \\
          --key ~/.arete/release.key --min-from 0.1.0 --expires-in 30d \\
          --out releases/
      arete release add releases/0.2.0 --data-dir /var/lib/arete --public-key KEY
    """
    from arete.errors import PayloadError
    from arete.release import (
        ReleaseArtifact,
        ReleaseManifest,
        compare_versions,
        decode_release,
        encode_release,
        key_id,
        sign_release,
    )

    try:
        if compare_versions(min_from, version) > 0:
            _fail(f"--min-from {min_from} is newer than --version {version}")
        lifetime = parse_duration(expires_in)
    except (PayloadError, ValueError) as exc:
        _fail(str(exc))
    private = _private_key(key)
    _refuse_command_key(private, data_dir)
    files = sorted(p for p in wheels.glob("*.whl") if p.is_file()) if wheels.is_dir() else []
    if not files:
        _fail(f"no wheel (*.whl) in {wheels}")
    ours = [p for p in files if p.name.split("-", 1)[0].lower() == "arete"]
    if len(ours) != 1:
        _fail(f"{wheels} must hold exactly one arete wheel (found {len(ours)})")
    carried = wheel_version(ours[0])
    if carried is None or carried != version:
        _fail(f"{ours[0].name} is version {carried}, not {version}: build it with that version")
    artifacts = [
        ReleaseArtifact(name=p.name, sha256=_sha256(p), size=p.stat().st_size) for p in files
    ]
    now = time.time()
    manifest = ReleaseManifest(
        version=version,
        artifacts=artifacts,
        min_from_version=min_from,
        created_at=round(now, 3),
        expires_at=round(now + lifetime, 3),
        key_id=key_id(private.public_key()),
    )
    try:
        raw = encode_release(sign_release(manifest, private))
        decode_release(raw)  # what agents will check: wheel names, counts, sizes
    except Exception as exc:  # noqa: BLE001 - any schema problem is the user's input
        _fail(f"cannot make a release of {wheels}: {exc}")
    target = out / version
    if target.exists():
        _fail(f"{target} already exists")
    target.mkdir(parents=True)
    for path in files:
        shutil.copyfile(path, target / path.name)
    (target / "release.json").write_bytes(raw)
    total = sum(a.size for a in artifacts)
    typer.echo(f"release {version}: {len(artifacts)} wheels, {total} bytes -> {target}")


def _refuse_command_key(private: Ed25519PrivateKey, data_dir: Path | None) -> None:
    """Refuse the maestro's command-signing key as a release key (when we can find it)."""
    if data_dir is None:
        return
    from arete.release import public_key_text
    from maestro.errors import ConfigError
    from maestro.keys import read_public_key

    try:
        command_key = read_public_key(data_dir)
    except ConfigError:
        return
    if command_key == public_key_text(private.public_key()):
        _fail(
            "this is the maestro's command-signing key; releases need their own key"
            " (arete release key generate)"
        )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1024 * 1024):
            digest.update(block)
    return digest.hexdigest()


@release_app.command("verify")
def verify(
    directory: Annotated[Path, typer.Argument(metavar="DIR", help="release.json + wheels.")],
    public_key: PublicKeys,
) -> None:
    """Verify a release as the maestro and the agents do (signature, expiry, every
    wheel's size and sha256) and print its manifest. Exit 1 with the refusal code.

    Example:

    \b
      arete release verify releases/0.2.0 --public-key ~/.arete/release.pub
    """
    from arete.errors import ReleaseRefused
    from maestro.releases import ReleaseStore

    keys = _trusted_keys(public_key)
    try:
        release = ReleaseStore(directory.parent, keys).check(directory, named=False)
    except ReleaseRefused as exc:
        typer.echo(f"refused: {exc.code}: {exc}", err=True)
        raise typer.Exit(1) from None
    _print_manifest(release.manifest)


def _print_manifest(manifest: object) -> None:
    import msgspec

    typer.echo(msgspec.json.format(msgspec.json.encode(manifest), indent=2).decode())


@release_app.command("add")
def add(
    directory: Annotated[Path, typer.Argument(metavar="DIR", help="A release to add.")],
    data_dir: DataDir,
    public_key: StoreKeys = None,
    config: Config = None,
) -> None:
    """Copy a verified release into the maestro's release store (DATA_DIR/releases/),
    which the maestro publishes to the agents within '[releases] scan_interval_s'.

    Example:

    \b
      arete release add releases/0.2.0 --data-dir /var/lib/arete --public-key KEY
    """
    from arete.errors import ReleaseRefused
    from maestro.errors import ReleaseError
    from maestro.releases import STORE_DIR, add_release

    keys = _store_keys(public_key or [], config, data_dir)
    try:
        manifest = add_release(directory, data_dir / STORE_DIR, keys)
    except ReleaseRefused as exc:
        typer.echo(f"refused: {exc.code}: {exc}", err=True)
        raise typer.Exit(1) from None
    except ReleaseError as exc:
        _fail(str(exc), 1)
    typer.echo(f"release {manifest.version} added to {data_dir / STORE_DIR}")


@release_app.command("list")
def list_releases(data_dir: DataDir, public_key: StoreKeys = None, config: Config = None) -> None:
    """List the store's releases: verified ones with their expiry, refused ones with why.

    Example:

    \b
      arete release list --data-dir /var/lib/arete
    """
    from maestro.releases import STORE_DIR, ReleaseStore

    store = ReleaseStore(data_dir / STORE_DIR, _store_keys(public_key or [], config, data_dir))
    store.scan()
    for info in store.releases():
        expires = time.strftime("%Y-%m-%d %H:%M", time.gmtime(info.expires_at))
        size = f"{info.artifacts} wheels\t{info.bytes} bytes"
        typer.echo(f"{info.version}\t{size}\texpires {expires}")
    for refused in store.refused():
        typer.echo(f"{refused.name}\trefused: {refused.code}: {refused.message}")
