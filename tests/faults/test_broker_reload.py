"""A reload (SIGHUP) that reaches the broker while it is still starting.

``systemctl reload arete-broker`` sends SIGHUP to the ``arete broker run`` process. The
Ansible role reloads right after it (re)starts the service, and on a busy host the
process takes seconds to import before it forwards signals to Mosquitto: SIGHUP's
default action then ended it, and systemd, which counts SIGHUP as a clean exit, left the
broker down (seen as a second run of site.yml "changing" arete-broker by starting it).
Now the unit is ``Type=notify``: systemd holds a reload until the broker said READY=1,
which it says only once Mosquitto accepts connections; and a SIGHUP that comes earlier
anyway (``kill -HUP``) is ignored instead of ending the broker.
"""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

from tests.faults.conftest import Reliability
from tests.fixtures.broker import Broker
from tests.fixtures.procs import Proc, port_open, wait_for


def handles_sighup(pid: int) -> bool:
    """True once the process ignores or catches SIGHUP (its /proc status masks)."""
    masks = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        masks[key] = value.strip()
    return bool((int(masks["SigIgn"], 16) | int(masks["SigCgt"], 16)) & 1 << (signal.SIGHUP - 1))


def test_reloads_during_startup_never_stop_the_broker(
    broker: Broker, procs: Callable[..., Proc], reliability: Reliability, tmp_path: Path
) -> None:
    broker.stop()
    notify_path = tmp_path / "notify.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    notify.settimeout(0.05)
    proc = procs(
        broker.argv(), f"broker-{broker.port}-hup", env={"NOTIFY_SOCKET": str(notify_path)}
    )
    broker.proc = proc
    # The interpreter's own start (before any Python code runs) has no handler to give;
    # from the first line of `arete` on, SIGHUP must be ignored or forwarded.
    wait_for(lambda: handles_sighup(proc.popen.pid), 30, "the broker process to take SIGHUP")
    sent, ready_with_port = 0, None
    deadline = time.monotonic() + 60
    try:
        while ready_with_port is None:
            assert proc.alive(), f"a reload while starting ended the broker:\n{proc.output()}"
            assert time.monotonic() < deadline, "the broker never said READY=1"
            proc.signal(signal.SIGHUP)
            sent += 1
            try:
                if notify.recv(64) == b"READY=1":
                    ready_with_port = port_open(broker.port, broker.host)
            except TimeoutError:
                pass
    finally:
        notify.close()
    assert ready_with_port, "READY=1 came before the broker accepted connections"
    for _ in range(5):  # reloads once it runs are reloads, as before
        proc.signal(signal.SIGHUP)
        sent += 1
        time.sleep(0.1)
    time.sleep(0.5)
    assert proc.alive(), proc.output()
    wait_for(
        lambda: broker.accepts("maestro", broker.maestro_password), 10, "a login after reloads"
    )
    reliability.record(
        f"{sent} reloads (SIGHUP) while a broker starts, then 5 more",
        notes="READY=1 only once it accepted connections; it started and took logins",
    )
