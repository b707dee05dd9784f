"""The client-id rule (``arete.clientids``) and the plugin build that enforces it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from arete import clientids
from mosquitto.errors import PluginBuildError
from mosquitto.layout import Layout
from mosquitto.plugin import ensure_plugin, plugin_source

# (username, client id, may it connect). The same table runs against the real broker
# in tests/real/test_broker_security.py, so the C plugin and this module agree.
CASES = [
    ("a1", "a1", True),
    ("a1", "a1:", True),
    ("a1", "a1:agent:2", True),
    ("viewer", "viewer:dashboard-7", True),
    ("maestro", "maestro:main", True),
    ("viewer", "a1", False),
    ("viewer", "maestro:main", False),
    ("a2", "a1", False),
    ("a1", "a10", False),
    ("a10", "a1", False),
    ("a1", "a1-old", False),
    ("viewer", "viewerX", False),
    ("viewer", "auto-3F2504E0-4F89-11D3-9A0C-0305E82C3301", False),
    ("a1", "arete-agent-a1", False),
    ("maestro", "maestro-main", False),
]


@pytest.mark.parametrize(("username", "client_id", "allowed"), CASES)
def test_an_account_owns_only_its_name_and_ids_after_its_name_and_a_colon(
    username: str, client_id: str, allowed: bool
) -> None:
    assert clientids.owns(username, client_id) is allowed


def test_client_ids_are_built_from_the_username_and_parts() -> None:
    assert clientids.client_id("a1") == "a1"
    assert clientids.client_id("maestro", "main") == "maestro:main"
    assert clientids.client_id("maestro", "main", "retire-check") == "maestro:main:retire-check"
    for built in ("a1", "maestro:main"):
        assert clientids.owns(built.split(":")[0], built)


@pytest.mark.parametrize(
    ("username", "parts"), [("", ()), ("a:b", ()), ("a1", ("",)), ("a1", ("x" * 300,))]
)
def test_a_client_id_that_could_not_be_owned_is_never_built(
    username: str, parts: tuple[str, ...]
) -> None:
    with pytest.raises(ValueError, match="client id"):
        clientids.client_id(username, *parts)


def test_the_plugin_is_built_once_and_rebuilt_when_its_source_changes(tmp_path: Path) -> None:
    layout = Layout.at(tmp_path)
    layout.create()
    built = ensure_plugin(layout)
    assert built == layout.clientid_plugin
    assert built.read_bytes()[:4] == b"\x7fELF"
    first = built.stat().st_mtime_ns
    assert ensure_plugin(layout).stat().st_mtime_ns == first, "rebuilt without a change"
    digest = hashlib.sha256(plugin_source()).hexdigest()
    assert layout.clientid_plugin_stamp.read_text().strip() == digest
    layout.clientid_plugin_stamp.write_text("built from an older source\n")
    ensure_plugin(layout)
    assert layout.clientid_plugin_stamp.read_text().strip() == digest


def test_a_missing_compiler_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    layout = Layout.at(tmp_path)
    layout.create()
    monkeypatch.setenv("CC", "no-such-compiler-here")
    with pytest.raises(PluginBuildError, match=r"no C compiler .*apt-get install"):
        ensure_plugin(layout)
    assert not layout.clientid_plugin.exists()
