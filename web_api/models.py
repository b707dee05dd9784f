"""Request and response models of the REST API (they make the OpenAPI document)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from arete.commands import VERSION_PATTERN, CommandName

AgentId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.-]+$")]
LabelText = Annotated[str, Field(max_length=256)]


class ErrorBody(BaseModel):
    error: str = Field(description="A short code: unauthorized, forbidden, not_found, ...")
    detail: str = Field(description="What went wrong, for a person.")


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- auth and users ------------------------------------------------------------------
class LoginRequest(_In):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class Me(BaseModel):
    user: str
    role: Literal["viewer", "operator", "admin"]
    must_change_password: bool = Field(
        False,
        description="The password was made for you (the first admin's): change it with"
        " POST /auth/password; until then everything else answers 403"
        " password_change_required.",
    )


class PasswordChange(_In):
    current_password: str = Field(min_length=1, max_length=1024)
    new_password: str = Field(min_length=8, max_length=1024)


class UserUpdate(_In):
    role: Literal["viewer", "operator", "admin"]


class UserPublic(BaseModel):
    name: str
    role: Literal["viewer", "operator", "admin"]
    created_at: float
    has_password: bool
    tokens: int


class UserCreate(_In):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]*$")
    role: Literal["viewer", "operator", "admin"]
    password: str | None = Field(None, min_length=8, max_length=1024)


class UserCreated(BaseModel):
    user: UserPublic
    token: str = Field(description="The new API token; shown this once, only its hash is kept.")


class TokenCreate(_In):
    label: str = Field("", max_length=200, description="What the token is for (printable).")


class TokenPublic(BaseModel):
    id: str = Field(description="The <id> of arete_<id>_<secret>: names the token, proves nothing.")
    label: str
    created_at: float
    last_used_at: float | None = Field(description="The last request it made (to the minute).")


class TokenCreated(TokenPublic):
    token: str = Field(description="The new API token; shown this once, only its hash is kept.")


# -- agents --------------------------------------------------------------------------
class UpdateStatePublic(BaseModel):
    phase: Literal["pending", "installing", "switched", "healthy", "rolled_back", "failed"]
    from_version: str
    to_version: str
    ts: float = Field(description="When the updater last changed phase (agent's clock).")
    command_id: str | None = None
    reason: str | None = None


class AgentPublic(BaseModel):
    id: str
    state: str = Field(description="online, late, critical, offline, stopped, unknown")
    epoch: int | None
    since: float | None
    reason: str | None
    clean: bool
    last_seen: float | None
    heartbeat_s: float | None
    host: str | None
    version: str | None
    labels: dict[str, str]
    metrics: dict[str, Any] | None = Field(description="The latest sample: ts, cpu, mem, ...")
    clock_offset_s: float | None = Field(
        None,
        description="The agent's clock minus the maestro's, in seconds, measured from live "
        "samples (positive: ahead); None before any sample. The clock_skew alert fires past "
        "its threshold (10 s).",
    )
    disk_full: bool = Field(
        False, description="The agent reports its state disk full (its outbox keeps nothing)."
    )
    alerts: int = Field(description="Pending and firing alerts of this agent.")
    update: UpdateStatePublic | None = Field(
        None,
        description="Its host updater's progress with the last self-update, as the agent"
        " reports it in its status (docs/updates.md); None when it never updated itself.",
    )


class SeriesPublic(BaseModel):
    min: list[float | None]
    avg: list[float | None]
    max: list[float | None]


class HistoryPublic(BaseModel):
    agent: str
    start: float
    end: float
    step: float
    source: Literal["raw", "rollup"]
    ts: list[float]
    series: dict[str, SeriesPublic]


# -- commands ------------------------------------------------------------------------
class CommandCreate(_In):
    name: CommandName
    args: dict[str, Any] = Field(default_factory=dict)
    timeout: float | None = Field(None, gt=0, le=3600, description="Seconds; a default per name.")


class CommandPublic(BaseModel):
    id: str
    agent: str
    name: str
    args: dict[str, Any]
    state: str = Field(
        description="queued, sent, accepted, running, ok, failed, timed_out, expired, rejected"
    )
    actor: str
    job_id: str | None
    timeout_s: float
    created_at: float
    expires_at: float
    updated_at: float
    sent_at: float | None
    accepted_at: float | None
    finished_at: float | None
    result: Any
    has_result: bool
    error_code: str | None
    error_message: str | None
    redacted: bool = Field(
        False,
        description="Arguments, result and error text are hidden: this command's output can"
        " carry secrets and only a role that may run it (admin) reads them.",
    )


class CommandEventPublic(BaseModel):
    ts: float
    state: str
    detail: str


# -- jobs ----------------------------------------------------------------------------
class JobCreate(_In):
    name: CommandName
    args: dict[str, Any] = Field(default_factory=dict)
    labels: dict[Annotated[str, Field(max_length=128)], LabelText] = Field(default_factory=dict)
    agents: list[AgentId] | None = Field(None, max_length=10_000)
    batch_size: int = Field(10, ge=1, le=1000)
    max_failures: int = Field(0, ge=0, le=100_000)
    timeout: float | None = Field(None, gt=0, le=3600)


class UpdateJobCreate(_In):
    """A fleet rollout of a release (docs/updates.md, "Fleet rollout")."""

    # The contract's pattern, anchored for the Rust regex engine (no \Z there).
    version: str = Field(
        pattern=VERSION_PATTERN.removesuffix(r"\Z") + "$", max_length=27, description="e.g. 0.2.0"
    )
    labels: dict[Annotated[str, Field(max_length=128)], LabelText] = Field(
        default_factory=dict, description="The selector: agents with every one of these labels."
    )
    agents: list[AgentId] | None = Field(None, max_length=10_000, description="Only these.")
    canary: int = Field(1, ge=0, le=1000, description="Agents updated alone first.")
    batch_size: int = Field(10, ge=1, le=1000)
    health_timeout_s: float = Field(
        180.0, ge=10, le=3600, description="Per agent, from its command to the health gate."
    )
    max_failures: int = Field(0, ge=0, le=100_000, description="More halts the rollout.")
    rollback_on_abort: bool = Field(
        True, description="On a halt or abort, send the agents it switched back."
    )
    health_deadline_s: float | None = Field(
        None, ge=10, le=3600, description="The agents' updaters' own deadline (default 120)."
    )


class RolloutAgentPublic(BaseModel):
    id: str
    batch: int | None = Field(description="0 is the canary; None: needed no command.")
    phase: Literal[
        "waiting",
        "sent",
        "installing",
        "switched",
        "healthy",
        "failed",
        "rolling_back",
        "rolled_back",
    ]
    reason: str | None
    from_version: str | None
    version: str | None = Field(description="As last seen.")
    command_id: str | None


class RolloutPublic(BaseModel):
    version: str
    stage: Literal["canary", "batches", "settling", "rolling_back", "ended"]
    batch: int = Field(description="The batch under way (0 is the canary).")
    batches: int
    canary: int
    health_timeout_s: float
    rollback_on_abort: bool
    phases: dict[str, int] = Field(description="How many agents are in each phase.")
    failures: int
    stop_reason: str | None
    agents: list[RolloutAgentPublic] | None = Field(
        None, description="Per agent (GET /jobs/{id} only)."
    )


class JobPublic(BaseModel):
    id: str
    kind: Literal["command", "update"] = Field(
        "command", description="update: a fleet rollout, see rollout."
    )
    rollout: RolloutPublic | None = None
    name: str
    args: dict[str, Any]
    state: Literal["running", "done", "stopped", "failed"] = Field(
        description="failed: a rollout halted by its abort threshold. A halted rollout may"
        " still be rolling back (rollout.stage) until finished_at is set."
    )
    total: int
    agents: list[str]
    counts: dict[str, int] = Field(description="How many of its commands are in each state.")
    failures: int
    batch_size: int
    max_failures: int
    timeout_s: float | None
    actor: str
    created_at: float
    finished_at: float | None
    stopped_reason: str | None
    redacted: bool = Field(False, description="Arguments hidden (see CommandPublic.redacted).")


# -- alerts --------------------------------------------------------------------------
class AlertPublic(BaseModel):
    id: str
    rule: str
    agent: str
    severity: str
    phase: Literal["pending", "firing", "resolved"]
    started_at: float
    since: float
    summary: str
    value: float | None
    fired_at: float | None
    resolved_at: float | None
    acked_by: str | None
    acked_at: float | None
    notified: str
    notified_at: float | None
    flaps: int


class SilencePublic(BaseModel):
    id: str
    agent: str | None
    rule: str | None
    starts_at: float
    ends_at: float
    created_by: str
    created_at: float
    reason: str
    ended_by: str | None
    ended_at: float | None


class AlertSilenceCreate(_In):
    duration_s: float = Field(gt=0, le=30 * 86400)


class SilenceCreate(_In):
    agent: AgentId | None = None
    rule: str | None = Field(None, min_length=1, max_length=128)
    duration_s: float = Field(gt=0, le=30 * 86400)
    reason: str = Field("", max_length=1000)


# -- audit and health ----------------------------------------------------------------
class AuditPublic(BaseModel):
    id: int
    ts: float
    actor: str
    action: str
    target: str
    detail: dict[str, Any]


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, bool] = Field(default_factory=dict)


# -- alert rules, notifiers, job abort -------------------------------------------------
class RulePublic(BaseModel):
    name: str
    kind: Literal["state", "metric", "condition"] = Field(
        description="state: an agent's liveness; metric: a sampled value against a"
        " threshold; condition: reported by the maestro."
    )
    builtin: bool
    enabled: bool
    severity: str
    for_s: float = Field(description="How long the condition holds before it fires.")
    clear_for_s: float = Field(description="How long it stays clear before it resolves.")
    field: str | None = Field(None, description="Metric rules: the sampled field.")
    op: str | None = None
    threshold: float | None = None
    labels: dict[str, str] = Field(description="Only agents whose labels include these.")
    states: list[str] = Field(default_factory=list, description="State rules: these fire.")
    scope: Literal["agent", "maestro"]
    summary: str


class NotifierPublic(BaseModel):
    channel: str = Field(description="telegram:<chat id> or discord.")
    kind: str
    status: Literal["ok", "retrying", "failing"]
    queued: int = Field(description="Notifications waiting for this channel.")
    oldest_queued_at: float | None
    last_sent_at: float | None
    last_failed_at: float | None = Field(description="Last one that failed for good.")
    last_error: str | None
    sent: int = Field(description="Delivered since the maestro started.")
    failed: int
    retried: int


class NotifiersPublic(BaseModel):
    configured: bool = Field(description="Whether any channel is configured.")
    channels: list[NotifierPublic]
