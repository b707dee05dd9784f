"""The ``update`` command: fetch a signed release from the broker, verify it, hand it over.

The agent runs as an unprivileged user and never installs anything itself. It fetches
the release the maestro keeps retained on ``<root>/release/<version>/...``, checks it
with :func:`arete.release.verify_release` (signature, key, expiry, version order) and
every artifact's size and sha256, writes it to ``S/updates/<version>/`` and asks the
host's updater (root, ``arete agent updater``) to install it by writing
``S/updates/request.json`` (edge_agent/update_files.py). The reply is ``ok`` once the
updater picked the request up; what follows (install, switch, health check, rollback)
shows in the agent's status, ``update``. docs/updates.md tells the whole story.

Every refusal (``not_enabled``, ``busy``, the verification codes, ``no_release``,
``fetch_failed``, ``tampered``) comes before anything is written. Memory: the manifest
is fetched and verified first; only then the chunks, each checked against the manifest
as it comes, so the agent never holds more than the release it asked for.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from arete.commands import UpdateArgs, UpdateResult
from arete.errors import KeyFormatError, PayloadError, ReleaseRefused, TopicError
from arete.payloads import Command, UpdatePhase, UpdateState
from arete.release import (
    ReleaseAssembly,
    ReleaseManifest,
    compare_versions,
    configured_keyring,
    verify_release,
)
from arete.topics import Topics
from arete.version import __version__
from edge_agent.errors import CommandFailed, ConfigError
from edge_agent.settings import UpdateSettings
from edge_agent.update_files import RELEASE_FILE, UpdateFileError, UpdateFiles, UpdateRequest

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

log = logging.getLogger("arete.agent.update")

PICKUP_POLL_S: Final = 0.2
NO_UPDATER: Final = (
    "no host updater picked the request up within {timeout:g} s: self-update needs "
    "arete-agent-update.path/.service on this host (docs/updates.md)"
)


def load_release_keys(settings: UpdateSettings) -> dict[str, Ed25519PublicKey]:
    """The trusted release keys by key id; a bad key or unreadable key file is a
    :class:`ConfigError` (the agent does not start)."""
    try:
        return configured_keyring(
            settings.release_keys,
            settings.release_key_file,
            keys_name="update.release_keys",
            file_name="update.release_key_file",
        )
    except KeyFormatError as exc:
        raise ConfigError(str(exc)) from None


@dataclass(slots=True)
class _Fetch:
    """One release being fetched: the manifest, then its chunks."""

    version: str
    manifest_raw: bytes | None = None
    assembly: ReleaseAssembly | None = None
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    bad_chunks: int = 0


class SelfUpdate:
    """The ``update`` command's precheck and handler; fed release messages by the agent."""

    def __init__(
        self,
        settings: UpdateSettings,
        topics: Topics,
        files: UpdateFiles,
        *,
        subscribe: Callable[[str], object],
        unsubscribe: Callable[[str], object],
        running_version: str = __version__,
    ) -> None:
        self.settings = settings
        self.topics = topics
        self.files = files
        self.keys = load_release_keys(settings)
        self.running_version = running_version
        self._subscribe = subscribe
        self._unsubscribe = unsubscribe
        self._fetch: _Fetch | None = None
        self._watches: set[asyncio.Task[None]] = set()
        self._release_prefix = topics.all_releases().removesuffix("#")

    # -- before ``accepted`` ------------------------------------------------------------
    def precheck(self, args: UpdateArgs) -> None:
        if not self.settings.enabled:
            raise CommandFailed(
                "not_enabled", "self-update is disabled on this agent ([update] enabled)"
            )
        if not self.keys:
            raise CommandFailed(
                "not_enabled", "this agent trusts no release key ([update] release_keys)"
            )
        self._refuse_if_busy()

    def _refuse_if_busy(self) -> None:
        reason = self.files.in_progress()
        if reason is not None:
            raise CommandFailed("busy", reason)

    # -- the handler --------------------------------------------------------------------
    async def run(self, args: UpdateArgs, command: Command) -> UpdateResult:
        self.precheck(args)  # again: the updater may have started on something since
        running = self.running_version
        if args.rollback:
            return await self._rollback(args, command)
        version = args.version or ""  # UpdateArgs: exactly one of version or rollback
        if compare_versions(version, running) == 0:
            return UpdateResult(state="up_to_date", from_version=running, to_version=running)
        kv = {"command_id": command.id, "version": version}
        log.info("fetching release", extra={"kv": kv})
        manifest, raw, assembly = await self._fetch_release(version)
        for index in range(len(manifest.artifacts)):
            _checked(assembly, index)  # tampered: refused before anything is written
        await asyncio.to_thread(self._spool, version, raw, assembly)
        del assembly  # its chunks are on disk now
        request = UpdateRequest(
            version=version,
            rollback=False,
            from_version=running,
            command_id=command.id,
            health_deadline_s=args.health_deadline_s,
            requested_at=time.time(),
        )
        await self._write_request(request)
        log.info("release verified and handed to the host updater", extra={"kv": kv})
        await self._wait_pickup(command.id, version)
        return UpdateResult(state="handed_over", from_version=running, to_version=version)

    async def _rollback(self, args: UpdateArgs, command: Command) -> UpdateResult:
        try:
            state = self.files.read_state()
        except UpdateFileError:
            state = None
        previous = ""
        if state is not None and _same_version(state.to_version, self.running_version):
            previous = state.from_version  # the version the last update replaced
        request = UpdateRequest(
            version=None,
            rollback=True,
            from_version=self.running_version,
            command_id=command.id,
            health_deadline_s=args.health_deadline_s,
            requested_at=time.time(),
        )
        await self._write_request(request)
        log.info("rollback requested", extra={"kv": {"command_id": command.id}})
        # Answered at once (the updater restarts this agent right away), but a request
        # nobody takes must not leave the agent ``busy`` for good.
        watch = asyncio.create_task(self._withdraw_unpicked(command.id))
        self._watches.add(watch)
        watch.add_done_callback(self._watches.discard)
        return UpdateResult(
            state="rollback_requested", from_version=self.running_version, to_version=previous
        )

    async def _write_request(self, request: UpdateRequest) -> None:
        try:
            await asyncio.to_thread(self.files.write_request, request)
        except OSError as exc:
            self.files.withdraw(request.version)
            raise CommandFailed("install_failed", f"cannot write the request: {exc}") from None

    async def _fetch_release(self, version: str) -> tuple[ReleaseManifest, bytes, ReleaseAssembly]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.fetch_timeout_s
        fetch = _Fetch(version)
        self._fetch = fetch
        manifest_topic = self.topics.release_manifest(version)
        release_filter = self.topics.release_filter(version)  # the manifest again: ignored
        try:
            self._subscribe(manifest_topic)
            if not await _wait(fetch.arrived, deadline - loop.time()):
                raise CommandFailed(
                    "no_release",
                    f"release {version} is not on the broker (nothing on {manifest_topic} "
                    f"within {self.settings.fetch_timeout_s:g} s)",
                )
            self._unsubscribe(manifest_topic)
            raw = fetch.manifest_raw or b""
            try:
                manifest = verify_release(
                    raw, self.keys, now=time.time(), running_version=self.running_version
                )
            except ReleaseRefused as exc:
                raise CommandFailed(exc.code, str(exc)) from None
            if compare_versions(manifest.version, version) != 0:
                raise CommandFailed(
                    "bad_manifest", f"{manifest_topic} holds release {manifest.version}"
                )
            assembly = ReleaseAssembly(manifest)
            fetch.assembly = assembly
            fetch.arrived.clear()
            if not assembly.complete():
                self._subscribe(release_filter)
                if not await _wait(fetch.arrived, deadline - loop.time()):
                    missing = len(assembly.missing())
                    unfit = f" ({fetch.bad_chunks} did not fit)" if fetch.bad_chunks else ""
                    raise CommandFailed(
                        "fetch_failed",
                        f"release {version}: {missing} chunks did not arrive within "
                        f"{self.settings.fetch_timeout_s:g} s{unfit}",
                    )
            return manifest, raw, assembly
        finally:
            self._fetch = None
            self._unsubscribe(manifest_topic)
            self._unsubscribe(release_filter)

    def _spool(self, version: str, raw: bytes, assembly: ReleaseAssembly) -> None:
        def files() -> Iterator[tuple[str, bytes]]:
            yield RELEASE_FILE, raw  # byte for byte as signed and published
            for index, artifact in enumerate(assembly.manifest.artifacts):
                yield artifact.name, _checked(assembly, index)

        try:
            self.files.spool(version, files())
        except OSError as exc:
            raise CommandFailed("install_failed", f"cannot write the release: {exc}") from None

    async def _picked_up(self, command_id: str) -> UpdateState | None:
        """The updater's state once it names this command, or None after the timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.pickup_timeout_s
        while loop.time() < deadline:
            await asyncio.sleep(PICKUP_POLL_S)
            try:
                state = self.files.read_state()
            except UpdateFileError:
                continue  # being rewritten, or broken: the updater's to fix
            if state is not None and state.command_id == command_id:
                return state
        return None

    async def _withdraw_unpicked(self, command_id: str) -> None:
        if await self._picked_up(command_id) is not None:
            return
        if self.files.request_id() == command_id:
            self.files.withdraw(None)
            log.warning(
                "rollback request taken back: no host updater picked it up",
                extra={"kv": {"command_id": command_id}},
            )

    async def _wait_pickup(self, command_id: str, version: str) -> None:
        """Until the updater's state names this command; else take the request back."""
        state = await self._picked_up(command_id)
        if state is not None:
            if state.phase is UpdatePhase.FAILED:
                raise CommandFailed("install_failed", state.reason or "the host updater failed")
            return
        self.files.withdraw(version)
        timeout = self.settings.pickup_timeout_s
        raise CommandFailed("not_supported", NO_UPDATER.format(timeout=timeout))

    # -- messages from the link (the agent's event loop) --------------------------------
    def owns(self, topic: str) -> bool:
        """Any release topic, even one that comes after its fetch ended (then dropped)."""
        return topic.startswith(self._release_prefix)

    def on_message(self, topic: str, payload: bytes) -> None:
        fetch = self._fetch
        if fetch is None:
            log.debug("release message with no update fetching", extra={"kv": {"topic": topic}})
            return
        if not payload:  # a cleared (removed) release
            return
        try:
            route = self.topics.parse_release(topic)
        except TopicError:
            return
        if route.version != fetch.version:
            return
        if route.artifact is None:
            if fetch.manifest_raw is None:  # verify_release refuses one too large
                fetch.manifest_raw = payload
                fetch.arrived.set()
            return
        assembly = fetch.assembly
        if assembly is None or route.chunk is None:
            return
        if not assembly.feed(route.artifact, route.chunk, payload):
            fetch.bad_chunks += 1
        elif assembly.complete():
            fetch.arrived.set()


def _same_version(a: str, b: str) -> bool:
    try:
        return compare_versions(a, b) == 0
    except PayloadError:  # the updater wrote something that is not a version
        return False


def _checked(assembly: ReleaseAssembly, index: int) -> bytes:
    try:
        return assembly.artifact_bytes(index)
    except ReleaseRefused as exc:
        raise CommandFailed(exc.code, str(exc)) from None


async def _wait(event: asyncio.Event, seconds: float) -> bool:
    try:
        await asyncio.wait_for(event.wait(), max(seconds, 0.0))
    except TimeoutError:
        return False
    return True
