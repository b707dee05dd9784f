"""The decisions of ``docker_update``, without I/O: which image to pull, the configuration
of the new container, when the new container has proven itself, and the time it may take.

The new container is created from the old one's inspected ``Config`` and ``HostConfig``
(as Watchtower does), minus what the old *image* contributed: the new image's defaults
(command, entrypoint, env, labels, health check, ...) take effect, what the user set
when creating the container stays.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from arete.commands import DockerUpdateArgs
from edge_agent.errors import CommandFailed

OLD_SUFFIX: Final = ".arete-old"
"""The previous container is kept (stopped) under ``<name>.arete-old`` until the new one
has proven itself; a ``docker_update`` that finds one restores it first."""

POLL_S: Final = 0.5  # how often the new container's state is read
PULL_BUDGET_S: Final = 300.0  # a pull that took longer changes nothing (the reply timed out)
# Engine API requests one update may make besides its polls (version probe, inspects,
# pull, stop, rename, create, start, remove; a rollback's remove, rename and start).
UPDATE_REQUESTS: Final = 20
UPDATE_GRACE_S: Final = 10.0
_BUILTIN_NETWORKS: Final = frozenset({"", "default", "bridge", "host", "none", "podman"})


def old_name(name: str) -> str:
    return name + OLD_SUFFIX


def base_name(name: str) -> str | None:
    """``web.arete-old`` -> ``web``; None for a name without the suffix."""
    return name.removesuffix(OLD_SUFFIX) if name.endswith(OLD_SUFFIX) else None


def container_name(info: Mapping[str, Any]) -> str:
    return str(info.get("Name") or "").lstrip("/")


def image_ref(requested: str | None, info: Mapping[str, Any]) -> str:
    """The reference to pull: the one asked for, else the one the container was made from."""
    if requested:
        return requested
    ref = str((info.get("Config") or {}).get("Image") or "")
    bare = ref.removeprefix("sha256:")
    if not ref or ref.startswith("sha256:") or (len(bare) in (12, 64) and _is_hex(bare)):
        raise CommandFailed(
            "no_image_ref",
            f"container {container_name(info)!r} was created from an image id, not a name "
            "to pull: give 'image'",
        )
    return ref


def pull_error(output: str) -> str | None:
    """The engine reports a failed pull inside its 200 OK stream: the first error line."""
    import json

    for line in output.splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if isinstance(item, dict) and item.get("error"):
            return str(item.get("error"))[:256]
    return None


def create_config(
    info: Mapping[str, Any], old_image: Mapping[str, Any], ref: str
) -> dict[str, Any]:
    """The body of ``POST /containers/create`` for the new container: the old container's
    configuration with ``ref`` as image and the old image's defaults taken out."""
    config: dict[str, Any] = dict(info.get("Config") or {})
    image: Mapping[str, Any] = old_image.get("Config") or {}
    short_id = str(info.get("Id") or "")[:12]
    config["Image"] = ref
    if config.get("Hostname") == short_id:  # the engine's default: the new id's, then
        config.pop("Hostname")
    image_env = set(image.get("Env") or [])
    config["Env"] = [
        e for e in config.get("Env") or [] if e not in image_env and e != f"HOSTNAME={short_id}"
    ]
    if _same_list(config.get("Entrypoint"), image.get("Entrypoint")):
        config["Entrypoint"] = None
        if _same_list(config.get("Cmd"), image.get("Cmd")):
            config["Cmd"] = None
    for key in ("WorkingDir", "User", "StopSignal"):
        if config.get(key) and config.get(key) == image.get(key):
            config.pop(key)
    if config.get("Healthcheck") and _same_check(config["Healthcheck"], image.get("Healthcheck")):
        config.pop("Healthcheck")
    config["Labels"] = _subtract(config.get("Labels"), image.get("Labels"))
    config["Volumes"] = _subtract(config.get("Volumes"), image.get("Volumes")) or None
    host: dict[str, Any] = dict(info.get("HostConfig") or {})
    exposed = _subtract(config.get("ExposedPorts"), image.get("ExposedPorts"))
    exposed.update({port: {} for port in host.get("PortBindings") or {}})
    config["ExposedPorts"] = exposed or None
    if host.get("Ulimits"):
        # Podman shows ``RLIMIT_NOFILE`` and refuses it back: the API's names are ``nofile``.
        host["Ulimits"] = [
            {**u, "Name": str(u.get("Name", "")).removeprefix("RLIMIT_").lower()}
            for u in host["Ulimits"]
        ]
    config["HostConfig"] = host
    network = str(host.get("NetworkMode") or "")
    endpoints = ((info.get("NetworkSettings") or {}).get("Networks") or {}).get(network)
    if network not in _BUILTIN_NETWORKS and isinstance(endpoints, Mapping):
        aliases = [a for a in endpoints.get("Aliases") or [] if a != short_id]
        endpoint: dict[str, Any] = {"Aliases": aliases or None}
        for key in ("IPAMConfig", "Links"):
            if endpoints.get(key):
                endpoint[key] = endpoints[key]
        config["NetworkingConfig"] = {"EndpointsConfig": {network: endpoint}}
    return config


