"""The maestro's release store (maestro.releases): what it verifies, refuses and lists,
and how ``add_release`` puts a release in place. Files in tmp_path; no broker."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from arete.errors import ReleaseRefused
from arete.release import (
    ReleaseArtifact,
    ReleaseManifest,
    encode_release,
    key_id,
    keyring,
    public_key_text,
    sign_release,
)
from maestro.errors import ConfigError, ReleaseError
from maestro.releases import ReleaseSettings, ReleaseStore, add_release

NOW = 1_800_000_000.0
KEY = Ed25519PrivateKey.generate()
KEYS = keyring([KEY.public_key()])


def write_release(
    folder: Path,
    version: str,
    *,
    key: Ed25519PrivateKey = KEY,
    expires_at: float = NOW + 3600,
    wheel: bytes = b"wheel bytes",
) -> Path:
    folder.mkdir(parents=True)
    name = f"arete-{version}-py3-none-any.whl"
    (folder / name).write_bytes(wheel)
    manifest = ReleaseManifest(
        version=version,
        artifacts=[
            ReleaseArtifact(name=name, sha256=hashlib.sha256(wheel).hexdigest(), size=len(wheel))
        ],
        min_from_version="0.1",
        created_at=NOW - 10,
        expires_at=expires_at,
        key_id=key_id(key.public_key()),
    )
    (folder / "release.json").write_bytes(encode_release(sign_release(manifest, key)))
    return folder


def store(tmp_path: Path, now: float = NOW) -> ReleaseStore:
    return ReleaseStore(tmp_path / "releases", KEYS, clock=lambda: now)


def test_verified_releases_are_listed_newest_first_and_unpublished(tmp_path: Path) -> None:
    for version in ("0.9", "0.10", "0.2.1"):
        write_release(tmp_path / "releases" / version, version)
    s = store(tmp_path)
    assert sorted(s.scan()) == ["0.10", "0.2.1", "0.9"]
    infos = s.releases()
    assert [i.version for i in infos] == ["0.10", "0.9", "0.2.1"]
    assert not any(i.published for i in infos)
    assert (infos[0].artifacts, infos[0].bytes, infos[0].min_from_version) == (1, 11, "0.1")
    s.mark_published("0.10")
    assert [i.published for i in s.releases()] == [True, False, False]
    assert s.refused() == []


def test_bad_releases_are_refused_with_their_code_and_counted_once(tmp_path: Path) -> None:
    root = tmp_path / "releases"
    write_release(root / "0.2", "0.2")
    (root / "0.2" / "arete-0.2-py3-none-any.whl").write_bytes(b"wheel byteZ")  # same size
    write_release(root / "0.3", "0.3", key=Ed25519PrivateKey.generate())
    write_release(root / "0.4", "0.4", expires_at=NOW - 1)
    write_release(root / "0.5", "0.6")  # the directory says another version
    (root / "0.7").mkdir()  # no release.json
    write_release(root / "latest", "0.8")
    (root / ".add-0.9-x").mkdir()  # an add in progress: not looked at
    (root / "README").write_text("a stray file")
    s = store(tmp_path)
    assert s.scan() == {}
    assert {r.name: r.code for r in s.refused()} == {
        "0.2": "tampered",
        "0.3": "unknown_key",
        "0.4": "expired",
        "0.5": "bad_manifest",
        "0.7": "bad_manifest",
        "latest": "bad_manifest",
    }
    s.scan()
    assert dict(s.refused_total) == {
        "tampered": 1,
        "unknown_key": 1,
        "expired": 1,
        "bad_manifest": 3,
    }


def test_a_wheel_changed_after_a_scan_is_hashed_again_and_refused(tmp_path: Path) -> None:
    folder = write_release(tmp_path / "releases" / "0.2", "0.2")
    s = store(tmp_path)
    assert list(s.scan()) == ["0.2"]
    s.mark_published("0.2")
    wheel = folder / "arete-0.2-py3-none-any.whl"
    wheel.write_bytes(b"wheel byteZ")
    os.utime(wheel, ns=(1, 1))  # even with an old mtime: the inode/size/mtime key changed
    assert s.scan() == {}
    assert [r.code for r in s.refused()] == ["tampered"]
    assert s.releases() == []


def test_a_release_expires_while_it_sits_in_the_store(tmp_path: Path) -> None:
    write_release(tmp_path / "releases" / "0.2", "0.2")
    assert list(store(tmp_path).scan()) == ["0.2"]
    assert store(tmp_path, now=NOW + 3601).scan() == {}


def test_add_release_copies_a_verified_release_into_place(tmp_path: Path) -> None:
    source = write_release(tmp_path / "built" / "anything", "0.2")
    target = tmp_path / "data" / "releases"
    manifest = add_release(source, target, KEYS, now=NOW)
    assert manifest.version == "0.2"
    assert sorted(p.name for p in (target / "0.2").iterdir()) == [
        "arete-0.2-py3-none-any.whl",
        "release.json",
    ]
    assert [p.name for p in target.iterdir()] == ["0.2"]  # no staging dir left
    assert list(ReleaseStore(target, KEYS, clock=lambda: NOW).scan()) == ["0.2"]
    with pytest.raises(ReleaseError, match="already holds"):
        add_release(source, target, KEYS, now=NOW)


def test_add_release_refuses_what_the_maestro_would_not_publish(tmp_path: Path) -> None:
    source = write_release(tmp_path / "built" / "0.2", "0.2", key=Ed25519PrivateKey.generate())
    with pytest.raises(ReleaseRefused) as info:
        add_release(source, tmp_path / "releases", KEYS, now=NOW)
    assert info.value.code == "unknown_key"
    assert not (tmp_path / "releases" / "0.2").exists()


def test_release_settings_read_keys_from_the_list_and_the_file(tmp_path: Path) -> None:
    other = Ed25519PrivateKey.generate()
    key_file = tmp_path / "release.pub"
    key_file.write_text(public_key_text(other.public_key()) + "\n")
    settings = ReleaseSettings(
        public_keys=[public_key_text(KEY.public_key())], public_key_file=key_file
    )
    assert set(settings.keys()) == {key_id(KEY.public_key()), key_id(other.public_key())}
    assert ReleaseSettings().keys() == {}
    with pytest.raises(ConfigError, match=r"public_keys\[0\]"):
        ReleaseSettings(public_keys=["not a key"]).keys()
    with pytest.raises(ConfigError, match="public_key_file"):
        ReleaseSettings(public_key_file=tmp_path / "missing").keys()
