"""``arete release ...`` in-process (CliRunner): keys, create, verify, add, list."""

from __future__ import annotations

import json
import stat
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from arete_cli.main import app
from arete_cli.release import parse_duration, wheel_version
from maestro.keys import create_keys


def arete(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def wheels(folder: Path, version: str = "0.2.0", carried: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(folder / f"arete-{version}-py3-none-any.whl", "w") as archive:
        archive.writestr(
            f"arete-{version}.dist-info/METADATA",
            f"Metadata-Version: 2.1\nName: arete\nVersion: {carried or version}\n\nVersion: 9\n",
        )
    (folder / "msgspec-0.19.0-cp311-cp311-manylinux_2_17_x86_64.whl").write_bytes(b"m" * 5000)
    return folder


@pytest.fixture
def key(tmp_path: Path) -> Path:
    path = tmp_path / "release.key"
    assert arete("release", "key", "generate", "--out", str(path)).exit_code == 0
    return path


def public(key: Path) -> str:
    out = arete("release", "key", "public", str(key)).stdout.split()
    assert out[1:3] == ["key", "id:"]
    assert len(out[3]) == 16
    return out[0]


def test_key_generate_writes_0600_and_never_overwrites(tmp_path: Path, key: Path) -> None:
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    before = key.read_bytes()
    again = arete("release", "key", "generate", "--out", str(key))
    assert again.exit_code == 2
    assert "refusing to overwrite" in again.stderr
    assert key.read_bytes() == before
    printed = arete("release", "key", "generate", "--stdout")
    assert printed.stdout.startswith("-----BEGIN PRIVATE KEY-----")


def test_create_then_verify_prints_the_manifest(tmp_path: Path, key: Path) -> None:
    made = arete(
        "release", "create", "--wheels", str(wheels(tmp_path / "dist")), "--version", "0.2.0",
        "--key", str(key), "--min-from", "0.1", "--expires-in", "2h",
        "--out", str(tmp_path / "out"),
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    folder = tmp_path / "out" / "0.2.0"
    assert sorted(p.name for p in folder.iterdir()) == [
        "arete-0.2.0-py3-none-any.whl",
        "msgspec-0.19.0-cp311-cp311-manylinux_2_17_x86_64.whl",
        "release.json",
    ]
    checked = arete("release", "verify", str(folder), "--public-key", public(key))
    assert checked.exit_code == 0, checked.output
    manifest = json.loads(checked.stdout)
    assert (manifest["version"], manifest["min_from_version"]) == ("0.2.0", "0.1")
    assert 7199 < manifest["expires_at"] - manifest["created_at"] <= 7200.01

    (folder / "msgspec-0.19.0-cp311-cp311-manylinux_2_17_x86_64.whl").write_bytes(b"n" * 5000)
    tampered = arete("release", "verify", str(folder), "--public-key", public(key))
    assert tampered.exit_code == 1
    assert tampered.stderr.startswith("refused: tampered:")


def test_create_refuses_a_version_the_arete_wheel_does_not_carry(tmp_path: Path, key: Path) -> None:
    dist = wheels(tmp_path / "dist", "0.2.0", carried="0.1.9")
    made = arete(
        "release", "create", "--wheels", str(dist), "--version", "0.2.0",
        "--key", str(key), "--out", str(tmp_path / "out"),
    )  # fmt: skip
    assert made.exit_code == 2
    assert "is version 0.1.9, not 0.2.0" in made.stderr
    assert not (tmp_path / "out").exists()


def test_create_refuses_the_maestros_command_signing_key(tmp_path: Path) -> None:
    data = tmp_path / "data"
    paths = create_keys(data)
    made = arete(
        "release", "create", "--wheels", str(wheels(tmp_path / "dist")), "--version", "0.2.0",
        "--key", str(paths.private), "--command-key-dir", str(data), "--out", str(tmp_path / "o"),
    )  # fmt: skip
    assert made.exit_code == 2
    assert "command-signing key" in made.stderr


def test_add_puts_a_verified_release_in_the_store_and_list_shows_it(
    tmp_path: Path, key: Path
) -> None:
    data = tmp_path / "data"
    (data / "broker").mkdir(parents=True)
    (data / "broker" / "broker.json").write_text("{}")
    arete(
        "release", "create", "--wheels", str(wheels(tmp_path / "dist")), "--version", "0.2.0",
        "--key", str(key), "--out", str(tmp_path / "out"),
    )  # fmt: skip
    source = str(tmp_path / "out" / "0.2.0")
    added = arete("release", "add", source, "--data-dir", str(data), "--public-key", public(key))
    assert added.exit_code == 0, added.output
    assert (data / "releases" / "0.2.0" / "release.json").is_file()
    listed = arete("release", "list", "--data-dir", str(data), "--public-key", public(key))
    assert listed.stdout.startswith("0.2.0\t2 wheels\t")
    other = tmp_path / "other.key"
    arete("release", "key", "generate", "--out", str(other))
    foreign = arete("release", "list", "--data-dir", str(data), "--public-key", public(other))
    assert "0.2.0\trefused: unknown_key" in foreign.stdout


def test_durations_and_wheel_metadata() -> None:
    assert parse_duration("30d") == 30 * 86400
    assert parse_duration("90m") == 5400
    assert parse_duration("3600") == 3600
    for bad in ("", "0d", "-1h", "1y", "d"):
        with pytest.raises(ValueError, match="invalid duration"):
            parse_duration(bad)
    assert wheel_version(Path("/nonexistent.whl")) is None


def test_wheel_version_reads_only_the_metadata_headers(tmp_path: Path) -> None:
    folder = wheels(tmp_path)
    assert wheel_version(folder / "arete-0.2.0-py3-none-any.whl") == "0.2.0"
    bad = folder / "msgspec-0.19.0-cp311-cp311-manylinux_2_17_x86_64.whl"
    assert wheel_version(bad) is None  # not a zip
