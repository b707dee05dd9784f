"""Payload models of every topic, with their schema version, and their codecs.

msgspec is the codec: it validates while it decodes and is several times faster than
the standard library's ``json`` plus a validation layer (see ``bench/codec.py`` and
BENCHMARKS.md), which matters to a maestro decoding tens of thousands of messages a
second and to an agent that must stay light.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Final, TypeVar

import msgspec

from arete.errors import PayloadError

SCHEMA: Final = 1
"""Current payload schema version. Decoders accept this version only."""

# Size limits per kind: a payload over its limit is refused before it is parsed.
MAX_STATUS_BYTES: Final = 16 * 1024
MAX_METRICS_BYTES: Final = 4 * 1024 * 1024  # a replay batch carries many samples
MAX_HEARTBEAT_BYTES: Final = 1024
MAX_COMMAND_BYTES: Final = 64 * 1024
MAX_REPLY_BYTES: Final = 16 * 1024 * 1024  # screenshots ride in replies
MAX_MAESTRO_BYTES: Final = 4 * 1024
MAX_ALERTS_BYTES: Final = 256 * 1024
MAX_DIGEST_BYTES: Final = 8 * 1024 * 1024  # one entry per agent a replica heard from

# -- number bounds -------------------------------------------------------------------------
# Every number of the contract is bounded, so that no single message can carry a value
# the stores refuse (SQLite integers are signed 64-bit, InfluxDB timestamps are signed
# 64-bit nanoseconds, browsers hold integers exactly up to 2**53) or one that breaks
# the maestro's arithmetic (sums of rollups, the "latest" sample). JSON cannot spell NaN
# or infinities and msgspec refuses numbers that overflow a float, so bounded floats are
# finite. See "Number bounds" in docs/topics.md.
MAX_SAFE_INT: Final = 2**53 - 1
"""Counters, sequence numbers, epochs: exact in every JSON reader, browsers included."""
MAX_INT64: Final = 2**63 - 1
"""Byte counts: what a signed 64-bit SQLite integer holds."""
MAX_TS: Final = 4_102_444_800.0
"""2100-01-01T00:00:00Z: no clock reads more; inside InfluxDB's nanosecond range (2262)."""
MAX_RATE: Final = 1e15
"""Rates, durations and other non-negative floats (a petabyte a second)."""
MAX_READING: Final = 1e6
"""Magnitude of free readings (temperatures, load, watts): broken sensors still fit."""
MAX_FUTURE_S: Final = 86_400.0
"""A sample stamped more than this ahead of the receiver's clock is refused (1 day:
agents' clocks may be off by hours, and the offset is measured, not trusted)."""
MAX_PAST_S: Final = 366 * 86_400.0
"""A sample stamped more than this before the receiver's clock is refused (a year: far
beyond a full outbox replayed at the defaults, 7 days at 1 Hz, and beyond retention)."""

NonNegInt = Annotated[int, msgspec.Meta(ge=0, le=MAX_SAFE_INT)]
ByteCount = Annotated[int, msgspec.Meta(ge=0, le=MAX_INT64)]
NonNegFloat = Annotated[float, msgspec.Meta(ge=0, le=MAX_RATE)]
Timestamp = Annotated[float, msgspec.Meta(ge=0, le=MAX_TS)]
Reading = Annotated[float, msgspec.Meta(ge=-MAX_READING, le=MAX_READING)]
Percent = Annotated[float, msgspec.Meta(ge=0, le=100)]
ShortStr = Annotated[str, msgspec.Meta(max_length=256)]
# msgspec matches patterns with re.search, where "$" also matches before a final newline.
CommandId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}\Z")]