def has_healthcheck(info: Mapping[str, Any]) -> bool:
    """Whether the container (its own config or its image's) has a health check."""
    test = ((info.get("Config") or {}).get("Healthcheck") or {}).get("Test") or []
    status = ((info.get("State") or {}).get("Health") or {}).get("Status")
    return bool(status) or (bool(test) and test[0] != "NONE")


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    reason: str  # a phrase: "healthy", "kept running 10 s", "it exited with code 3"


def judge(
    info: Mapping[str, Any],
    *,
    has_health: bool,
    restarts: int,
    waited_s: float,
    args: DockerUpdateArgs,
) -> Verdict | None:
    """The new container's verdict from one inspect, or None while it is still on trial.

    With a health check it must report ``healthy`` within ``health_timeout_s``; without
    one it must keep running ``stable_s``. Exiting, restarting (its restart policy caught
    a crash) or ``unhealthy`` fail it at once.
    """
    state: Mapping[str, Any] = info.get("State") or {}
    if state.get("Restarting") or int(info.get("RestartCount") or 0) > restarts:
        # Once running again, some engines (podman) show exit code 0: the code is lost then.
        code = state.get("ExitCode")
        exited = f"it exited with code {code}" if code else "it exited"
        return Verdict(False, f"{exited} and its restart policy restarted it")
    if not state.get("Running"):
        return Verdict(False, f"it exited with code {state.get('ExitCode')}")
    if has_health:
        return _judge_health(state.get("Health") or {}, waited_s, args.health_timeout_s)
    if waited_s >= args.stable_s:
        return Verdict(True, f"it kept running {args.stable_s} s")
    return None


def _judge_health(health: Mapping[str, Any], waited_s: float, timeout_s: int) -> Verdict | None:
    status = str(health.get("Status") or "starting")
    if status == "healthy":
        return Verdict(True, "its health check reports healthy")
    if status == "unhealthy":
        return Verdict(False, f"its health check reports unhealthy{_last_check(health)}")
    if waited_s >= timeout_s:
        return Verdict(False, f"not healthy within {timeout_s} s ({status})")
    return None


def worst_case_s(args: DockerUpdateArgs, client_timeout_s: float) -> float:
    """How long one update may take at most: the pull's budget, every request taking its
    client timeout to connect and again to answer, two stops (the old container, and the
    new one on a rollback), and the trial."""
    requests_s = 2 * client_timeout_s * (UPDATE_REQUESTS + 1)
    trial_s = max(args.health_timeout_s, args.stable_s) + POLL_S
    return PULL_BUDGET_S + requests_s + 2 * args.stop_timeout_s + trial_s + UPDATE_GRACE_S


def _last_check(health: Mapping[str, Any]) -> str:
    log = health.get("Log") or []
    if not log or not isinstance(log[-1], Mapping):
        return ""
    output = " ".join(str(log[-1].get("Output") or "").split())[:120]
    return f" (last check: exit {log[-1].get('ExitCode')}{', ' + output if output else ''})"


def _same_check(a: object, b: object) -> bool:
    """Health checks alike, unset (zero) fields aside: engines show them either way."""

    def fields(x: object) -> dict[str, Any]:
        return {k: v for k, v in x.items() if v} if isinstance(x, Mapping) else {}

    return fields(a) == fields(b)


def _same_list(a: object, b: object) -> bool:
    def items(x: object) -> list[object]:
        return list(x) if isinstance(x, list | tuple) else []

    return items(a) == items(b)


def _subtract(mine: object, image: object) -> dict[str, Any]:
    """``mine`` without the entries ``image`` has with the same value."""
    if not isinstance(mine, Mapping):
        return {}
    theirs: Mapping[str, Any] = image if isinstance(image, Mapping) else {}
    return {k: v for k, v in mine.items() if k not in theirs or theirs[k] != v}


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)
