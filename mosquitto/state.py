"""``broker/broker.json``: how the broker of a data dir is reachable, and whether it runs.

``arete broker run`` writes it at start (and records Mosquitto's pid while it runs) and
reads it to remember the listener and queue options of its last run; ``arete agents
add`` reads it to write a ready agent config and to send the running broker SIGHUP so it
reloads the password and ACL files.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from mosquitto.config import MAX_QUEUED_MESSAGES, SYS_INTERVAL_S, BrokerOptions
from mosquitto.errors import BrokerConfigError, BrokerNotSetUp, DataDirError, ReloadNotPermitted
from mosquitto.layout import Layout, describe, write_private


@dataclass(frozen=True, slots=True)
class BrokerInfo:
    host: str
    port: int
    root: str
    tls_port: int | None = None
    ws_port: int | None = None
    ws_host: str | None = None  # None: host (files written before it existed)
    ws_tls: bool = False
    pid: int | None = None  # Mosquitto's pid while `arete broker run` is running
    # Not about reaching the broker, but remembered like the listeners (a file written
    # before they existed gets the defaults).
    max_queued_messages: int = MAX_QUEUED_MESSAGES
    sys_interval_s: int = SYS_INTERVAL_S

    @classmethod
    def from_options(cls, options: BrokerOptions, pid: int | None = None) -> BrokerInfo:
        return cls(
            host=options.host,
            port=options.port,
            root=options.root,
            tls_port=options.tls_port,
            ws_port=options.ws_port,
            ws_host=options.ws_host,
            ws_tls=options.ws_tls,
            pid=pid,
            max_queued_messages=options.max_queued_messages,
            sys_interval_s=options.sys_interval_s,
        )

    def with_pid(self, pid: int | None) -> BrokerInfo:
        return replace(self, pid=pid)


def save_info(layout: Layout, info: BrokerInfo) -> None:
    write_private(layout.state_file, json.dumps(asdict(info), indent=2) + "\n")


def load_info(layout: Layout) -> BrokerInfo:
    """The recorded broker, or :class:`BrokerNotSetUp` with what to run first.

    A file that cannot be read raises :class:`DataDirError`, one that a hand edit broke
    :class:`BrokerConfigError`, both naming it.
    """
    path = layout.state_file
    try:
        raw: Any = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BrokerNotSetUp(
            f"no broker is set up in {layout.data_dir} ({path} is missing); "
            f"run `arete broker run --data-dir {layout.data_dir}` once first"
        ) from None
    except OSError as exc:
        raise DataDirError(f"cannot read {path}: {describe(exc)}") from None
    except ValueError as exc:  # UnicodeDecodeError and json.JSONDecodeError included
        raise BrokerConfigError(f"{path} is not valid JSON: {exc}") from None
    try:
        if not isinstance(raw, dict):
            raise TypeError("expected a JSON object")
        info = BrokerInfo(**raw)
        for name in ("host", "root"):
            if not isinstance(getattr(info, name), str):
                raise TypeError(f"{name} must be a string")
        # Re-validate what a hand edit could have broken; a recorded websockets listener
        # on all interfaces was acknowledged (--ws-all-interfaces) when it was recorded.
        BrokerOptions(
            port=info.port,
            host=info.host,
            root=info.root,
            tls_port=info.tls_port,
            ws_port=info.ws_port,
            ws_host=info.ws_host,
            ws_tls=info.ws_tls,
            ws_all_interfaces=True,
            max_queued_messages=info.max_queued_messages,
            sys_interval_s=info.sys_interval_s,
        )
        if info.pid is not None and (isinstance(info.pid, bool) or not isinstance(info.pid, int)):
            raise TypeError("pid must be an integer")
    except (TypeError, BrokerConfigError) as exc:
        raise BrokerConfigError(f"{path} is not a valid broker record: {exc}") from None
    return info


def running_pid(layout: Layout, info: BrokerInfo) -> int | None:
    """The recorded Mosquitto pid if that process is still this data dir's broker.

    A stale pid may have been reused by an unrelated process: on Linux the process's
    command line must name this data dir's config file. A broker running as another
    user counts (it is running); :func:`reload_broker` then says it cannot signal it.
    """
    pid = info.pid
    if pid is None or pid <= 1:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        if not sys.platform.startswith("linux"):
            return None  # alive, but without /proc nothing tells whether it is ours
    if sys.platform.startswith("linux"):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return None
        if os.fsencode(str(layout.config_file)) not in cmdline:
            return None
    return pid


def reload_broker(layout: Layout) -> int | None:
    """SIGHUP the running broker so it re-reads passwords and ACLs; its pid, or None.

    Raises :class:`ReloadNotPermitted` when the broker runs as another user.
    """
    try:
        info = load_info(layout)
    except BrokerNotSetUp:
        return None
    pid = running_pid(layout, info)
    if pid is None:
        return None
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        return None
    except PermissionError:
        raise ReloadNotPermitted(
            f"the broker of {layout.data_dir} (Mosquitto pid {pid}) runs as another user, "
            "so it was not told to reload and does not know the change yet: run "
            f"`systemctl reload arete-broker` (or `kill -HUP {pid}` as that user)"
        ) from None
    return pid
