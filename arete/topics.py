"""Topic builder and parser: the only place where Areté topic strings are made.

Every topic has the shape ``<root>/<kind>/<agent_id>[/...]`` so that Mosquitto ACL
patterns with ``%u`` (agent id == MQTT username) confine each agent to its own topics.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from arete.errors import TopicError

DEFAULT_ROOT: Final = "arete"

# Agent ids double as MQTT usernames and topic levels: no wildcards, no slashes,
# nothing a shell or a filename would trip over.
_AGENT_ID_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_ROOT_RE: Final = re.compile(r"^[A-Za-z0-9_.-]{1,64}(/[A-Za-z0-9_.-]{1,64}){0,3}$")
_SESSION_RE: Final = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

# Broker accounts that are not agents. Mosquitto applies ``pattern`` ACL lines to every
# user, so an agent with one of these names would share the account's rights.
# Third level of a replica's digest topic, ``<root>/maestro/<replica>/seen``.
SEEN: Final = "seen"

# Levels under ``<root>/release/<version>/`` (arete.release, docs/updates.md).
RELEASE_MANIFEST: Final = "manifest"
RELEASE_CHUNK: Final = "chunk"
# A release version as a topic level: arete.commands.VERSION_PATTERN (not imported: the
# topic module depends on nothing but its errors).
_VERSION_RE: Final = re.compile(r"^[0-9]{1,6}(\.[0-9]{1,6}){0,3}\Z")
_INDEX_RE: Final = re.compile(r"^(0|[1-9][0-9]{0,5})\Z")

SHARED_PREFIX: Final = "$share/"

RESERVED_IDS: Final = frozenset({"maestro", "viewer", "admin", "root", "all"})

# Mosquitto's own count of the messages it dropped because a client's queue was full
# (``max_queued_messages``), since the broker started; retained, republished on change
# every ``sys_interval``. Outside every root: ``#`` filters and ACL lines never match
# ``$`` topics, so the ACL names it for the maestro alone.
BROKER_DROPPED: Final = "$SYS/broker/publish/messages/dropped"


class Kind(StrEnum):
    """The second level of every topic."""

    STATUS = "status"
    METRICS = "metrics"
    HEARTBEAT = "heartbeat"
    CMD = "cmd"
    REPLY = "reply"
    TERM = "term"
    ALERTS = "alerts"
    MAESTRO = "maestro"
    STORED = "stored"  # the maestro's end-to-end acknowledgement to one agent
    RELEASE = "release"  # signed releases: <root>/release/<version>/... (not per agent)


class TermDirection(StrEnum):
    IN = "in"  # browser -> agent
    OUT = "out"  # agent -> browser


def validate_agent_id(agent_id: str) -> str:
    """Return ``agent_id`` if it is a valid agent id, else raise :class:`TopicError`."""
    if not isinstance(agent_id, str) or not _AGENT_ID_RE.fullmatch(agent_id):
        raise TopicError(
            f"invalid agent id {agent_id!r}: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    if agent_id.lower() in RESERVED_IDS:
        raise TopicError(f"agent id {agent_id!r} is reserved for a broker account")
    return agent_id


def validate_root(root: str) -> str:
    if not isinstance(root, str) or not _ROOT_RE.fullmatch(root):
        raise TopicError(
            f"invalid topic root {root!r}: 1-4 levels of letters, digits, '.', '_' or '-'"
        )
    return root


@dataclass(frozen=True, slots=True)
class ParsedTopic:
    """What a concrete topic says: its kind, the agent (or replica) and extra levels."""

    kind: Kind
    agent_id: str
    session: str | None = None
    direction: TermDirection | None = None
    digest: bool = False  # ``maestro/<replica>/seen`` rather than ``maestro/<replica>``


@dataclass(frozen=True, slots=True)
class ReleaseTopic:
    """What a release topic says: the version, and for a chunk its artifact and index."""

    version: str
    artifact: int | None = None  # None: the manifest
    chunk: int | None = None


@dataclass(frozen=True, slots=True)
class Topics:
    """Topic builder/parser bound to one root (default ``arete``)."""

    root: str = DEFAULT_ROOT

    def __post_init__(self) -> None:
        validate_root(self.root)

    # -- concrete topics -------------------------------------------------------------
    def status(self, agent_id: str) -> str:
        return self._agent_topic(Kind.STATUS, agent_id)

    def metrics(self, agent_id: str) -> str:
        return self._agent_topic(Kind.METRICS, agent_id)

    def heartbeat(self, agent_id: str) -> str:
        return self._agent_topic(Kind.HEARTBEAT, agent_id)

    def cmd(self, agent_id: str) -> str:
        return self._agent_topic(Kind.CMD, agent_id)

    def reply(self, agent_id: str) -> str:
        return self._agent_topic(Kind.REPLY, agent_id)

    def alerts(self, agent_id: str) -> str:
        return self._agent_topic(Kind.ALERTS, agent_id)

    def stored(self, agent_id: str) -> str:
        """Where the maestro confirms which of the agent's samples it stored."""
        return self._agent_topic(Kind.STORED, agent_id)

    def maestro(self, replica: str) -> str:
        return f"{self.root}/{Kind.MAESTRO}/{validate_agent_id_or_replica(replica)}"

    def maestro_seen(self, replica: str) -> str:
        """Where a replica publishes its :class:`~arete.payloads.PeerDigest`."""
        return f"{self.maestro(replica)}/{SEEN}"

    def term(self, agent_id: str, session: str, direction: TermDirection) -> str:
        if not _SESSION_RE.fullmatch(session):
            raise TopicError(f"invalid terminal session id {session!r}")
        try:
            way = TermDirection(direction)
        except ValueError:
            raise TopicError(f"invalid terminal direction {direction!r}") from None
        return f"{self._agent_topic(Kind.TERM, agent_id)}/{session}/{way}"

    def release_manifest(self, version: str) -> str:
        """Where the maestro keeps a signed release (retained): ``<root>/release/<v>/manifest``."""
        return f"{self._release(version)}/{RELEASE_MANIFEST}"

    def release_chunk(self, version: str, artifact: int, chunk: int) -> str:
        """Chunk ``chunk`` of artifact ``artifact`` (its index in the manifest), retained."""
        for name, index in (("artifact", artifact), ("chunk", chunk)):
            if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < 10**6:
                raise TopicError(f"invalid release {name} index {index!r}")
        return f"{self._release(version)}/{RELEASE_CHUNK}/{artifact}/{chunk}"

    # -- filters ---------------------------------------------------------------------
    def all_of(self, kind: Kind) -> str:
        """Subscription filter for one kind across the fleet, e.g. ``arete/status/+``."""
        try:
            kind = Kind(kind)
        except ValueError:
            raise TopicError(f"unknown topic kind {kind!r}") from None
        if kind is Kind.RELEASE:
            raise TopicError("release topics are not per agent: use all_releases()")
        suffix = "/+/+" if kind is Kind.TERM else ""
        return f"{self.root}/{kind}/+{suffix}"

    def all_maestro_seen(self) -> str:
        """Subscription filter for every replica's digest, ``<root>/maestro/+/seen``."""
        return f"{self.root}/{Kind.MAESTRO}/+/{SEEN}"

    def release_filter(self, version: str) -> str:
        """Every topic of one release: ``<root>/release/<version>/#``."""
        return f"{self._release(version)}/#"

    def all_release_manifests(self) -> str:
        """Every release's manifest, ``<root>/release/+/manifest`` (not the chunks)."""
        return f"{self.root}/{Kind.RELEASE}/+/{RELEASE_MANIFEST}"

    def all_releases(self) -> str:
        """Every release topic, ``<root>/release/#`` (ACL lines, the store's cleanup)."""
        return f"{self.root}/{Kind.RELEASE}/#"

    def everything(self) -> str:
        return f"{self.root}/#"

    @staticmethod
    def is_shared(topic_filter: str) -> bool:
        """Whether a subscription filter is an MQTT 5 shared subscription."""
        return topic_filter.startswith(SHARED_PREFIX)

    def shared(self, group: str, kind: Kind) -> str:
        """MQTT 5 shared subscription so replicas split one kind's messages."""
        if not _SESSION_RE.fullmatch(group):
            raise TopicError(f"invalid shared-subscription group {group!r}")
        return f"{SHARED_PREFIX}{group}/{self.all_of(kind)}"

    def term_filter(self, agent_id: str, direction: TermDirection) -> str:
        return f"{self._agent_topic(Kind.TERM, agent_id)}/+/{TermDirection(direction)}"

    def acl_pattern(self, kind: Kind, *, suffix: str = "") -> str:
        """Mosquitto ACL pattern for an agent's own topic of ``kind`` (``%u`` = username)."""
        return f"{self.root}/{Kind(kind)}/%u{suffix}"

    def acl_kind(self, kind: Kind) -> str:
        """Mosquitto ACL topic for every agent's topic of ``kind``."""
        return f"{self.root}/{Kind(kind)}/#"

    # -- parsing ---------------------------------------------------------------------
    def parse(self, topic: str) -> ParsedTopic:
        """Parse a concrete topic under this root; raise :class:`TopicError` otherwise."""
        prefix = self.root + "/"
        if not topic.startswith(prefix):
            raise TopicError(f"topic {topic!r} is not under root {self.root!r}")
        parts = topic[len(prefix) :].split("/")
        try:
            kind = Kind(parts[0])
        except ValueError:
            raise TopicError(f"unknown topic kind in {topic!r}") from None
        if kind is Kind.RELEASE:
            raise TopicError(f"release topic {topic!r}: parse it with parse_release()")
        if kind is Kind.TERM:
            if len(parts) != 4:
                raise TopicError(f"terminal topic {topic!r} must be term/<id>/<session>/<dir>")
            if not _SESSION_RE.fullmatch(parts[2]):
                raise TopicError(f"invalid terminal session in {topic!r}")
            try:
                direction = TermDirection(parts[3])
            except ValueError:
                raise TopicError(f"invalid terminal direction in {topic!r}") from None
            return ParsedTopic(kind, validate_agent_id(parts[1]), parts[2], direction)
        if kind is Kind.MAESTRO and len(parts) == 3 and parts[2] == SEEN:
            return ParsedTopic(kind, validate_agent_id_or_replica(parts[1]), digest=True)
        if len(parts) != 2:
            raise TopicError(f"topic {topic!r} must be <root>/{kind}/<id>")
        if kind is Kind.MAESTRO:
            return ParsedTopic(kind, validate_agent_id_or_replica(parts[1]))
        return ParsedTopic(kind, validate_agent_id(parts[1]))

    def parse_release(self, topic: str) -> ReleaseTopic:
        """Parse ``<root>/release/<v>/manifest`` or ``<root>/release/<v>/chunk/<a>/<n>``."""
        prefix = f"{self.root}/{Kind.RELEASE}/"
        if not topic.startswith(prefix):
            raise TopicError(f"topic {topic!r} is not a release topic under {self.root!r}")
        parts = topic[len(prefix) :].split("/")
        if not _VERSION_RE.match(parts[0]):
            raise TopicError(f"invalid release version in {topic!r}")
        if parts[1:] == [RELEASE_MANIFEST]:
            return ReleaseTopic(parts[0])
        if (
            len(parts) == 4
            and parts[1] == RELEASE_CHUNK
            and _INDEX_RE.match(parts[2])
            and _INDEX_RE.match(parts[3])
        ):
            return ReleaseTopic(parts[0], int(parts[2]), int(parts[3]))
        raise TopicError(
            f"release topic {topic!r} must be release/<version>/manifest"
            " or release/<version>/chunk/<artifact>/<n>"
        )

    def _release(self, version: str) -> str:
        if not isinstance(version, str) or not _VERSION_RE.match(version):
            raise TopicError(f"invalid release version {version!r}: 1-4 dot-separated numbers")
        return f"{self.root}/{Kind.RELEASE}/{version}"

    def _agent_topic(self, kind: Kind, agent_id: str) -> str:
        return f"{self.root}/{kind}/{validate_agent_id(agent_id)}"


def validate_agent_id_or_replica(name: str) -> str:
    """Maestro replica names follow the agent-id rules but may use reserved words."""
    if not isinstance(name, str) or not _AGENT_ID_RE.fullmatch(name):
        raise TopicError(f"invalid replica name {name!r}")
    return name
