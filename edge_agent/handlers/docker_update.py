"""The ``docker_update`` command: pull, recreate, prove, or roll back (docs/updates.md).

1. Find the container. A ``<name>.arete-old`` left by an update that never finished (the
   agent was killed or the host lost power mid-way) is restored first: the unproven new
   container, if any, is removed and the old one renamed back and started.
2. Pull the image reference (``args.image``, else the container's ``Config.Image``). The
   same image id as the running one: ``up_to_date``, nothing is touched.
3. Stop the old container, rename it ``<name>.arete-old``, create the new one with the
   same configuration (:func:`~edge_agent.handlers.docker_recreate.create_config`) under
   the old name, start it.
4. Trial: ``healthy`` within ``health_timeout_s`` when it has a health check, else still
   running after ``stable_s``. Passed: the old container is removed (``updated``).
   Failed, or the create/start refused: the new container is removed and the old one
   renamed back and started; the reply is ``failed`` (``unhealthy`` / ``update_failed``)
   with a ``rolled_back`` result.

The SDK calls run in a thread through :mod:`edge_agent.handlers.docker` (client, engine
address, error mapping).
"""

from __future__ import annotations

import time
from typing import Any

from arete.commands import DockerUpdateArgs, DockerUpdateResult
from edge_agent.errors import CommandFailed
from edge_agent.handlers.docker import SHORT_ID, _clip, _explanation, _with_engine
from edge_agent.handlers.docker_recreate import (
    POLL_S,
    PULL_BUDGET_S,
    Verdict,
    base_name,
    container_name,
    create_config,
    has_healthcheck,
    image_ref,
    judge,
    old_name,
    pull_error,
)
from edge_agent.settings import DockerSettings


async def docker_update(args: DockerUpdateArgs, settings: DockerSettings) -> DockerUpdateResult:
    """Update one container to the image its reference now names (see the module doc)."""
    return await _with_engine(
        settings, lambda client: _Update(client.api, args).run(), container=args.container
    )


