"""Puts the release store on the broker (docs/updates.md, docs/topics.md#release).

Its own MQTT connection (client id ``maestro:<replica>:releases``, clean start) and its
own thread, so that megabytes of wheels never wait in line with the ingest's messages.
It subscribes to every release's manifest (``<root>/release/+/manifest``), which tells
it what the broker holds, and every ``scan_interval_s`` (and at once on :meth:`wake`):

- publishes each verified release whose manifest on the broker differs from the store's:
  every chunk first, retained, QoS 1, at most :data:`WINDOW` unacknowledged (chunks are
  read from disk one at a time), then the manifest, so that a client that sees the
  manifest finds every chunk;
- clears (empty retained messages) the topics of releases the store no longer holds or
  no longer verifies: the manifest first, then its chunks.

Every replica may run one: the result is the same and a second run changes nothing.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import logging
import socket
import ssl
import threading
import time
from dataclasses import dataclass, replace
from typing import Any, Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from arete.errors import ReleaseRefused, TopicError
from arete.release import MAX_RELEASE_BYTES, ReleaseManifest, chunk_count, chunk_span
from arete.release import decode_release as _decode
from arete.topics import Topics
from maestro.releases import LocalRelease, ReleaseStore

log = logging.getLogger("arete.maestro.releases")

WINDOW: Final = 8  # chunks in flight: 2 MiB of memory at most
ACK_TIMEOUT_S: Final = 30.0
SETTLE_S: Final = 1.0  # after SUBACK, for the retained manifests to arrive
_OVERSIZE: Final = b"\0oversize"  # a manifest too large to be ours: cleared


@dataclass(frozen=True, slots=True)
class Connection:
    host: str
    port: int
    username: str
    password: str | None
    client_id: str
    tls: bool = False
    ca_file: str | None = None
    keepalive_s: int = 30


class _Interrupted(Exception):  # noqa: N818 - control flow inside this module only
    """The link went down or we are stopping: try the whole round again later."""


class ReleasePublisher:
    """Start with :meth:`start`, stop with :meth:`stop` (both blocking, quick)."""

    def __init__(
        self,
        store: ReleaseStore,
        topics: Topics,
        connection: Connection,
        *,
        scan_interval_s: float = 60.0,
    ) -> None:
        self.store = store
        self.topics = topics
        self.connection = connection
        self.scan_interval_s = scan_interval_s
        self.published_total = 0  # releases published (chunks and manifest)
        self.cleared_total = 0  # releases whose topics were cleared
        self.rounds = 0  # reconciliations completed
        self._broker: dict[str, bytes] = {}  # version -> retained manifest on the broker
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._connected = threading.Event()
        self._subscribed_at: float | None = None
        self._sub_mid: int | None = None
        self._refused_mids: set[int] = set()
        self._client = self._make_client()
        self._thread = threading.Thread(target=self._run, name="maestro-releases", daemon=True)

    # -- lifecycle -------------------------------------------------------------------
    def _make_client(self) -> mqtt.Client:
        c = self.connection
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=c.client_id, protocol=MQTTProtocolVersion.MQTTv5
        )
        client.username_pw_set(c.username, c.password)
        if c.tls:
            client.tls_set_context(ssl.create_default_context(cafile=c.ca_file))
        client.reconnect_delay_set(1, 30)
        client.max_inflight_messages_set(WINDOW * 2)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        return client

    def start(self) -> None:
        c = self.connection
        self._client.connect_async(c.host, c.port, keepalive=c.keepalive_s, clean_start=True)
        self._client.loop_start()
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(ACK_TIMEOUT_S + 5)
        with contextlib.suppress(Exception):
            self._client.disconnect()
        self._client.loop_stop()

    def set_password(self, password: str) -> None:
        """Use a rotated broker password: the connection is cut and paho reconnects at once
        with it (the next round publishes what the cut interrupted)."""
        self.connection = replace(self.connection, password=password)
        self._client.username_pw_set(self.connection.username, password)
        sock = self._client.socket()
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def wake(self) -> None:
        """Scan the store now rather than at the next interval."""
        self._wake.set()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def broker_versions(self) -> set[str]:
        """The versions whose manifest the broker holds (as last heard)."""
        with self._lock:
            return set(self._broker)

    # -- paho callbacks (network thread) ---------------------------------------------
    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any
    ) -> None:
        if reason.is_failure:
            log.error("release publisher: the broker refused the connection (%s)", reason)
            return
        with self._lock:
            self._broker.clear()  # the subscription below delivers them again
            self._subscribed_at = None
        result, mid = client.subscribe(self.topics.all_release_manifests(), qos=1)
        if result == MQTTErrorCode.MQTT_ERR_SUCCESS:
            self._sub_mid = mid
        self._connected.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, *rest: Any) -> None:
        self._connected.clear()
        with self._lock:
            self._subscribed_at = None

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, codes: list[ReasonCode], props: Any
    ) -> None:
        if mid != self._sub_mid:
            return
        if any(code.is_failure for code in codes):
            log.error("release publisher: cannot subscribe to release manifests (%s)", codes)
            return
        with self._lock:
            self._subscribed_at = time.monotonic()
        self._wake.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            where = self.topics.parse_release(message.topic)
        except TopicError:
            return
        if where.artifact is not None:
            return
        payload = bytes(message.payload)
        with self._lock:
            if not payload:
                self._broker.pop(where.version, None)
            else:
                self._broker[where.version] = (
                    payload if len(payload) <= MAX_RELEASE_BYTES else _OVERSIZE
                )

    def _on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, reason: ReasonCode, props: Any
    ) -> None:
        if reason.is_failure:
            self._refused_mids.add(mid)

    # -- the worker thread -----------------------------------------------------------
    def _run(self) -> None:
        try:
            self.store.scan()  # the API lists the releases before the broker link is up
        except Exception:  # a bug must not end the publisher
            log.exception("release publisher: first scan failed")
        while not self._stopping.is_set():
            self._wake.clear()
            if self._ready():
                try:
                    self.reconcile()
                    self.rounds += 1
                except _Interrupted:
                    self._wake.wait(1.0)
                    continue
                except Exception:  # a bug must not end the publisher: log, try next round
                    log.exception("release publisher: round failed")
                self._wake.wait(self.scan_interval_s)
            else:
                self._wake.wait(0.2)

    def _ready(self) -> bool:
        with self._lock:
            since = self._subscribed_at
        return (
            self._connected.is_set() and since is not None and time.monotonic() - since >= SETTLE_S
        )

    def reconcile(self) -> None:
        """One round: publish what the broker lacks, clear what the store lost."""
        valid = self.store.scan()
        with self._lock:
            broker = dict(self._broker)
        for version, release in sorted(valid.items()):
            if broker.get(version) == release.raw:
                self.store.mark_published(version)
                continue
            self._publish(release, broker.get(version))
        for version, raw in sorted(broker.items()):
            if version not in valid:
                self._clear(version, raw)

    def _publish(self, release: LocalRelease, old: bytes | None) -> None:
        manifest, version = release.manifest, release.manifest.version
        if old is not None:  # another release under this version: hide it first
            self._send(self.topics.release_manifest(version), b"")
        log.info("publishing release %s (%d artifacts)", version, len(manifest.artifacts))
        window: collections.deque[mqtt.MQTTMessageInfo] = collections.deque()
        for index, artifact in enumerate(manifest.artifacts):
            digest = hashlib.sha256()
            try:
                with release.artifact_path(index).open("rb") as handle:
                    for n in range(chunk_count(artifact.size)):
                        start, end = chunk_span(artifact.size, n)
                        data = handle.read(end - start)
                        digest.update(data)
                        if len(data) != end - start:
                            break
                        topic = self.topics.release_chunk(version, index, n)
                        window.append(self._publish_async(topic, data))
                        if len(window) >= WINDOW:
                            self._wait(window.popleft())
            except OSError as exc:
                digest.update(f"unreadable: {exc}".encode())
            if digest.hexdigest() != artifact.sha256:
                self.store.refuse(
                    version, ReleaseRefused("tampered", f"{artifact.name} changed on disk")
                )
                while window:
                    self._wait(window.popleft())
                self._clear_chunks(version, manifest)  # no manifest was published
                return
        while window:
            self._wait(window.popleft())
        self._send(self.topics.release_manifest(version), release.raw)
        if old is not None:
            self._clear_chunks(version, _manifest_of(old), keep=manifest)
        self.store.mark_published(version)
        self.published_total += 1
        log.info("release %s published", version)

    def _clear(self, version: str, raw: bytes) -> None:
        """Empty the release's topics: the manifest first, then the chunks it lists."""
        log.info("clearing release %s from the broker (not in the store, or refused)", version)
        self._send(self.topics.release_manifest(version), b"")
        manifest = _manifest_of(raw)
        if manifest is None:
            log.warning(
                "release %s: its manifest on the broker is unreadable; chunks kept", version
            )
        else:
            self._clear_chunks(version, manifest)
        self.store.mark_published(version, False)
        with self._lock:
            self._broker.pop(version, None)
        self.cleared_total += 1

    def _clear_chunks(
        self, version: str, old: ReleaseManifest | None, keep: ReleaseManifest | None = None
    ) -> None:
        if old is None:
            return
        kept = set()
        if keep is not None:
            kept = {
                (a, n)
                for a, artifact in enumerate(keep.artifacts)
                for n in range(chunk_count(artifact.size))
            }
        window: collections.deque[mqtt.MQTTMessageInfo] = collections.deque()
        for a, artifact in enumerate(old.artifacts):
            for n in range(chunk_count(artifact.size)):
                if (a, n) not in kept:
                    window.append(
                        self._publish_async(self.topics.release_chunk(version, a, n), b"")
                    )
                    if len(window) >= WINDOW * 4:
                        self._wait(window.popleft())
        while window:
            self._wait(window.popleft())

    # -- publishing ------------------------------------------------------------------
    def _publish_async(self, topic: str, payload: bytes) -> mqtt.MQTTMessageInfo:
        if self._stopping.is_set() or not self._connected.is_set():
            raise _Interrupted
        info = self._client.publish(topic, payload, qos=1, retain=True)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise _Interrupted
        return info

    def _wait(self, info: mqtt.MQTTMessageInfo) -> None:
        deadline = time.monotonic() + ACK_TIMEOUT_S
        while not info.is_published():
            if self._stopping.is_set() or not self._connected.is_set():
                raise _Interrupted
            if time.monotonic() > deadline:
                raise _Interrupted
            info.wait_for_publish(0.2)
        if info.mid in self._refused_mids:
            self._refused_mids.discard(info.mid)
            log.error("release publisher: the broker refused a publish (not authorised?)")
            raise _Interrupted

    def _send(self, topic: str, payload: bytes) -> None:
        self._wait(self._publish_async(topic, payload))


def _manifest_of(raw: bytes) -> ReleaseManifest | None:
    try:
        return _decode(raw).manifest
    except ReleaseRefused:
        return None