class AgentState(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"
    STOPPING = "stopping"


class ReplyState(StrEnum):
    ACCEPTED = "accepted"
    RUNNING = "running"
    OK = "ok"
    FAILED = "failed"
    REJECTED = "rejected"
    EXPIRED = "expired"

    @property
    def is_final(self) -> bool:
        return self not in (ReplyState.ACCEPTED, ReplyState.RUNNING)


class _Payload(msgspec.Struct, kw_only=True, frozen=True):
    """Base of every topic payload: always carries its ``schema`` version."""

    schema: int = SCHEMA


# -- status ------------------------------------------------------------------------------
class UpdatePhase(StrEnum):
    """The host updater's progress with one self-update (docs/updates.md)."""

    PENDING = "pending"  # handed over; the updater has not started on it yet
    INSTALLING = "installing"  # installing beside the current version
    SWITCHED = "switched"  # running the new version; waiting for it to prove healthy
    HEALTHY = "healthy"  # the new version proved healthy in time: the update is done
    ROLLED_BACK = "rolled_back"  # the previous version is back (``reason`` says why)
    FAILED = "failed"  # nothing was switched (``reason`` says why)


class UpdateState(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True):
    phase: UpdatePhase
    from_version: ShortStr
    to_version: ShortStr
    ts: Timestamp  # when the updater last changed ``phase``
    command_id: ShortStr | None = None
    reason: ShortStr | None = None


class Status(_Payload, kw_only=True, frozen=True):
    """Retained on ``status/<id>``; the agent's Last Will is one of these too."""

    state: AgentState
    epoch: NonNegInt
    ts: Timestamp
    version: ShortStr
    host: ShortStr
    labels: dict[ShortStr, ShortStr] = {}
    heartbeat_s: Annotated[float, msgspec.Meta(gt=0, le=86_400)]
    reason: ShortStr | None = None
    # The agent's state disk is full: its outbox keeps nothing more (docs/topics.md).
    disk_full: bool = False
    # Where the host's updater is with the last self-update (docs/updates.md).
    update: UpdateState | None = None


def is_stale(current: Status | None, incoming: Status) -> bool:
    """True when ``incoming`` belongs to an older connection than ``current``.

    A late Will (``offline`` with an older epoch) must never mark a reconnected agent
    offline; with equal epochs the incoming message is the newer word of the same
    connection (``online`` -> ``stopping`` -> ``offline``).
    """
    return current is not None and incoming.epoch < current.epoch


# -- metrics -----------------------------------------------------------------------------
class Mount(msgspec.Struct, frozen=True, omit_defaults=True):
    mount: ShortStr
    total: ByteCount
    used: ByteCount
    pct: Percent


class Gpu(msgspec.Struct, frozen=True, omit_defaults=True):
    index: NonNegInt
    name: ShortStr
    util: Percent | None = None
    mem_used: ByteCount | None = None
    mem_total: ByteCount | None = None
    temp: Reading | None = None  # degrees Celsius
    power_w: NonNegFloat | None = None


class Sample(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True):
    """One reading of a machine. Rates are per second over the last interval."""

    ts: Timestamp  # unix seconds when the sample was taken (kept through replay)
    seq: NonNegInt  # per-agent sample counter, grows across restarts
    cpu: Percent  # all cores
    cpus: list[Percent] = []  # per core
    load: tuple[Reading, Reading, Reading] | None = None
    mem: Percent
    mem_used: ByteCount = 0
    mem_total: ByteCount = 0
    swap: Percent = 0.0
    disk: Percent = 0.0  # the fullest mount
    mounts: list[Mount] = []
    disk_read_bps: NonNegFloat = 0.0
    disk_write_bps: NonNegFloat = 0.0
    disk_read_iops: NonNegFloat = 0.0
    disk_write_iops: NonNegFloat = 0.0
    net_rx_bps: NonNegFloat = 0.0
    net_tx_bps: NonNegFloat = 0.0
    uptime_s: NonNegFloat = 0.0
    procs: NonNegInt = 0
    temps: dict[ShortStr, Reading] | None = None  # degrees Celsius by sensor
    gpu: list[Gpu] | None = None


class Metrics(_Payload, kw_only=True, frozen=True):
    """On ``metrics/<id>``: one live sample, or a batch replayed from the outbox."""

    epoch: NonNegInt
    seq: NonNegInt  # seq of the first sample
    samples: Annotated[list[Sample], msgspec.Meta(min_length=1, max_length=10_000)]
    replay: bool = False
    dropped: NonNegInt = 0  # samples the agent could not keep (full outbox or disk) since install


def sample_time_fault(ts: float, now: float) -> str | None:
    """Why a sample stamped ``ts`` is refused by a receiver whose clock reads ``now``.

    ``"ts_future"`` past :data:`MAX_FUTURE_S` ahead, ``"ts_past"`` past :data:`MAX_PAST_S`
    behind, None when it is kept. The bounds are generous on purpose: a skewed agent
    clock is measured by the maestro (receive time beside each sample), not refused.
    """
    if ts > now + MAX_FUTURE_S:
        return "ts_future"
    if ts < now - MAX_PAST_S:
        return "ts_past"
    return None


class Heartbeat(_Payload, kw_only=True, frozen=True):
    """On ``heartbeat/<id>`` from the agent's main loop, every ``heartbeat_s`` seconds."""

    epoch: NonNegInt
    seq: NonNegInt  # seq of the newest sample taken
    ts: Timestamp


# -- commands ----------------------------------------------------------------------------
class Command(_Payload, kw_only=True, frozen=True):
    """On ``cmd/<id>``, published by the maestro only."""

    id: CommandId
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    args: dict[str, Any] = {}
    issued_at: Timestamp
    expires_at: Timestamp
    sig: Annotated[str, msgspec.Meta(max_length=256)] | None = None


class ErrorInfo(msgspec.Struct, frozen=True):
    code: ShortStr  # machine-readable, see docs/topics.md
    message: Annotated[str, msgspec.Meta(max_length=4096)]


class Reply(_Payload, kw_only=True, frozen=True):
    """On ``reply/<id>``: one per state change of a command."""

    id: CommandId | None  # None only when the command was too malformed to carry an id
    state: ReplyState
    ts: Timestamp
    result: Any = None
    error: ErrorInfo | None = None


# -- maestro -----------------------------------------------------------------------------
class MaestroState(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"


class MaestroStatus(_Payload, kw_only=True, frozen=True):
    """Retained on ``maestro/<replica>``; the replica's Last Will is one of these too."""

    replica: ShortStr
    state: MaestroState
    ts: Timestamp
    version: ShortStr = ""
    disk_full: bool = False  # the replica's data disk is full: its writes wait in memory


class PeerDigest(_Payload, kw_only=True, frozen=True):
    """On ``maestro/<replica>/seen``: which agents one replica heard from lately.

    Shared subscriptions split metrics and heartbeats between replicas, so each replica
    tells the others ``{agent_id: [epoch, unix seconds of the last contact]}``; every
    replica then judges liveness from all contacts, not only its share.
    """

    replica: ShortStr
    ts: Timestamp
    seen: dict[str, tuple[NonNegInt, Timestamp]] = {}


class AlertSeverity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class AlertPhase(StrEnum):
    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"


class ActiveAlert(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True):
    id: ShortStr
    rule: ShortStr
    severity: AlertSeverity
    phase: AlertPhase
    since: Timestamp  # unix seconds the alert entered its phase
    summary: Annotated[str, msgspec.Meta(max_length=1024)]
    value: Annotated[float, msgspec.Meta(ge=-MAX_RATE, le=MAX_RATE)] | None = None
    acked_by: ShortStr | None = None
    silenced_until: Timestamp | None = None


class AgentAlerts(_Payload, kw_only=True, frozen=True):
    """Retained on ``alerts/<id>``: the alerts of one agent that are not resolved."""

    agent: ShortStr
    ts: Timestamp
    alerts: list[ActiveAlert] = []


# -- codecs ------------------------------------------------------------------------------
_encoder = msgspec.json.Encoder()
_T = TypeVar("_T")
_decoders: dict[type[Any], msgspec.json.Decoder[Any]] = {}


def encode(payload: msgspec.Struct) -> bytes:
    """Encode any payload model (or sample) to compact JSON bytes."""
    return _encoder.encode(payload)


class _MetricsWire(msgspec.Struct, kw_only=True):
    """:class:`Metrics` with samples already encoded (the agent's outbox keeps bytes)."""

    schema: int = SCHEMA
    epoch: int
    seq: int
    samples: list[msgspec.Raw]
    replay: bool
    dropped: int


def encode_metrics(
    *, epoch: int, samples: list[bytes], replay: bool = False, first_seq: int, dropped: int = 0
) -> bytes:
    """Encode a :class:`Metrics` message from samples that are already JSON."""
    wire = _MetricsWire(
        epoch=epoch,
        seq=first_seq,
        samples=[msgspec.Raw(sample) for sample in samples],
        replay=replay,
        dropped=dropped,
    )
    return _encoder.encode(wire)


def to_builtins(value: Any) -> Any:
    """Plain dicts/lists for results that embed models."""
    return msgspec.to_builtins(value)


def decode(data: bytes | bytearray | memoryview, model: type[_T], *, max_bytes: int) -> _T:
    """Decode and validate ``data`` as ``model``; raise :class:`PayloadError` with a reason."""
    if len(data) > max_bytes:
        raise PayloadError(
            f"payload of {len(data)} bytes exceeds the {max_bytes}-byte limit", code="too_large"
        )
    decoder = _decoders.get(model)
    if decoder is None:
        decoder = _decoders[model] = msgspec.json.Decoder(model)
    try:
        value: _T = decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise PayloadError(f"invalid {model.__name__}: {exc}", code="schema") from None
    except msgspec.DecodeError as exc:
        raise PayloadError(f"undecodable {model.__name__}: {exc}", code="malformed") from None
    except RecursionError:  # "[[[[…" deeper than the interpreter's recursion limit
        raise PayloadError(f"{model.__name__} nested too deeply", code="malformed") from None
    schema = getattr(value, "schema", SCHEMA)
    if schema != SCHEMA:
        raise PayloadError(
            f"unsupported {model.__name__} schema {schema} (this build speaks {SCHEMA})",
            code="schema",
        )
    return value


def decode_status(data: bytes | bytearray | memoryview) -> Status:
    return decode(data, Status, max_bytes=MAX_STATUS_BYTES)


def decode_metrics(data: bytes | bytearray | memoryview) -> Metrics:
    return decode(data, Metrics, max_bytes=MAX_METRICS_BYTES)


def decode_heartbeat(data: bytes | bytearray | memoryview) -> Heartbeat:
    return decode(data, Heartbeat, max_bytes=MAX_HEARTBEAT_BYTES)


def decode_command(data: bytes | bytearray | memoryview) -> Command:
    return decode(data, Command, max_bytes=MAX_COMMAND_BYTES)


def decode_reply(data: bytes | bytearray | memoryview) -> Reply:
    return decode(data, Reply, max_bytes=MAX_REPLY_BYTES)


def decode_maestro_status(data: bytes | bytearray | memoryview) -> MaestroStatus:
    return decode(data, MaestroStatus, max_bytes=MAX_MAESTRO_BYTES)


def decode_peer_digest(data: bytes | bytearray | memoryview) -> PeerDigest:
    return decode(data, PeerDigest, max_bytes=MAX_DIGEST_BYTES)


def decode_agent_alerts(data: bytes | bytearray | memoryview) -> AgentAlerts:
    return decode(data, AgentAlerts, max_bytes=MAX_ALERTS_BYTES)
