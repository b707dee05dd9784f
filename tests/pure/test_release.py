"""Signed releases (arete.release): sign/verify, every refusal code, chunks, versions."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given
from hypothesis import strategies as st

from arete.errors import AreteError, KeyFormatError, PayloadError, ReleaseRefused, TopicError
from arete.release import (
    MAX_RELEASE_BYTES,
    RELEASE_CHUNK_BYTES,
    RELEASE_CONTEXT,
    ReleaseArtifact,
    ReleaseAssembly,
    ReleaseManifest,
    SignedRelease,
    check_artifact,
    chunk_count,
    chunk_span,
    compare_versions,
    decode_release,
    encode_release,
    key_file_entries,
    key_id,
    keyring,
    load_keyring,
    load_public_key,
    public_key_text,
    release_signing_bytes,
    sign_release,
    verify_release,
)
from arete.topics import Kind, ReleaseTopic, Topics

NOW = 1_800_000_000.0
KEY = Ed25519PrivateKey.generate()
KEYS = keyring([KEY.public_key()])
WHEEL = b"PK\x03\x04 a wheel, or close enough" * 100


def artifact(data: bytes = WHEEL, name: str = "arete-0.2.0-py3-none-any.whl") -> ReleaseArtifact:
    return ReleaseArtifact(name=name, sha256=hashlib.sha256(data).hexdigest(), size=len(data))


def manifest(**changes: Any) -> ReleaseManifest:
    fields: dict[str, Any] = {
        "version": "0.2.0",
        "artifacts": [artifact()],
        "min_from_version": "0.1.0",
        "created_at": NOW - 60,
        "expires_at": NOW + 86400,
        "key_id": key_id(KEY.public_key()),
    }
    fields.update(changes)
    return ReleaseManifest(**fields)


def signed_raw(m: ReleaseManifest | None = None, key: Ed25519PrivateKey = KEY) -> bytes:
    return encode_release(sign_release(m or manifest(), key))


def refusal(raw: bytes, running: str = "0.1.0", now: float = NOW) -> str:
    with pytest.raises(ReleaseRefused) as info:
        verify_release(raw, KEYS, now=now, running_version=running)
    assert isinstance(info.value, AreteError)
    return info.value.code


def test_signed_release_verifies_and_round_trips() -> None:
    raw = signed_raw()
    got = verify_release(raw, KEYS, now=NOW, running_version="0.1.0")
    assert got == manifest()
    assert got.package == "arete[agent]"
    assert decode_release(raw) == sign_release(manifest(), KEY)
    assert encode_release(decode_release(raw)) == raw


def test_signature_covers_context_and_sorted_canonical_json_with_float_times() -> None:
    m = manifest(created_at=int(NOW), expires_at=int(NOW) + 10)
    data = release_signing_bytes(m)
    assert data.startswith(RELEASE_CONTEXT)
    document = data[len(RELEASE_CONTEXT) :]
    assert b" " not in document
    parsed = json.loads(document)
    assert list(parsed) == sorted(parsed)
    assert b'"created_at":1800000000.0' in document
    # The agent decodes floats: an int-built manifest verifies after the round trip.
    assert verify_release(signed_raw(m), KEYS, now=NOW, running_version="0.1.0") == m


def test_same_version_is_not_refused() -> None:
    assert verify_release(signed_raw(), KEYS, now=NOW, running_version="0.2").version == "0.2.0"


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"not json",
        b"[]",
        b'{"manifest": {}, "sig": ""}',
        b"{" + b" " * MAX_RELEASE_BYTES + b"}",
    ],
)
def test_undecodable_release_is_bad_manifest(raw: bytes) -> None:
    assert refusal(raw) == "bad_manifest"


def _document(raw: bytes) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(raw)
    return doc


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("schema", 2),
        ("version", "1.0-beta"),
        ("package", "arete; rm -rf /"),
        ("artifacts", []),
        ("min_from_version", ""),
        ("created_at", "yesterday"),
        ("expires_at", -1),
        ("key_id", "ABC"),
        ("extra", 1),
    ],
)
def test_manifest_outside_its_schema_is_bad_manifest(field: str, value: object) -> None:
    doc = _document(signed_raw())
    doc["manifest"][field] = value
    assert refusal(json.dumps(doc).encode()) == "bad_manifest"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", "../../etc/passwd.whl"),
        ("name", ".hidden-1-py3-none-any.whl"),
        ("name", "arete-0.2.0.tar.gz"),
        ("sha256", "A" * 64),
        ("sha256", "0" * 63),
        ("size", -1),
        ("size", 512 * 1024 * 1024 + 1),
    ],
)
def test_artifact_outside_its_schema_is_bad_manifest(field: str, value: object) -> None:
    doc = _document(signed_raw())
    doc["manifest"]["artifacts"][0][field] = value
    assert refusal(json.dumps(doc).encode()) == "bad_manifest"


def test_inconsistent_manifests_are_bad_manifest() -> None:
    twice = manifest(artifacts=[artifact(), artifact()])
    assert refusal(signed_raw(twice)) == "bad_manifest"
    assert refusal(signed_raw(manifest(expires_at=NOW - 60))) == "bad_manifest"
    assert refusal(signed_raw(manifest(min_from_version="0.3"))) == "bad_manifest"


def test_empty_signature_is_unsigned() -> None:
    raw = encode_release(SignedRelease(manifest=manifest(), sig=""))
    assert refusal(raw) == "unsigned"
    doc = _document(raw)
    del doc["sig"]
    assert refusal(json.dumps(doc).encode()) == "unsigned"


def test_release_signed_by_another_key_is_unknown_key() -> None:
    other = Ed25519PrivateKey.generate()
    assert refusal(signed_raw(manifest(key_id=key_id(other.public_key())), other)) == (
        "unknown_key"
    )


def test_forged_signature_is_bad_signature() -> None:
    other = Ed25519PrivateKey.generate()
    forged = base64.b64encode(other.sign(release_signing_bytes(manifest()))).decode()
    assert refusal(encode_release(SignedRelease(manifest=manifest(), sig=forged))) == (
        "bad_signature"
    )
    garbage = SignedRelease(manifest=manifest(), sig="not base64!")
    assert refusal(encode_release(garbage)) == "bad_signature"


TAMPERED_FIELDS: list[tuple[str, object]] = [
    ("version", "0.2.1"),
    ("package", "arete[agent,docker]"),
    ("min_from_version", "0.0.1"),
    ("created_at", NOW - 61),
    ("expires_at", NOW + 86401),
    ("artifacts", [{"name": "arete-0.2.0-py3-none-any.whl", "sha256": "0" * 64, "size": 3200}]),
]


@pytest.mark.parametrize(("field", "value"), TAMPERED_FIELDS)
def test_tampering_with_any_signed_field_breaks_the_signature(field: str, value: object) -> None:
    doc = _document(signed_raw())
    assert doc["manifest"][field] != value
    doc["manifest"][field] = value
    assert refusal(json.dumps(doc).encode()) == "bad_signature"


def test_tampering_with_the_key_id_is_unknown_key() -> None:
    doc = _document(signed_raw())
    doc["manifest"]["key_id"] = "0" * 16
    assert refusal(json.dumps(doc).encode()) == "unknown_key"


def test_every_manifest_field_is_signed() -> None:
    covered = {field for field, _ in TAMPERED_FIELDS} | {"key_id", "schema"}
    assert covered == set(ReleaseManifest.__struct_fields__)


def test_expired_release_is_refused() -> None:
    assert refusal(signed_raw(), now=NOW + 86400 + 1) == "expired"


def test_older_release_is_downgrade() -> None:
    assert refusal(signed_raw(), running="0.10") == "downgrade"


def test_running_version_below_min_from_is_too_old() -> None:
    assert refusal(signed_raw(manifest(min_from_version="0.1.5")), running="0.1.4") == "too_old"


def test_refusal_codes_are_checked_in_order() -> None:
    """Each release is wrong in several ways; the first in the documented order wins."""
    other = Ed25519PrivateKey.generate()
    old_and_expired = manifest(version="0.0.5", min_from_version="0.0.1")
    assert refusal(encode_release(SignedRelease(manifest=old_and_expired))) == "unsigned"
    foreign = signed_raw(
        manifest(key_id=key_id(other.public_key()), version="0.0.5", min_from_version="0"), other
    )
    assert refusal(foreign, now=NOW * 2) == "unknown_key"
    doc = _document(signed_raw(old_and_expired))
    doc["manifest"]["version"] = "0.0.6"
    assert refusal(json.dumps(doc).encode(), now=NOW * 2) == "bad_signature"
    assert refusal(signed_raw(old_and_expired), now=NOW * 2) == "expired"
    too_old_too = manifest(version="0.0.5", min_from_version="0.0.5")
    assert refusal(signed_raw(too_old_too), running="0.0.4.9") == "too_old"
    assert refusal(signed_raw(too_old_too), running="0.1") == "downgrade"


def test_sign_release_refuses_a_manifest_naming_another_key() -> None:
    with pytest.raises(ValueError, match="key_id"):
        sign_release(manifest(key_id="0" * 16), KEY)


def test_check_artifact_refuses_wrong_size_and_wrong_hash() -> None:
    check_artifact(artifact(), WHEEL)
    with pytest.raises(ReleaseRefused) as info:
        check_artifact(artifact(), WHEEL + b"x")
    assert info.value.code == "tampered"
    flipped = bytes([WHEEL[0] ^ 1]) + WHEEL[1:]
    with pytest.raises(ReleaseRefused) as info:
        check_artifact(artifact(), flipped)
    assert info.value.code == "tampered"


def test_public_keys_load_from_base64_and_pem() -> None:
    public = KEY.public_key()
    text = public_key_text(public)
    pem = public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
    assert key_id(load_public_key(text)) == key_id(public)
    assert key_id(load_public_key(f"  {pem}\n")) == key_id(public)
    assert key_id(public) == hashlib.sha256(base64.b64decode(text)).hexdigest()[:16]
    for bad in ["", "AAAA", "-----BEGIN PUBLIC KEY-----\nxx\n-----END PUBLIC KEY-----"]:
        with pytest.raises(KeyFormatError):
            load_public_key(bad)


# -- versions -------------------------------------------------------------------------

versions = st.lists(st.integers(0, 999_999), min_size=1, max_size=4)


def as_text(parts: list[int]) -> str:
    return ".".join(str(p) for p in parts)


def test_compare_versions_examples() -> None:
    assert compare_versions("0.10", "0.9") == 1
    assert compare_versions("0.9", "0.10") == -1
    assert compare_versions("1.0", "1.0.0") == 0
    assert compare_versions("1.0.0.1", "1") == 1
    assert compare_versions("2", "10") == -1
    for bad in ["", "1.", "v1", "1.2.3.4.5", "1.0-rc1", "1\n"]:
        with pytest.raises(PayloadError):
            compare_versions(bad, "1")


@given(versions, versions)
def test_compare_versions_is_numeric_ordering_ignoring_trailing_zeros(
    a: list[int], b: list[int]
) -> None:
    def key(parts: list[int]) -> list[int]:
        return parts + [0] * (4 - len(parts))

    expected = (key(a) > key(b)) - (key(a) < key(b))
    assert compare_versions(as_text(a), as_text(b)) == expected
    assert compare_versions(as_text(b), as_text(a)) == -expected
    assert compare_versions(as_text(a), as_text(a + [0] * (4 - len(a)))) == 0


# -- chunks and assembly --------------------------------------------------------------


def test_chunk_count_and_spans() -> None:
    assert chunk_count(0) == 0
    assert chunk_count(1) == 1
    assert chunk_count(RELEASE_CHUNK_BYTES) == 1
    assert chunk_count(RELEASE_CHUNK_BYTES + 1) == 2
    assert chunk_span(RELEASE_CHUNK_BYTES + 1, 1) == (RELEASE_CHUNK_BYTES, RELEASE_CHUNK_BYTES + 1)
    with pytest.raises(IndexError):
        chunk_span(10, 1)


def chunks_of(data: bytes) -> list[bytes]:
    return [data[i : i + RELEASE_CHUNK_BYTES] for i in range(0, len(data), RELEASE_CHUNK_BYTES)]


def test_assembly_refuses_chunks_that_do_not_belong() -> None:
    data = bytes(range(256)) * 1500  # 384000 bytes: one full chunk and a shorter one
    assembly = ReleaseAssembly(manifest(artifacts=[artifact(data)]))
    first, last = chunks_of(data)
    assert not assembly.feed(1, 0, first)  # no artifact 1
    assert not assembly.feed(0, 2, last)  # no chunk 2
    assert not assembly.feed(0, -1, last)
    assert not assembly.feed(0, 0, last)  # a full chunk is 256 KiB
    assert not assembly.feed(0, 1, last + b"x")
    assert assembly.missing() == [(0, 0), (0, 1)]
    with pytest.raises(ReleaseRefused) as info:
        assembly.artifact_bytes(0)
    assert info.value.code == "fetch_failed"
    assert assembly.feed(0, 1, last)
    assert assembly.feed(0, 0, first)
    assert assembly.complete()
    assert assembly.artifact_bytes(0) == data


def test_assembly_detects_tampered_chunks() -> None:
    data = b"w" * (RELEASE_CHUNK_BYTES + 10)
    assembly = ReleaseAssembly(manifest(artifacts=[artifact(data)]))
    first, last = chunks_of(data)
    assert assembly.feed(0, 0, first)
    assert assembly.feed(0, 1, b"x" * len(last))
    with pytest.raises(ReleaseRefused) as info:
        assembly.artifact_bytes(0)
    assert info.value.code == "tampered"


def test_empty_artifact_needs_no_chunk() -> None:
    assembly = ReleaseAssembly(manifest(artifacts=[artifact(b"")]))
    assert assembly.complete()
    assert assembly.missing() == []
    assert assembly.artifact_bytes(0) == b""


sizes = st.lists(st.integers(0, 3 * RELEASE_CHUNK_BYTES + 7), min_size=1, max_size=3)


@given(sizes, st.randoms(use_true_random=False), st.integers(0, 3))
def test_assembly_rebuilds_every_artifact_from_shuffled_duplicated_chunks(
    artifact_sizes: list[int], rng: Any, repeats: int
) -> None:
    blobs = [
        bytes([i + 1]) * size + hashlib.sha256(str(i).encode()).digest()
        for i, size in enumerate(artifact_sizes)
    ]
    artifacts = [artifact(blob, f"pkg{i}-1.0-py3-none-any.whl") for i, blob in enumerate(blobs)]
    assembly = ReleaseAssembly(manifest(artifacts=artifacts))
    messages = [
        (a, n, chunk) for a, blob in enumerate(blobs) for n, chunk in enumerate(chunks_of(blob))
    ]
    messages += rng.sample(messages, min(repeats, len(messages)))
    rng.shuffle(messages)
    total = sum(chunk_count(len(blob)) for blob in blobs)
    assert len(assembly.missing()) == total
    for a, n, chunk in messages:
        assert assembly.feed(a, n, chunk)
    assert assembly.complete()
    assert assembly.missing() == []
    assert [assembly.artifact_bytes(i) for i in range(len(blobs))] == blobs
    assert assembly.received_bytes == sum(len(blob) for blob in blobs)


def test_models_reject_unknown_fields_when_built_from_json() -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(
            b'{"name":"a-1-py3-none-any.whl","sha256":"","size":0}', type=ReleaseArtifact
        )


# -- topics ---------------------------------------------------------------------------


def test_release_topics_are_built_and_parsed_under_the_root() -> None:
    topics = Topics("acme/eu")
    assert topics.release_manifest("0.2.0") == "acme/eu/release/0.2.0/manifest"
    assert topics.release_chunk("0.2.0", 3, 17) == "acme/eu/release/0.2.0/chunk/3/17"
    assert topics.release_filter("0.2.0") == "acme/eu/release/0.2.0/#"
    assert topics.all_releases() == "acme/eu/release/#"
    assert topics.all_release_manifests() == "acme/eu/release/+/manifest"
    assert topics.parse_release("acme/eu/release/0.2.0/manifest") == ReleaseTopic("0.2.0")
    assert topics.parse_release("acme/eu/release/1/chunk/3/17") == ReleaseTopic("1", 3, 17)


@given(st.lists(st.integers(0, 999_999), min_size=1, max_size=4), st.integers(0, 999_999))
def test_release_chunk_topics_round_trip(parts: list[int], index: int) -> None:
    topics = Topics()
    version = as_text(parts)
    topic = topics.release_chunk(version, index, index // 2)
    assert topics.parse_release(topic) == ReleaseTopic(version, index, index // 2)


@pytest.mark.parametrize(
    "topic",
    [
        "arete/release/0.2.0",
        "arete/release/0.2.0/manifest/x",
        "arete/release/v1/manifest",
        "arete/release/0.2.0/chunk/1",
        "arete/release/0.2.0/chunk/01/0",
        "arete/release/0.2.0/chunk/-1/0",
        "arete/release/0.2.0/chunk/a/0",
        "arete/release/+/manifest",
        "other/release/0.2.0/manifest",
        "arete/status/0.2.0",
    ],
)
def test_parse_release_refuses_topics_outside_the_contract(topic: str) -> None:
    with pytest.raises(TopicError):
        Topics().parse_release(topic)


def test_release_topic_builders_refuse_bad_versions_and_indexes() -> None:
    topics = Topics()
    for version in ["", "+", "#", "1/2", "1.0-rc1", "../x"]:
        with pytest.raises(TopicError):
            topics.release_manifest(version)
    for index in [-1, 10**6, True]:
        with pytest.raises(TopicError):
            topics.release_chunk("1.0", index, 0)
    with pytest.raises(TopicError):
        topics.all_of(Kind.RELEASE)  # not per agent: <root>/release/+ would be wrong
    with pytest.raises(TopicError, match="parse_release"):
        topics.parse("arete/release/0.2.0/manifest")


# -- docs -----------------------------------------------------------------------------


def test_updates_doc_lists_exactly_the_manifest_fields() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "updates.md").read_text("utf-8")
    marker = "<!-- release fields: arete.release.ReleaseManifest -->\n"
    rows = text[text.index(marker) + len(marker) :].split("\n\n")[0].splitlines()[2:]
    documented = {row.split("`")[1] for row in rows}
    assert documented == set(ReleaseManifest.__struct_fields__)


def test_updates_doc_lists_every_refusal_code_of_verification_in_order() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "updates.md").read_text("utf-8")
    codes = re.findall(r"^\| `([a-z_]+)` \| (?:is|has|cannot)", text, flags=re.MULTILINE)
    assert codes == [
        "bad_manifest",
        "unsigned",
        "unknown_key",
        "bad_signature",
        "expired",
        "downgrade",
        "too_old",
        "tampered",
    ]


def test_key_files_hold_one_pem_key_or_base64_keys_a_line() -> None:
    first, second = (Ed25519PrivateKey.generate().public_key() for _ in range(2))
    lines = f"# release keys\n{public_key_text(first)}\n\n{public_key_text(second)}  # new\n"
    entries = key_file_entries("keys.txt", lines)
    assert [where for where, _ in entries] == ["keys.txt line 2", "keys.txt line 4"]
    assert set(load_keyring(entries)) == {key_id(first), key_id(second)}
    pem = first.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
    assert set(load_keyring(key_file_entries("k.pem", pem))) == {key_id(first)}
    with pytest.raises(KeyFormatError, match=r"^keys\.txt line 1: "):
        load_keyring(key_file_entries("keys.txt", "garbage"))
