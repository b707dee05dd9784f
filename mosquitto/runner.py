"""Prepare the data dir and run Debian's Mosquitto in the foreground.

:func:`prepare_broker` writes everything Mosquitto needs (accounts, ACL, config, TLS
files when asked) and returns the argv to start it, for callers that supervise it
themselves. :func:`run_broker` does that and runs Mosquitto as a child: SIGTERM, SIGINT
(Ctrl-C) and SIGHUP (reload accounts and ACL) are passed on, and its exit status is
returned once it has stopped and saved its persistence file. Both hold the data dir's
run lock (:func:`run_lock`) while they write, ``run_broker`` until Mosquitto exits, so
one data dir is never served or rewritten by two runs at once.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Final

from arete.topics import Topics
from mosquitto.accounts import ensure_service_accounts
from mosquitto.acl import render_acl
from mosquitto.config import BrokerOptions, render_config
from mosquitto.errors import (
    BrokerAlreadyRunning,
    BrokerConfigError,
    BrokerError,
    BrokerNotSetUp,
    DataDirError,
    MosquittoNotInstalled,
)
from mosquitto.layout import PRIVATE_FILE, Layout, describe, make_private_dir, write_private
from mosquitto.passwords import locked, write_password_file
from mosquitto.plugin import ensure_plugin
from mosquitto.state import BrokerInfo, load_info, running_pid, save_info

DEFAULT_MOSQUITTO: Final = "/usr/sbin/mosquitto"
MOSQUITTO_ENV: Final = "ARETE_MOSQUITTO"  # path of another Mosquitto build, if wanted
FORWARDED_SIGNALS: Final = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
PR_SET_PDEATHSIG: Final = 1
READY_TIMEOUT_S: Final = 60.0  # how long to wait for Mosquitto's listener before READY=1


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


def config_user() -> str | None:
    """The ``user`` line's value: only when started as root, and then root itself.

    Mosquitto switches user only when it starts as root, by default to ``mosquitto``,
    which cannot read the 0600 files of a data dir owned by root. Anyone else keeps
    running as themselves, with or without a passwd entry (containers often have none).
    """
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwuid(0).pw_name
    except KeyError:
        return "root"


@contextlib.contextmanager
def run_lock(layout: Layout) -> Iterator[None]:
    """Hold the data dir's run lock, or raise :class:`BrokerAlreadyRunning` at once.

    The lock is an ``flock`` on ``broker/.run.lock``: the kernel drops it when the
    holder exits, however it exits, so a crash never leaves a stale lock behind.
    """
    make_private_dir(layout.data_dir)
    make_private_dir(layout.broker_dir)
    lock_file = layout.run_lock_file
    try:
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, PRIVATE_FILE)
    except OSError as exc:
        raise DataDirError(f"cannot open the lock file {lock_file}: {describe(exc)}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BrokerAlreadyRunning(
                f"a broker for {layout.data_dir} is already running (another "
                f"`arete broker run` holds {lock_file}); stop it first"
            ) from None
        yield
    finally:
        os.close(fd)  # closing releases the lock


def prepare_broker(
    layout: Layout, options: BrokerOptions, *, mosquitto: str | None = None
) -> PreparedBroker:
    """Write accounts, ACL, config (and TLS files when a TLS port is set); the argv.

    Refused (:class:`BrokerAlreadyRunning`) while ``run_broker`` serves the data dir.
    """
    executable = find_mosquitto(mosquitto)  # before writing anything
    with run_lock(layout):
        return _prepare(layout, options, executable)


def _prepare(layout: Layout, options: BrokerOptions, executable: str) -> PreparedBroker:
    """:func:`prepare_broker` for a caller that holds :func:`run_lock`."""
    layout.create()
    # A broker.json that a hand edit broke records no pid worth checking; the run lock
    # already excludes another `arete broker run`, and this run rewrites the file.
    with contextlib.suppress(BrokerNotSetUp, BrokerConfigError):
        pid = running_pid(layout, load_info(layout))
        if pid is not None:
            raise BrokerAlreadyRunning(
                f"a broker for {layout.data_dir} is already running (Mosquitto pid {pid}); "
                "stop it first"
            )
    if options.service_accounts:
        created = ensure_service_accounts(layout)
    else:  # every account comes from `arete broker passwd`; Mosquitto needs the file
        created = []
        with locked(layout.lock_file):
            if not layout.password_file.exists():
                write_password_file(layout.password_file, {})
    tls_created = False
    if options.tls_port is not None or options.ws_tls:
        from mosquitto.tls import init_tls, tls_ready

        if not tls_ready(layout):
            tls_created = init_tls(layout).server_created
    ensure_plugin(layout)
    write_private(layout.acl_file, render_acl(Topics(options.root)))
    write_private(layout.config_file, render_config(layout, options, user=config_user()))
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


def _wait_listening(child: subprocess.Popen[bytes], info: BrokerInfo) -> bool:
    """Wait until Mosquitto accepts connections on its plain listener (False if it
    exited first, or did not within :data:`READY_TIMEOUT_S`: then systemd is told it is
    ready anyway rather than left to kill a broker that may only be slow)."""
    host = "127.0.0.1" if info.host in ("0.0.0.0", "") else info.host  # noqa: S104
    host = "::1" if host == "::" else host
    deadline = time.monotonic() + READY_TIMEOUT_S
    while child.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, info.port), 0.5):
            return True
        time.sleep(0.05)
    return False


def notify_ready() -> None:
    """Tell systemd (``Type=notify``) that the broker is up: until then a reload
    (``systemctl reload``) waits instead of signalling a process still starting, and
    units ordered after the broker wait for it to accept connections."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    target = "\0" + address[1:] if address.startswith("@") else address
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"READY=1", target)


def run_broker(
    layout: Layout,
    options: BrokerOptions,
    *,
    mosquitto: str | None = None,
    on_prepared: Callable[[PreparedBroker], None] | None = None,
) -> int:
    """Run Mosquitto until it exits; its exit status (128+N when killed by signal N).

    The data dir's run lock is held from before the first file is written until
    Mosquitto has exited, so a second ``run_broker`` on the same data dir is refused
    with :class:`BrokerAlreadyRunning` instead of rewriting the config under the first.
    """
    executable = find_mosquitto(mosquitto)  # before writing anything
    with run_lock(layout):
        prepared = _prepare(layout, options, executable)
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
                _wait_listening(child, prepared.info)
                if child.poll() is None:  # listening, or still trying after a minute
                    notify_ready()
                returncode = child.wait()
        finally:
            if child.poll() is None:
                child.terminate()
                child.wait()
            with contextlib.suppress(BrokerError):
                save_info(layout, prepared.info.with_pid(None))
    return returncode if returncode >= 0 else 128 - returncode
