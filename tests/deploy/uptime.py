"""Control-plane uptime through Caddy while replicas die and restart (issue 12, item 3).

A :class:`Probe` reads the API (``GET /agents`` with a token) 20 times a second and
keeps a dashboard-like websocket open (``/ws``, following one agent: a metrics frame
every second), reconnecting by itself when it drops, as the dashboard does.
:func:`run_scenario` kills one replica with SIGKILL (systemd must start it again: a new
MainPID and NRestarts + 1), then restarts every replica one at a time, each after the
previous one answers ``/readyz`` again, and returns what the probe saw.
``bench/uptime.py --write`` puts the figures in RELIABILITY.md.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

import httpx
from websockets.exceptions import WebSocketException
from websockets.sync.client import connect

from tests.deploy.fleet import REPLICAS, SERVER_NAME, Fleet
from tests.fixtures.procs import wait_for

READERS = 2  # threads, each with its own keep-alive connection to Caddy
RATE_HZ = 10.0  # reads a second per reader
SETTLE_S = 3.0  # > Caddy's health_interval (2 s): a replica back is seen before the next goes


@dataclass
class UptimeFigures:
    rate_hz: float = READERS * RATE_HZ
    requests: int = 0
    ok: int = 0
    failures: list[str] = field(default_factory=list)  # the first few, for the report
    ws_connects: int = 0
    ws_drops: int = 0
    ws_frames: int = 0
    ws_frames_after_last_connect: int = 0
    ws_longest_gap_s: float = 0.0
    killed_pid: int = 0
    restarted_pid: int = 0
    nrestarts_before: int = 0
    nrestarts_after: int = 0
    kill_recovery_s: float = 0.0  # SIGKILL -> the replica answers /readyz again
    rolling_s: float = 0.0
    duration_s: float = 0.0

    @property
    def success_ratio(self) -> float:
        return self.ok / self.requests if self.requests else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "success_ratio": self.success_ratio}


class Probe:
    """API reads and a websocket through Caddy, on two threads, until :meth:`stop`."""

    def __init__(self, fleet: Fleet, token: str, follow: str) -> None:
        self.fleet, self.token, self.follow = fleet, token, follow
        self.figures = UptimeFigures()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._reads, name=f"uptime-reads-{n}", daemon=True)
            for n in range(READERS)
        ]
        self._threads.append(
            threading.Thread(target=self._websocket, name="uptime-ws", daemon=True)
        )
        self._started = 0.0

    def start(self) -> None:
        self._started = time.monotonic()
        for thread in self._threads:
            thread.start()

    def stop(self) -> UptimeFigures:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)
        self.figures.duration_s = round(time.monotonic() - self._started, 1)
        return self.figures

    def _failed(self, what: str) -> None:
        with self._lock:
            if len(self.figures.failures) < 20:
                self.figures.failures.append(f"{time.monotonic() - self._started:.1f}s {what}")

    def _reads(self) -> None:
        with self.fleet.https(self.token, timeout=10.0) as client:
            while not self._stop.is_set():
                began = time.monotonic()
                with self._lock:
                    self.figures.requests += 1
                try:
                    answer = client.get("/agents")
                    if answer.status_code == 200 and isinstance(answer.json(), list):
                        with self._lock:
                            self.figures.ok += 1
                    else:
                        self._failed(f"HTTP {answer.status_code}: {answer.text[:120]}")
                except (httpx.HTTPError, ValueError) as exc:
                    self._failed(f"{type(exc).__name__}: {exc}")
                self._stop.wait(max(0.0, 1 / RATE_HZ - (time.monotonic() - began)))

    def _websocket(self) -> None:
        port = self.fleet.central.port(443)
        url = f"wss://{SERVER_NAME}:{port}/ws?token={self.token}"
        last_frame = time.monotonic()
        while not self._stop.is_set():
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                with connect(
                    url,
                    sock=sock,
                    ssl=self.fleet.tls_context(),
                    origin=f"https://{SERVER_NAME}:{port}",  # type: ignore[arg-type]
                    open_timeout=5,
                    close_timeout=2,
                ) as ws:
                    self.figures.ws_connects += 1
                    self.figures.ws_frames_after_last_connect = 0
                    ws.send(json.dumps({"subscribe": [self.follow]}))
                    while not self._stop.is_set():
                        try:
                            ws.recv(timeout=1.0)
                        except TimeoutError:
                            continue
                        now = time.monotonic()
                        gap = now - last_frame
                        self.figures.ws_longest_gap_s = max(self.figures.ws_longest_gap_s, gap)
                        last_frame = now
                        self.figures.ws_frames += 1
                        self.figures.ws_frames_after_last_connect += 1
            except (OSError, WebSocketException, TimeoutError) as exc:
                if not self._stop.is_set():
                    self.figures.ws_drops += 1
                    self._failed(f"websocket: {type(exc).__name__}: {exc}")
                    self._stop.wait(0.5)
        self.figures.ws_longest_gap_s = round(self.figures.ws_longest_gap_s, 2)


def _ready(fleet: Fleet, replica: str) -> bool:
    url = f"http://127.0.0.1:{REPLICAS[replica]}/readyz"
    done = fleet.central.exec("curl", "-fsS", "-o", "/dev/null", "-m", "2", url, check=False)
    return done.returncode == 0


def run_scenario(fleet: Fleet, token: str, follow: str = "agent1") -> UptimeFigures:
    """Probe; kill -9 replica ``a``; a rolling restart of every replica; the figures."""
    central = fleet.central
    victim = f"arete-control@{next(iter(REPLICAS))}"
    probe = Probe(fleet, token, follow)
    probe.start()
    try:
        time.sleep(SETTLE_S)
        figures = probe.figures
        figures.killed_pid = int(central.unit(victim, "MainPID"))
        figures.nrestarts_before = int(central.unit(victim, "NRestarts"))
        killed_at = time.monotonic()
        central.exec("kill", "-KILL", str(figures.killed_pid))

        def restarted() -> bool:
            pid = int(central.unit(victim, "MainPID"))
            return pid not in (0, figures.killed_pid) and central.is_active(victim) == "active"

        wait_for(restarted, 60, f"systemd to start {victim} again", step=0.3)
        figures.restarted_pid = int(central.unit(victim, "MainPID"))
        figures.nrestarts_after = int(central.unit(victim, "NRestarts"))
        wait_for(lambda: _ready(fleet, "a"), 60, f"{victim} to answer /readyz", step=0.3)
        figures.kill_recovery_s = round(time.monotonic() - killed_at, 1)
        time.sleep(SETTLE_S)
        rolling_at = time.monotonic()
        for replica in REPLICAS:
            central.exec("systemctl", "restart", f"arete-control@{replica}", timeout=90)
            wait_for(partial(_ready, fleet, replica), 60, f"{replica} /readyz", step=0.3)
            time.sleep(SETTLE_S)
        figures.rolling_s = round(time.monotonic() - rolling_at, 1)
    finally:
        figures = probe.stop()
    return figures
