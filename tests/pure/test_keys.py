"""The maestro's signing key pair: files, permissions, load errors, and what agents accept."""

from __future__ import annotations

import base64
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    NoEncryption,
    PrivateFormat,
)
from typer.testing import CliRunner

from arete.payloads import Command, encode
from arete.signing import sign_command
from edge_agent.gate import Admitted, Refused, admit
from edge_agent.settings import CommandSettings as AgentCommandSettings
from edge_agent.verify import load_verifier
from maestro.errors import ConfigError
from maestro.keys import create_keys, key_paths, load_signing_key, read_public_key
from maestro.keys_cli import keys_app


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The loosest umask: files must still come out private."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def test_create_writes_a_private_key_only_its_owner_can_read(
    tmp_path: Path, open_umask: None
) -> None:
    paths = create_keys(tmp_path)
    assert paths.private == tmp_path / "secrets" / "maestro-signing.key"
    assert paths.public == tmp_path / "maestro-signing.pub"
    assert mode(paths.private) == 0o600
    assert mode(paths.private.parent) == 0o700
    assert mode(paths.public) == 0o644
    assert sorted(p.name for p in paths.private.parent.iterdir()) == ["maestro-signing.key"]
    assert paths.private.read_text().startswith("-----BEGIN PRIVATE KEY-----")


def test_create_tightens_an_existing_secrets_dir(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir(mode=0o755)
    (tmp_path / "secrets").chmod(0o755)
    create_keys(tmp_path)
    assert mode(tmp_path / "secrets") == 0o700


def test_the_public_key_file_is_what_the_agent_setting_takes(tmp_path: Path) -> None:
    paths = create_keys(tmp_path)
    text = paths.public.read_text().strip()
    assert len(base64.b64decode(text, validate=True)) == 32
    key = load_signing_key(paths.private)
    public_raw = key.public_key().public_bytes_raw()
    assert base64.b64decode(text) == public_raw
    assert read_public_key(tmp_path) == text


def test_create_refuses_to_replace_a_key_without_force(tmp_path: Path) -> None:
    paths = create_keys(tmp_path)
    before = paths.private.read_bytes()
    with pytest.raises(ConfigError, match="--force"):
        create_keys(tmp_path)
    assert paths.private.read_bytes() == before
    create_keys(tmp_path, force=True)
    assert paths.private.read_bytes() != before
    assert mode(paths.private) == 0o600
    assert read_public_key(tmp_path) == paths.public.read_text().strip()


def test_a_command_signed_with_the_created_key_passes_the_agents_check(tmp_path: Path) -> None:
    paths = create_keys(tmp_path)
    key = load_signing_key(paths.private)
    now = time.time()
    command = Command(id="c-1", name="metrics", issued_at=now, expires_at=now + 30)
    signed = encode(sign_command("a1", command, key))
    for settings in [
        AgentCommandSettings(public_key=read_public_key(tmp_path)),
        AgentCommandSettings(public_key_file=str(paths.public)),
    ]:
        verify = load_verifier(settings)
        decision = admit(
            signed, agent_id="a1", now=now, max_ttl_s=3600, seen=lambda _: False, verify=verify
        )
        assert isinstance(decision, Admitted)
        # Signed for a1: worthless on a2.
        other = admit(
            signed, agent_id="a2", now=now, max_ttl_s=3600, seen=lambda _: False, verify=verify
        )
        assert isinstance(other, Refused)
        assert other.error.code == "bad_signature"


# -- load errors ---------------------------------------------------------------------------
def test_loading_a_missing_key_says_how_to_create_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="arete keys create"):
        load_signing_key(tmp_path / "nope.key")


def test_loading_a_key_others_can_read_is_refused(tmp_path: Path) -> None:
    paths = create_keys(tmp_path)
    paths.private.chmod(0o640)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_signing_key(paths.private)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"not a key at all\n", "not a PEM private key"),
        (
            generate_private_key(SECP256R1()).private_bytes(
                Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
            ),
            "not an Ed25519 key",
        ),
        (
            Ed25519PrivateKey.generate().private_bytes(
                Encoding.PEM, PrivateFormat.PKCS8, BestAvailableEncryption(b"secret")
            ),
            "encrypted",
        ),
        (b"x" * 20_000, "too large"),
    ],
    ids=["garbage", "ec-key", "encrypted", "huge"],
)
def test_loading_a_file_that_is_not_an_ed25519_key_says_so(
    tmp_path: Path, content: bytes, reason: str
) -> None:
    path = tmp_path / "bad.key"
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(ConfigError, match=reason):
        load_signing_key(path)


def test_loading_a_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "dir.key").mkdir(mode=0o700)
    with pytest.raises(ConfigError, match="not a regular file"):
        load_signing_key(tmp_path / "dir.key")


def test_a_broken_public_key_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / "maestro-signing.pub").write_text("garbage\n")
    with pytest.raises(ConfigError, match="does not hold"):
        read_public_key(tmp_path)


def test_show_without_any_key_says_how_to_create_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="arete keys create"):
        read_public_key(tmp_path)


# -- CLI -----------------------------------------------------------------------------------
runner = CliRunner()


def test_cli_create_prints_the_public_key_and_how_to_give_it_to_agents(tmp_path: Path) -> None:
    done = runner.invoke(keys_app, ["create", "--data-dir", str(tmp_path)])
    assert done.exit_code == 0, done.output
    public = read_public_key(tmp_path)
    assert public in done.output
    assert f'public_key = "{public}"' in done.output
    assert f"ARETE_AGENT_COMMANDS__PUBLIC_KEY={public}" in done.output
    assert "arete agents add" in done.output
    assert "PRIVATE KEY" not in done.output


def test_cli_create_twice_fails_clearly_and_keeps_the_key(tmp_path: Path) -> None:
    runner.invoke(keys_app, ["create", "--data-dir", str(tmp_path)])
    before = key_paths(tmp_path).private.read_bytes()
    done = runner.invoke(keys_app, ["create", "--data-dir", str(tmp_path)])
    assert done.exit_code == 2
    assert "already exists" in done.output
    assert key_paths(tmp_path).private.read_bytes() == before


def test_cli_show_raw_prints_only_the_key(tmp_path: Path) -> None:
    create_keys(tmp_path)
    done = runner.invoke(keys_app, ["show", "--data-dir", str(tmp_path), "--raw"])
    assert done.exit_code == 0
    assert done.output == read_public_key(tmp_path) + "\n"


def test_cli_show_without_a_key_exits_2(tmp_path: Path) -> None:
    (tmp_path / "broker").mkdir()
    (tmp_path / "broker" / "broker.json").write_text("{}")  # a data dir the broker made
    done = runner.invoke(keys_app, ["show", "--data-dir", str(tmp_path)])
    assert done.exit_code == 2
    assert "arete keys create" in done.output


def test_cli_help_has_examples() -> None:
    for command in ["create", "show"]:
        done = runner.invoke(keys_app, [command, "--help"])
        assert done.exit_code == 0
        assert "Examples" in done.output
        assert "--data-dir" in done.output


def test_the_data_dir_marker_names_the_public_key_file() -> None:
    from arete.datadir import KEY_MARKER
    from maestro.keys import PUBLIC_KEY_NAME

    assert str(KEY_MARKER) == PUBLIC_KEY_NAME