class _Update:
    def __init__(self, api: Any, args: DockerUpdateArgs) -> None:
        import docker.errors

        self.api = api
        self.args = args
        self.errors = docker.errors
        self.notes: list[str] = []

    def run(self) -> DockerUpdateResult:
        started = time.monotonic()
        info = self._find()
        name = container_name(info)
        if not (info.get("State") or {}).get("Running"):
            state = (info.get("State") or {}).get("Status") or "not running"
            raise CommandFailed(
                "not_running",
                f"container {name!r} is {state}: only a running container is updated "
                "(start it first, e.g. with docker_restart)",
            )
        ref = image_ref(self.args.image, info)
        new_image = self._pull(ref)
        if time.monotonic() - started > PULL_BUDGET_S:
            raise CommandFailed(
                "timeout", f"pulling {ref} took over {PULL_BUDGET_S:.0f} s; nothing was changed"
            )
        old_image = str(info.get("Image") or "")
        result = DockerUpdateResult(
            id=str(info["Id"])[:SHORT_ID],
            name=_clip(name),
            state="up_to_date",
            image=_clip(ref),
            old_image_id=_short(old_image),
            new_image_id=_short(new_image),
        )
        if new_image == old_image:
            return self._result(result, f"{name} already runs the image {ref} names")
        config = create_config(info, self._old_image(info), ref)
        old_id = str(info["Id"])
        new_id: str | None = None
        renamed = False
        doing = "the old container could not be stopped"
        try:
            self.api.stop(old_id, timeout=self.args.stop_timeout_s)
            doing = "the old container could not be renamed"
            self.api.rename(old_id, old_name(name))
            renamed = True
            doing = "the new container could not be created"
            new_id = str(self.api.create_container_from_config(config, name=name)["Id"])
            doing = "the new container could not be started"
            self.api.start(new_id)
        except self.errors.APIError as exc:
            why = f"{doing}: {_explanation(exc)}"
            self._roll_back(old_id, name, new_id, renamed, why)
            raise CommandFailed(
                "update_failed",
                f"{why}; {name} runs the previous image again",
                result=self._result(_replace(result, state="rolled_back"), why),
            ) from None
        verdict = self._trial(new_id)
        if not verdict.ok:
            self._roll_back(old_id, name, new_id, True, verdict.reason)
            message = f"the new container failed its trial: {verdict.reason}"
            raise CommandFailed(
                "unhealthy",
                f"{message}; {name} runs the previous image again",
                result=self._result(_replace(result, state="rolled_back"), message),
            )
        try:
            self.api.remove_container(old_id)
        except self.errors.APIError as exc:  # updated all the same; say what is left
            self.notes.append(f"{old_name(name)} could not be removed: {_explanation(exc)}")
        updated = _replace(result, id=new_id[:SHORT_ID], state="updated")
        return self._result(updated, f"{name} updated to {ref} ({verdict.reason})")

    def _find(self) -> dict[str, Any]:
        """The container to update, after restoring one an interrupted update left."""
        asked = self.args.container
        info = self._inspect(asked)
        name = container_name(info) if info else asked
        name = base_name(name) or name  # asked by the id of a kept old container
        old = self._inspect(old_name(name))
        if old is None:
            if info is None:
                raise CommandFailed("not_found", f"no container named or with id {asked!r}")
            return info
        current = self._inspect(name)
        if current is not None and current["Id"] != old["Id"]:
            self.api.remove_container(current["Id"], force=True)  # never proven: unsafe
        self.api.rename(old["Id"], name)
        self.api.start(old["Id"])
        self.notes.append(f"restored {name} from {old_name(name)} (an interrupted update)")
        restored = self._inspect(str(old["Id"]))
        if restored is None:
            raise CommandFailed("docker_error", f"{name} vanished while it was restored")
        return restored

    def _pull(self, ref: str) -> str:
        try:
            output = self.api.pull(ref)
        except self.errors.APIError as exc:
            raise CommandFailed(
                "pull_failed", f"could not pull {ref}: {_explanation(exc)}"
            ) from None
        error = pull_error(output if isinstance(output, str) else "")
        if error is not None:
            raise CommandFailed("pull_failed", f"could not pull {ref}: {error}")
        image = self._image(ref)
        if not image.get("Id"):
            raise CommandFailed("pull_failed", f"the engine has no image {ref} after pulling it")
        return str(image["Id"])

    def _trial(self, new_id: str) -> Verdict:
        began = time.monotonic()
        first = self.api.inspect_container(new_id)
        with_health = has_healthcheck(first)
        restarts = int(first.get("RestartCount") or 0)
        info = first
        while True:
            verdict = judge(
                info,
                has_health=with_health,
                restarts=restarts,
                waited_s=time.monotonic() - began,
                args=self.args,
            )
            if verdict is not None:
                return verdict
            time.sleep(POLL_S)
            info = self.api.inspect_container(new_id)

    def _roll_back(
        self, old_id: str, name: str, new_id: str | None, renamed: bool, why: str
    ) -> None:
        where = f"it is kept as {old_name(name)}; docker_update {name} again restores it"
        try:
            if new_id is not None:
                self.api.remove_container(new_id, force=True)
            if renamed:
                self.api.rename(old_id, name)
            where = f"it is back as {name} but stopped: start it (docker_restart)"
            self.api.start(old_id)
        except self.errors.APIError as exc:
            raise CommandFailed(
                "rollback_failed",
                f"{why}; putting the previous container back failed too: "
                f"{_explanation(exc)}; {where}",
            ) from None

    def _inspect(self, container: str) -> dict[str, Any] | None:
        try:
            info: dict[str, Any] = self.api.inspect_container(container)
        except self.errors.NotFound:
            return None
        return info

    def _old_image(self, info: dict[str, Any]) -> dict[str, Any]:
        """The old image's inspect; on podman with its health check, which podman's
        Docker-compatible answer leaves out (its own API has it)."""
        image = self._image(str(info.get("Image") or ""))
        config = image.get("Config")
        wanted = (info.get("Config") or {}).get("Healthcheck")
        if not isinstance(config, dict) or "Healthcheck" in config or not wanted:
            return image
        components = self.api.version().get("Components") or []
        if not any("podman" in str(c.get("Name", "")).lower() for c in components):
            return image  # Docker leaves the key out when the image has no health check
        url = f"{self.api.base_url}/v4.0.0/libpod/images/{image.get('Id')}/json"
        answer = self.api.get(url, timeout=self.api.timeout)
        if answer.ok:
            config["Healthcheck"] = answer.json().get("Healthcheck")
        return image

    def _image(self, ref: str) -> dict[str, Any]:
        try:
            image: dict[str, Any] = self.api.inspect_image(ref)
        except self.errors.NotFound:
            return {}
        return image

    def _result(self, result: DockerUpdateResult, message: str) -> DockerUpdateResult:
        return _replace(result, message="; ".join([*self.notes, message]))


def _replace(result: DockerUpdateResult, **changes: Any) -> DockerUpdateResult:
    import msgspec

    return msgspec.structs.replace(result, **changes)


def _short(image_id: str) -> str:
    return image_id.removeprefix("sha256:")[:SHORT_ID]
