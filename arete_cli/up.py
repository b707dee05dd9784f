"""``arete up``: the whole stack on embedded defaults, as one supervised process tree.

Today that is the broker and a local agent for this machine (the maestro, the web API
and the dashboard join them in later releases). Each part runs through its own
``arete`` sub-command, so ``up`` behaves exactly like a hand-made deployment.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from arete.errors import TopicError
from arete.topics import Topics, validate_agent_id

STOP_TIMEOUT_S = 10.0


def _local_agent_id() -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname().split(".")[0]).strip("-.")
    try:
        return validate_agent_id(name[:64])
    except TopicError:
        return "local"


def _port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return True
        time.sleep(0.05)
    return False


def _arete(*args: str) -> list[str]:
    return [sys.executable, "-m", "arete_cli", *args]


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def up(
    data_dir: Annotated[
        Path,
        typer.Option(
            "--data-dir", envvar="ARETE_DATA_DIR", help="Where config, credentials and data live."
        ),
    ] = Path("data"),
    mqtt_port: Annotated[
        int, typer.Option("--mqtt-port", min=1, max=65535, help="Broker port on 127.0.0.1.")
    ] = 1883,
    agent_id: Annotated[
        str | None,
        typer.Option("--agent-id", help="Id of the local agent (default: the host name)."),
    ] = None,
) -> None:
    """Run the broker and a local agent for this machine, until Ctrl-C.

    The first run creates the data dir with the broker's accounts and the local agent's
    config; later runs reuse them.

    Example: arete up --data-dir ./data --mqtt-port 1883
    """
    data_dir = data_dir.resolve()
    local_id = agent_id or _local_agent_id()
    try:
        validate_agent_id(local_id)
    except TopicError as exc:
        raise typer.BadParameter(str(exc), param_hint="--agent-id") from None
    if not _port_free(mqtt_port):
        typer.echo(
            f"error: port {mqtt_port} on 127.0.0.1 is in use (another broker?); "
            "choose one with --mqtt-port",
            err=True,
        )
        raise typer.Exit(1)

    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    config = data_dir / "agents" / f"{local_id}.toml"
    broker: subprocess.Popen[bytes] | None = None
    agent: subprocess.Popen[bytes] | None = None
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        broker = subprocess.Popen(
            _arete("broker", "run", "--data-dir", str(data_dir), "--port", str(mqtt_port))
        )
        if not _wait_port(mqtt_port, broker):
            typer.echo("error: the broker did not start; see its messages above", err=True)
            raise typer.Exit(1)
        if not config.exists():
            added = subprocess.run(
                _arete("agents", "add", local_id, "--data-dir", str(data_dir)),
                check=False,
                stdout=subprocess.DEVNULL,
            )
            if added.returncode != 0:
                raise typer.Exit(1)
        env = {
            **os.environ,
            "ARETE_AGENT_STATE_DIR": str(data_dir / "agent-state" / local_id),
        }
        agent = subprocess.Popen(_arete("agent", "run", "--config", str(config)), env=env)
        _banner(data_dir, mqtt_port, local_id, config)
        while not stopping:
            if broker.poll() is not None:
                typer.echo(f"error: the broker exited ({broker.returncode})", err=True)
                raise typer.Exit(1)
            if agent.poll() is not None and agent.returncode != 64:
                typer.echo(f"the local agent exited ({agent.returncode}); restarting it", err=True)
                time.sleep(1.0)
                agent = subprocess.Popen(_arete("agent", "run", "--config", str(config)), env=env)
            time.sleep(0.2)
    finally:
        _stop(agent)
        _stop(broker)
    typer.echo("stopped")


def _banner(data_dir: Path, port: int, agent_id: str, config: Path) -> None:
    viewer = data_dir / "secrets" / "viewer.password"
    watch = (
        f'mosquitto_sub -h 127.0.0.1 -p {port} -u viewer -P "$(cat {viewer})" '
        f"-V mqttv5 -t '{Topics().everything()}' -v"
    )
    typer.echo(
        f"""
Areté is running (Ctrl-C stops everything).

  broker       mqtt://127.0.0.1:{port}   (data in {data_dir})
  local agent  {agent_id}   (config {config})

Watch the fleet live with the read-only viewer account:

  {watch}

Add another machine:  arete agents add NAME --data-dir {data_dir}
The maestro, web API and Mission Control dashboard arrive in the next releases.
"""
    )
