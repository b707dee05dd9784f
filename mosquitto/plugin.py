"""The broker plugin that enforces the client-id rule (``arete.clientids``).

Mosquitto 2.0.11 has no per-user client-id rule of its own, so ``arete broker run``
loads ``c/arete_clientid.c``, built here with the C compiler against Debian's
``mosquitto-dev`` and ``libmosquitto-dev`` headers (``scripts/setup.sh`` installs
them). The build lands in the data dir next to the config and is redone only when the
source changes; a broker that cannot load the plugin is not started, because without
it any account could take over another's client id.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from importlib import resources
from pathlib import Path
from typing import Final

from mosquitto.errors import PluginBuildError
from mosquitto.layout import Layout, describe

SOURCE_NAME: Final = "arete_clientid.c"
COMPILER_ENV: Final = "CC"
BUILD_TIMEOUT_S: Final = 60.0
HEADERS: Final = ("/usr/include/mosquitto_broker.h", "/usr/include/mosquitto.h")
FLAGS: Final = ("-O2", "-Wall", "-Wextra", "-Werror", "-fPIC", "-shared")
_INSTALL_HINT: Final = (
    "install gcc, libc6-dev, mosquitto-dev and libmosquitto-dev (scripts/setup.sh does: "
    "apt-get install -y gcc libc6-dev mosquitto-dev libmosquitto-dev)"
)


def plugin_source() -> bytes:
    """The C source shipped in this package."""
    return resources.files("mosquitto").joinpath("c", SOURCE_NAME).read_bytes()


def _digest(source: bytes) -> str:
    return hashlib.sha256(source).hexdigest()


def _compiler() -> str:
    wanted = os.environ.get(COMPILER_ENV) or "gcc"
    found = shutil.which(wanted)
    if found is None:
        raise PluginBuildError(
            f"no C compiler ({wanted}) to build the broker's client-id plugin: {_INSTALL_HINT}"
        )
    return found


def build(source: bytes, target: Path) -> None:
    """Compile ``source`` into the shared object ``target`` (replaced atomically)."""
    missing = [header for header in HEADERS if not Path(header).is_file()]
    if missing:
        raise PluginBuildError(
            f"the Mosquitto plugin headers are missing ({', '.join(missing)}): {_INSTALL_HINT}"
        )
    compiler = _compiler()
    source_copy = target.with_name(SOURCE_NAME)
    partial = target.with_name(target.name + ".partial")
    try:
        source_copy.write_bytes(source)
        done = subprocess.run(
            [compiler, *FLAGS, "-o", str(partial), str(source_copy)],
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT_S,
            check=False,
        )
        if done.returncode != 0:
            raise PluginBuildError(
                f"building the broker's client-id plugin failed ({compiler} exited "
                f"{done.returncode}): {done.stderr.strip()[:2000]}"
            )
        partial.replace(target)
    except subprocess.TimeoutExpired:
        raise PluginBuildError(
            f"building the broker's client-id plugin took over {BUILD_TIMEOUT_S:.0f} s"
        ) from None
    except OSError as exc:
        raise PluginBuildError(
            f"cannot build the broker's client-id plugin in {target.parent}: {describe(exc)}"
        ) from None
    finally:
        partial.unlink(missing_ok=True)


def ensure_plugin(layout: Layout) -> Path:
    """Build the plugin into the data dir if it is missing or stale; its path."""
    source = plugin_source()
    digest = _digest(source)
    target = layout.clientid_plugin
    stamp = layout.clientid_plugin_stamp
    try:
        if target.is_file() and stamp.read_text(encoding="ascii").strip() == digest:
            return target
    except (OSError, UnicodeError):
        pass  # no stamp or an unreadable one: build again
    build(source, target)
    try:
        stamp.write_text(digest + "\n", encoding="ascii")
    except OSError as exc:
        raise PluginBuildError(f"cannot write {stamp}: {describe(exc)}") from None
    return target


def check_build() -> None:
    """Build the plugin once in a scratch dir: ``scripts/setup.sh`` checks the toolchain."""
    with tempfile.TemporaryDirectory(prefix="arete-plugin-") as scratch:
        build(plugin_source(), Path(scratch) / "arete_clientid.so")
