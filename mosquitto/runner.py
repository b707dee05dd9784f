"""Prepare the data dir and run Debian's Mosquitto in the foreground.

:func:`prepare_broker` writes everything Mosquitto needs (accounts, ACL, config, TLS
files when asked) and returns the argv to start it, for callers that supervise it
themselves. :func:`run_broker` does that and runs Mosquitto as a child: SIGTERM, SIGINT
(Ctrl-C) and SIGHUP (reload accounts and ACL) are passed on, and its exit status is
returned once it has stopped and saved its persistence file.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pwd
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Final

from arete.topics import Topics
from mosquitto.accounts import ensure_service_accounts
from mosquitto.acl import render_acl
from mosquitto.config import BrokerOptions, render_config
from mosquitto.errors import BrokerAlreadyRunning, BrokerNotSetUp, MosquittoNotInstalled
from mosquitto.layout import Layout, write_private
from mosquitto.state import BrokerInfo, load_info, running_pid, save_info

DEFAULT_MOSQUITTO: Final = "/usr/sbin/mosquitto"
MOSQUITTO_ENV: Final = "ARETE_MOSQUITTO"  # path of another Mosquitto build, if wanted
FORWARDED_SIGNALS: Final = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
PR_SET_PDEATHSIG: Final = 1


@dataclass(frozen=True, slots=True)
class PreparedBroker:
    argv: list[str]
    layout: Layout
    info: BrokerInfo
    created_secrets: list[Path] = field(default_factory=list)
    tls_created: bool = False


def find_mosquitto(explicit: str | None = None) -> str:
    """The Mosquitto executable: ``explicit``, ``$ARETE_MOSQUITTO``, Debian's, or PATH's."""
    wanted = explicit or os.environ.get(MOSQUITTO_ENV)
    if wanted:
        if os.path.isfile(wanted) and os.access(wanted, os.X_OK):
            return wanted
        raise MosquittoNotInstalled(wanted)
    if os.access(DEFAULT_MOSQUITTO, os.X_OK):
        return DEFAULT_MOSQUITTO
    found = shutil.which("mosquitto")
    if found is None:
        raise MosquittoNotInstalled(f"{DEFAULT_MOSQUITTO} and PATH")
    return found


def current_user() -> str:
    return pwd.getpwuid(os.geteuid()).pw_name


def prepare_broker(
    layout: Layout, options: BrokerOptions, *, mosquitto: str | None = None
) -> PreparedBroker:
    """Write accounts, ACL, config (and TLS files when a TLS port is set); the argv."""
    executable = find_mosquitto(mosquitto)  # before writing anything
    layout.create()
    with contextlib.suppress(BrokerNotSetUp):
        pid = running_pid(layout, load_info(layout))
        if pid is not None:
            raise BrokerAlreadyRunning(
                f"a broker for {layout.data_dir} is already running (Mosquitto pid {pid}); "
                "stop it first"
            )
    created = ensure_service_accounts(layout)
    tls_created = False
    if options.tls_port is not None:
        from mosquitto.tls import init_tls, tls_ready

        if not tls_ready(layout):
            tls_created = init_tls(layout).server_created
    write_private(layout.acl_file, render_acl(Topics(options.root)))
    write_private(layout.config_file, render_config(layout, options, user=current_user()))
    info = BrokerInfo.from_options(options)
    save_info(layout, info)
    return PreparedBroker(
        argv=[executable, "-c", str(layout.config_file)],
        layout=layout,
        info=info,
        created_secrets=created,
        tls_created=tls_created,
    )


def _die_with_parent() -> Callable[[], None] | None:
    """A pre-exec hook so Mosquitto stops if this process is killed (SIGKILL included)."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before fork, not in the child
    parent = os.getpid()

    def hook() -> None:
        prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM))
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return hook


@contextlib.contextmanager
def _forwarding(child: subprocess.Popen[bytes]) -> Iterator[None]:
    def forward(signum: int, frame: FrameType | None) -> None:
        if child.poll() is None:
            child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in FORWARDED_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_broker(
    layout: Layout,
    options: BrokerOptions,
    *,
    mosquitto: str | None = None,
    on_prepared: Callable[[PreparedBroker], None] | None = None,
) -> int:
    """Run Mosquitto until it exits; its exit status (128+N when killed by signal N)."""
    prepared = prepare_broker(layout, options, mosquitto=mosquitto)
    if on_prepared is not None:
        on_prepared(prepared)
    child = subprocess.Popen(
        prepared.argv,
        stdin=subprocess.DEVNULL,
        preexec_fn=_die_with_parent(),  # noqa: PLW1509 - this process starts no threads
    )
    try:
        with _forwarding(child):
            save_info(layout, prepared.info.with_pid(child.pid))
            returncode = child.wait()
    finally:
        if child.poll() is None:
            child.terminate()
            child.wait()
        with contextlib.suppress(OSError):
            save_info(layout, prepared.info.with_pid(None))
    return returncode if returncode >= 0 else 128 - returncode
