"""``arete up``: the whole stack on embedded defaults, as one supervised process tree.

Today that is the broker and a local agent for this machine (the maestro, the web API
and the dashboard join them in later releases). Each part runs through its own
``arete`` sub-command, so ``up`` behaves exactly like a hand-made deployment.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from arete.errors import TopicError
from arete.topics import Topics, validate_agent_id
from arete_cli.console import Output
from arete_cli.options import data_dir_option
from mosquitto.acl import VIEWER
from mosquitto.layout import Layout

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


def up(  # noqa: PLR0917 - Typer passes CLI options as keyword arguments
    data_dir: Annotated[
        Path, data_dir_option("Where config, credentials and data live.", create=True)
    ] = Path("data"),
    mqtt_port: Annotated[
        int, typer.Option("--mqtt-port", min=1, max=65535, help="Broker port on 127.0.0.1.")
    ] = 1883,
    http_port: Annotated[
        int,
        typer.Option(
            "--http-port", min=1, max=65535, help="Web API and dashboard port on 127.0.0.1."
        ),
    ] = 8080,
    agent_id: Annotated[
        str | None,
        typer.Option("--agent-id", help="Id of the local agent (default: the host name)."),
    ] = None,
    ws_port: Annotated[
        int,
        typer.Option(
            "--ws-port",
            min=0,
            max=65535,
            help="MQTT over websockets on 127.0.0.1, for browsers and apps (0: off).",
        ),
    ] = 9001,
    log_level: Annotated[
        str,
        typer.Option(
            "--log-level",
            help="debug, info, warning or error; debug adds one line per HTTP request.",
        ),
    ] = "info",
    log_format: Annotated[
        str,
        typer.Option(
            "--log-format",
            help="console (HH:MM:SS component | message) or json (one object per line).",
        ),
    ] = "console",
) -> None:
    """Run the whole stack for this machine until Ctrl-C: the broker, the maestro with
    the web API and dashboard, and a local agent.

    The first run creates the data dir with the broker's accounts, the command-signing
    key, the local agent's config and an admin user whose one-time password it prints;
    later runs reuse them.

    Example: arete up --data-dir ./data --mqtt-port 1883 --http-port 8080
    """
    if log_level not in ("debug", "info", "warning", "error"):
        raise typer.BadParameter("use debug, info, warning or error", param_hint="--log-level")
    if log_format not in ("console", "json"):
        raise typer.BadParameter("use console or json", param_hint="--log-format")
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
    if http_port == mqtt_port or not _port_free(http_port):
        typer.echo(
            f"error: port {http_port} on 127.0.0.1 is in use; choose one with --http-port",
            err=True,
        )
        raise typer.Exit(1)

    if ws_port and (ws_port in (mqtt_port, http_port) or not _port_free(ws_port)):
        typer.echo(
            f"error: port {ws_port} on 127.0.0.1 is in use; choose one with --ws-port "
            "(0 turns websockets off)",
            err=True,
        )
        raise typer.Exit(1)

    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    stack = _Stack(data_dir, local_id)
    stack.ws_port = ws_port
    stack.use_output(Output("json" if log_format == "json" else "console", log_level))

    def on_signal(signum: int, frame: object) -> None:
        stack.stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        stack.start(mqtt_port, http_port)
        stack.supervise()
    finally:
        stack.stop()
    stack.output.say("stopped")


class _Stack:
    """The processes of ``arete up``: broker, maestro + web API, local agent."""

    def __init__(self, data_dir: Path, agent_id: str) -> None:
        self.data_dir = data_dir
        self.agent_id = agent_id
        self.config = data_dir / "agents" / f"{agent_id}.toml"
        self.env = {
            **os.environ,
            "ARETE_AGENT_STATE_DIR": str(data_dir / "agent-state" / agent_id),
        }
        self.broker: subprocess.Popen[bytes] | None = None
        self.web: subprocess.Popen[bytes] | None = None
        self.agent: subprocess.Popen[bytes] | None = None
        self.stopping = False
        self.ws_port = 0  # MQTT over websockets on 127.0.0.1 (0: off)
        self.output = Output("console", "info")

    def use_output(self, output: Output) -> None:
        """Children log JSON at the stack's level; ``output`` prints it, prefixed."""
        self.output = output
        for service in ("AGENT", "MAESTRO"):
            self.env[f"ARETE_{service}_LOG_LEVEL"] = output.level
            self.env[f"ARETE_{service}_LOG_FORMAT"] = "json"

    def _spawn(self, component: str, argv: list[str]) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            argv, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        assert proc.stdout is not None  # noqa: S101 - asked for just above
        self.output.follow(component, proc.stdout)
        return proc

    def start(self, mqtt_port: int, http_port: int) -> None:
        data = str(self.data_dir)
        self.broker = self._spawn(
            "broker",
            _arete("broker", "run", "--data-dir", data, "--port", str(mqtt_port), *self._ws_args()),
        )
        if not _wait_port(mqtt_port, self.broker):
            self.output.say("the broker did not start; see its messages above", "error")
            raise typer.Exit(1)
        admin_password = _first_run_secrets(self.data_dir)
        self.web = self._spawn(
            "web", _arete("web", "run", "--data-dir", data, "--port", str(http_port))
        )
        if not self.config.exists():
            added = subprocess.run(
                _arete("agents", "add", self.agent_id, "--data-dir", data),
                check=False,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            for line in added.stderr.splitlines():
                self.output.say(line, "error" if line.startswith("error:") else "warning")
            if added.returncode != 0:
                raise typer.Exit(1)
        self.agent = self._start_agent()
        if not _wait_port(http_port, self.web, timeout=30.0):
            self.output.say("the web API did not start; see its messages above", "error")
            raise typer.Exit(1)
        _banner(
            self.data_dir,
            port=mqtt_port,
            http_port=http_port,
            agent_id=self.agent_id,
            config=self.config,
            admin_password=admin_password,
            ws_port=self.ws_port,
            say=self._say_banner,
        )

    def _say_banner(self, text: str) -> None:
        """The banner as a block on a console; one event per line in JSON."""
        if self.output.fmt == "console":
            typer.echo(text)
            return
        for line in text.splitlines():
            if line.strip():
                self.output.say(line.strip())

    def _ws_args(self) -> list[str]:
        if not self.ws_port:
            return ["--no-ws"]
        return ["--ws-port", str(self.ws_port), "--ws-host", "127.0.0.1", "--no-wss"]

    def _start_agent(self) -> subprocess.Popen[bytes]:
        return self._spawn("agent", _arete("agent", "run", "--config", str(self.config)))

    def supervise(self) -> None:
        """Until Ctrl-C: a dead broker or web API ends the stack; the agent restarts."""
        while not self.stopping:
            for name, proc in (("the broker", self.broker), ("the maestro and web API", self.web)):
                if proc is not None and proc.poll() is not None:
                    self.output.say(f"{name} exited ({proc.returncode}); stopping", "error")
                    raise typer.Exit(1)
            agent = self.agent
            if agent is not None and agent.poll() is not None and agent.returncode != 64:
                self.output.say(
                    f"the local agent exited ({agent.returncode}); restarting it", "warning"
                )
                time.sleep(1.0)
                self.agent = self._start_agent()
            time.sleep(0.2)

    def stop(self) -> None:
        _stop(self.agent)
        _stop(self.web)
        _stop(self.broker)
        self.output.drain()


def _first_run_secrets(data_dir: Path) -> str | None:
    """The command-signing key (before the local agent's config, which embeds it) and
    the ``admin`` user; returns admin's one-time password on the run that creates it."""
    from maestro.keys import create_keys, key_paths
    from web_api.auth.users import ensure_admin

    if not key_paths(data_dir).private.exists():
        create_keys(data_dir)
    return ensure_admin(data_dir)


def _banner(
    data_dir: Path,
    *,
    port: int,
    http_port: int,
    agent_id: str,
    config: Path,
    admin_password: str | None,
    ws_port: int = 0,
    say: Callable[[str], None] = typer.echo,
) -> None:
    if admin_password is not None:
        login = (
            f"log in as admin with the one-time password  {admin_password}\n"
            "  (shown only now; the dashboard asks you to choose your own at the first sign-in)"
        )
    else:
        login = (
            "log in with your user (admin was created on the first run; "
            f"`arete users add NAME --role admin --data-dir {data_dir}` makes another)"
        )
    # The viewer's options file holds its password: never on a command line, where any
    # local user could read it in /proc.
    options_dir = Layout.at(data_dir).cli_options_dir(VIEWER)
    watch = (
        f"XDG_CONFIG_HOME={shlex.quote(str(options_dir))} mosquitto_sub -h 127.0.0.1 "
        f"-p {port} -V mqttv5 -t '{Topics().everything()}' -v"
    )
    websockets = (
        f"  websockets   ws://127.0.0.1:{ws_port}   (browsers and apps: user viewer,"
        " client id viewer:NAME)\n"
        if ws_port
        else ""
    )
    say(
        f"""
Areté is running (Ctrl-C stops everything).

  dashboard    http://127.0.0.1:{http_port}/
  {login}

  broker       mqtt://127.0.0.1:{port}   (data in {data_dir})
{websockets}  local agent  {agent_id}   (config {config})

Watch the fleet live with the read-only viewer account:

  {watch}

Add another machine:  arete agents add NAME --data-dir {data_dir}
"""
    )
