"""The contract package: topics, payloads, command arguments, signing, and docs/topics.md."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import msgspec
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from hypothesis import given
from hypothesis import strategies as st

from arete import commands as cmds
from arete import payloads as pl
from arete import stored
from arete.commands import (
    ARG_MODELS,
    DEFAULT_TIMEOUT_S,
    CommandName,
    DockerPsArgs,
    DockerRestartArgs,
    DockerUpdateArgs,
    MetricsArgs,
    RestartArgs,
    ScreenshotArgs,
    ShellArgs,
    StopArgs,
    UpdateArgs,
    command_name,
    parse_args,
)
from arete.errors import (
    AreteError,
    CommandArgsError,
    PayloadError,
    TopicError,
    UnknownCommandError,
)
from arete.payloads import (
    MAX_SAFE_INT,
    MAX_TS,
    SCHEMA,
    AgentState,
    Command,
    ErrorInfo,
    Gpu,
    Heartbeat,
    Metrics,
    Mount,
    Reply,
    ReplyState,
    Sample,
    Status,
    decode_command,
    decode_heartbeat,
    decode_metrics,
    decode_reply,
    decode_status,
    encode,
    encode_metrics,
    is_stale,
)
from arete.signing import SIGNING_CONTEXT, signing_bytes
from arete.topics import (
    DEFAULT_ROOT,
    RESERVED_IDS,
    Kind,
    TermDirection,
    Topics,
    validate_agent_id,
    validate_root,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "topics.md"
NOW = 1_764_050_000.0
KiB = 1024
MiB = 1024 * KiB

agent_ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", fullmatch=True).filter(
    lambda name: name.lower() not in RESERVED_IDS
)
roots = st.lists(
    st.from_regex(r"[A-Za-z0-9_.-]{1,64}", fullmatch=True), min_size=1, max_size=4
).map("/".join)
sessions = st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True)
AGENT_KINDS = [Kind.STATUS, Kind.METRICS, Kind.HEARTBEAT, Kind.CMD, Kind.REPLY, Kind.ALERTS]


# -- topics ------------------------------------------------------------------------------
def build(topics: Topics, kind: Kind, agent_id: str) -> str:
    builders = {
        Kind.STATUS: topics.status,
        Kind.METRICS: topics.metrics,
        Kind.HEARTBEAT: topics.heartbeat,
        Kind.CMD: topics.cmd,
        Kind.REPLY: topics.reply,
        Kind.ALERTS: topics.alerts,
    }
    return builders[kind](agent_id)


def test_default_root_is_arete() -> None:
    assert DEFAULT_ROOT == "arete"
    assert Topics().status("build-01") == "arete/status/build-01"
    assert Topics().cmd("build-01") == "arete/cmd/build-01"


@given(root=roots, agent_id=agent_ids, kind=st.sampled_from(AGENT_KINDS))
def test_agent_topic_round_trips_through_parse(root: str, agent_id: str, kind: Kind) -> None:
    topics = Topics(root)
    topic = build(topics, kind, agent_id)
    assert topic == f"{root}/{kind.value}/{agent_id}"
    parsed = topics.parse(topic)
    assert (parsed.kind, parsed.agent_id, parsed.session, parsed.direction) == (
        kind,
        agent_id,
        None,
        None,
    )


@given(agent_id=agent_ids, session=sessions, direction=st.sampled_from(list(TermDirection)))
def test_term_topic_round_trips_through_parse(
    agent_id: str, session: str, direction: TermDirection
) -> None:
    topics = Topics()
    topic = topics.term(agent_id, session, direction)
    assert topic == f"arete/term/{agent_id}/{session}/{direction.value}"
    parsed = topics.parse(topic)
    assert (parsed.kind, parsed.agent_id, parsed.session, parsed.direction) == (
        Kind.TERM,
        agent_id,
        session,
        direction,
    )


def test_maestro_topic_allows_reserved_words_as_replica_names() -> None:
    topics = Topics()
    assert topics.maestro("maestro") == "arete/maestro/maestro"
    parsed = topics.parse("arete/maestro/maestro")
    assert (parsed.kind, parsed.agent_id) == (Kind.MAESTRO, "maestro")
    with pytest.raises(TopicError):
        topics.maestro("a/b")


INVALID_IDS = [
    "",
    "a/b",
    "/a",
    "a+",
    "+",
    "#",
    "a#",
    "a b",
    "-a",
    ".a",
    "_a",
    "a\n",
    "a\x00",
    "é",
    "x" * 65,
    "$SYS",
    *sorted(RESERVED_IDS),
    "Maestro",
    "VIEWER",
]


@pytest.mark.parametrize("agent_id", INVALID_IDS)
def test_invalid_agent_id_raises_topic_error_everywhere(agent_id: str) -> None:
    topics = Topics()
    with pytest.raises(TopicError):
        validate_agent_id(agent_id)
    for kind in AGENT_KINDS:
        with pytest.raises(TopicError):
            build(topics, kind, agent_id)
    with pytest.raises(TopicError):
        topics.term(agent_id, "s1", TermDirection.OUT)
    if "/" not in agent_id:
        with pytest.raises(TopicError):
            topics.parse(f"arete/status/{agent_id}")


def test_non_string_agent_id_raises_topic_error() -> None:
    with pytest.raises(TopicError):
        validate_agent_id(42)  # type: ignore[arg-type]  # the check is for untyped callers


def test_longest_valid_agent_id_is_64_characters() -> None:
    assert validate_agent_id("x" * 64) == "x" * 64


def test_topic_error_is_an_arete_error_and_a_value_error() -> None:
    with pytest.raises(AreteError):
        validate_agent_id("a/b")
    with pytest.raises(ValueError, match="invalid agent id"):
        validate_agent_id("a/b")


@pytest.mark.parametrize(
    "root", ["arete", "lab", "acme/eu-west", "a.b_c-1", "a/b/c/d", "x" * 64, "ARETE"]
)
def test_valid_roots_are_accepted(root: str) -> None:
    assert validate_root(root) == root
    assert Topics(root).root == root


@pytest.mark.parametrize(
    "root",
    ["", "/arete", "arete/", "a//b", "a/+", "#", "a/#", "a/b/c/d/e", "x" * 65, "$SYS", "a b"],
)
def test_invalid_roots_are_refused(root: str) -> None:
    with pytest.raises(TopicError):
        validate_root(root)
    with pytest.raises(TopicError):
        Topics(root)


def test_filters_cover_one_kind_or_everything() -> None:
    topics = Topics()
    assert topics.all_of(Kind.STATUS) == "arete/status/+"
    assert topics.all_of(Kind.MAESTRO) == "arete/maestro/+"
    assert topics.all_of(Kind.TERM) == "arete/term/+/+/+"
    assert topics.everything() == "arete/#"
    assert topics.term_filter("a1", TermDirection.IN) == "arete/term/a1/+/in"


def test_shared_subscription_filter_splits_one_kind_between_replicas() -> None:
    assert Topics().shared("maestro", Kind.METRICS) == "$share/maestro/arete/metrics/+"
    assert Topics("acme/eu").shared("g1", Kind.STATUS) == "$share/g1/acme/eu/status/+"


@pytest.mark.parametrize("group", ["", "a/b", "a+", "#", "a b"])
def test_shared_subscription_refuses_bad_group_names(group: str) -> None:
    with pytest.raises(TopicError):
        Topics().shared(group, Kind.METRICS)


def test_acl_patterns_use_the_username_placeholder() -> None:
    topics = Topics()
    assert topics.acl_pattern(Kind.STATUS) == "arete/status/%u"
    assert topics.acl_pattern(Kind.TERM, suffix="/+/out") == "arete/term/%u/+/out"
    assert topics.acl_kind(Kind.CMD) == "arete/cmd/#"


@pytest.mark.parametrize(
    "topic",
    [
        "other/status/a1",
        "aretex/status/a1",
        "arete",
        "arete/",
        "/arete/status/a1",
        "arete/status",
        "arete/status/",
        "arete/bogus/a1",
        "arete/STATUS/a1",
        "arete/status/a1/extra",
        "arete/cmd/a1/",
        "arete/status/+",
        "arete/status/#",
        "arete/maestro/r1/x",
        "arete/term/a1",
        "arete/term/a1/s1",
        "arete/term/a1/s1/sideways",
        "arete/term/a1/bad session/in",
        "arete/term/a1/s1/in/more",
    ],
)
def test_parse_refuses_topics_outside_the_contract(topic: str) -> None:
    with pytest.raises(TopicError):
        Topics().parse(topic)


def test_parse_refuses_topics_of_another_root() -> None:
    with pytest.raises(TopicError, match="not under root"):
        Topics("acme/eu").parse("acme/us/status/a1")
    assert Topics("acme/eu").parse("acme/eu/status/a1").agent_id == "a1"


# -- payloads: round trips ---------------------------------------------------------------
def status(**overrides: Any) -> Status:
    fields: dict[str, Any] = {
        "state": AgentState.ONLINE,
        "epoch": 1_764_049_990_123,
        "ts": NOW,
        "version": "0.1.0",
        "host": "build-01",
        "labels": {"site": "lyon"},
        "heartbeat_s": 10.0,
    }
    fields.update(overrides)
    return Status(**fields)


FULL_SAMPLE = Sample(
    ts=NOW,
    seq=7,
    cpu=12.5,
    cpus=[20.0, 5.0],
    load=(0.5, 0.25, 0.125),
    mem=41.5,
    mem_used=6_930_000_000,
    mem_total=16_780_000_000,
    swap=1.5,
    disk=63.5,
    mounts=[Mount("/", 250_000_000_000, 157_750_000_000, 63.5)],
    disk_read_bps=1.5,
    disk_write_bps=184_320.0,
    disk_read_iops=2.0,
    disk_write_iops=12.0,
    net_rx_bps=20_480.5,
    net_tx_bps=8_192.0,
    uptime_s=86_400.0,
    procs=312,
    temps={"coretemp/Package id 0": 48.0},
    gpu=[
        Gpu(index=0, name="RTX", util=3.0, mem_used=1, mem_total=2, temp=41.0, power_w=17.5),
        Gpu(index=1, name="bare"),
    ],
)
MINIMAL_SAMPLE = Sample(ts=NOW, seq=8, cpu=0.0, mem=0.0)

ROUND_TRIPS: list[tuple[msgspec.Struct, Any]] = [
    (status(), decode_status),
    (status(state=AgentState.OFFLINE, reason="connection_lost"), decode_status),
    (status(state=AgentState.STOPPING, labels={}, reason="shutdown"), decode_status),
    (Metrics(epoch=3, seq=7, samples=[FULL_SAMPLE]), decode_metrics),
    (
        Metrics(epoch=3, seq=7, samples=[FULL_SAMPLE, MINIMAL_SAMPLE], replay=True, dropped=9),
        decode_metrics,
    ),
    (Heartbeat(epoch=3, seq=7, ts=NOW), decode_heartbeat),
    (
        Command(id="c-1", name="shell", args={"argv": ["uptime"]}, issued_at=NOW, expires_at=NOW),
        decode_command,
    ),
    (
        Command(id="a:b.c_d-e", name="metrics", issued_at=NOW, expires_at=NOW + 1, sig="AAAA"),
        decode_command,
    ),
    (Reply(id="c-1", state=ReplyState.ACCEPTED, ts=NOW), decode_reply),
    (Reply(id="c-1", state=ReplyState.OK, ts=NOW, result={"message": "done"}), decode_reply),
    (
        Reply(
            id="c-1",
            state=ReplyState.FAILED,
            ts=NOW,
            result={"exit_code": 2},
            error=ErrorInfo("exit_status", "exit status 2"),
        ),
        decode_reply,
    ),
    (
        Reply(id=None, state=ReplyState.REJECTED, ts=NOW, error=ErrorInfo("malformed", "x")),
        decode_reply,
    ),
]


@pytest.mark.parametrize(("payload", "decoder"), ROUND_TRIPS)
def test_every_payload_model_round_trips(payload: msgspec.Struct, decoder: Any) -> None:
    data = encode(payload)
    assert json.loads(data)["schema"] == SCHEMA
    assert decoder(data) == payload


@given(
    epoch=st.integers(min_value=0, max_value=MAX_SAFE_INT),
    seq=st.integers(min_value=0, max_value=MAX_SAFE_INT),
    ts=st.floats(min_value=0, max_value=MAX_TS, allow_nan=False),
)
def test_heartbeat_round_trips_for_any_valid_numbers(epoch: int, seq: int, ts: float) -> None:
    beat = Heartbeat(epoch=epoch, seq=seq, ts=ts)
    assert decode_heartbeat(encode(beat)) == beat


def test_encode_metrics_matches_the_metrics_model() -> None:
    samples = [FULL_SAMPLE, MINIMAL_SAMPLE]
    data = encode_metrics(
        epoch=3, samples=[encode(s) for s in samples], first_seq=7, replay=True, dropped=2
    )
    assert decode_metrics(data) == Metrics(epoch=3, seq=7, samples=samples, replay=True, dropped=2)


def test_decoders_ignore_unknown_fields() -> None:
    document = json.loads(encode(status()))
    document["added_in_a_later_release"] = {"x": 1}
    assert decode_status(json.dumps(document).encode()) == status()


def test_payload_without_schema_is_read_as_the_current_version() -> None:
    document = json.loads(encode(Heartbeat(epoch=1, seq=1, ts=NOW)))
    del document["schema"]
    assert decode_heartbeat(json.dumps(document).encode()).schema == SCHEMA


def test_reply_states_final_or_not() -> None:
    final = {state for state in ReplyState if state.is_final}
    assert final == {ReplyState.OK, ReplyState.FAILED, ReplyState.REJECTED, ReplyState.EXPIRED}


# -- payloads: refusals ------------------------------------------------------------------
LIMITS = [
    (decode_status, pl.MAX_STATUS_BYTES),
    (decode_metrics, pl.MAX_METRICS_BYTES),
    (decode_heartbeat, pl.MAX_HEARTBEAT_BYTES),
    (decode_command, pl.MAX_COMMAND_BYTES),
    (decode_reply, pl.MAX_REPLY_BYTES),
]


@pytest.mark.parametrize(("decoder", "limit"), LIMITS)
def test_oversized_payload_is_refused_before_parsing(decoder: Any, limit: int) -> None:
    with pytest.raises(PayloadError) as caught:
        decoder(b" " * (limit + 1))
    assert caught.value.code == "too_large"


def test_payload_exactly_at_the_limit_is_parsed() -> None:
    data = encode(Heartbeat(epoch=1, seq=1, ts=NOW))
    padded = data + b" " * (pl.MAX_HEARTBEAT_BYTES - len(data))
    assert decode_heartbeat(padded).epoch == 1


@pytest.mark.parametrize(("payload", "decoder"), ROUND_TRIPS)
@pytest.mark.parametrize("schema", [0, 2, SCHEMA + 100])
def test_other_schema_versions_are_refused(
    payload: msgspec.Struct, decoder: Any, schema: int
) -> None:
    document = json.loads(encode(payload))
    document["schema"] = schema
    with pytest.raises(PayloadError) as caught:
        decoder(json.dumps(document).encode())
    assert caught.value.code == "schema"


@pytest.mark.parametrize("data", [b"", b"{", b"not json", b'{"schema":1,', b"\xff\xfe"])
@pytest.mark.parametrize("decoder", [decoder for decoder, _ in LIMITS])
def test_malformed_json_is_refused_as_malformed(decoder: Any, data: bytes) -> None:
    with pytest.raises(PayloadError) as caught:
        decoder(data)
    assert caught.value.code == "malformed"


def replace(payload: msgspec.Struct, **changes: Any) -> bytes:
    document = json.loads(encode(payload))
    document.update(changes)
    return json.dumps(document).encode()


HEARTBEAT = Heartbeat(epoch=1, seq=1, ts=NOW)
METRICS = Metrics(epoch=1, seq=7, samples=[FULL_SAMPLE])
COMMAND = Command(id="c-1", name="metrics", issued_at=NOW, expires_at=NOW + 60)
REPLY = Reply(id="c-1", state=ReplyState.OK, ts=NOW)
SAMPLE_JSON = json.loads(encode(FULL_SAMPLE))


def with_sample(**changes: Any) -> bytes:
    return replace(METRICS, samples=[{**SAMPLE_JSON, **changes}])


SCHEMA_VIOLATIONS = [
    ("array instead of object", decode_status, b"[]"),
    ("null instead of object", decode_heartbeat, b"null"),
    ("unknown state", decode_status, replace(status(), state="sleeping")),
    ("epoch as string", decode_status, replace(status(), epoch="1")),
    ("negative epoch", decode_status, replace(status(), epoch=-1)),
    ("negative ts", decode_status, replace(status(), ts=-0.5)),
    ("zero heartbeat period", decode_status, replace(status(), heartbeat_s=0)),
    ("label value not a string", decode_status, replace(status(), labels={"a": 1})),
    ("host too long", decode_status, replace(status(), host="h" * 257)),
    ("missing state", decode_status, b'{"schema":1,"epoch":1,"ts":1,"version":"v","host":"h"}'),
    ("negative heartbeat seq", decode_heartbeat, replace(HEARTBEAT, seq=-1)),
    ("bool as epoch", decode_heartbeat, replace(HEARTBEAT, epoch=True)),
    ("no samples", decode_metrics, replace(METRICS, samples=[])),
    ("negative dropped", decode_metrics, replace(METRICS, dropped=-1)),
    ("negative message seq", decode_metrics, replace(METRICS, seq=-1)),
    ("replay as string", decode_metrics, replace(METRICS, replay="yes")),
    ("cpu below 0", decode_metrics, with_sample(cpu=-1.0)),
    ("cpu above 100", decode_metrics, with_sample(cpu=100.5)),
    ("per-core above 100", decode_metrics, with_sample(cpus=[101.0])),
    ("negative sample seq", decode_metrics, with_sample(seq=-1)),
    ("negative net rate", decode_metrics, with_sample(net_rx_bps=-1.0)),
    ("negative procs", decode_metrics, with_sample(procs=-1)),
    ("load of two values", decode_metrics, with_sample(load=[1.0, 2.0])),
    (
        "negative mount size",
        decode_metrics,
        with_sample(mounts=[{"mount": "/", "total": -1, "used": 0, "pct": 0}]),
    ),
    ("gpu without name", decode_metrics, with_sample(gpu=[{"index": 0}])),
    ("command id with space", decode_command, replace(COMMAND, id="c 1")),
    ("command id with trailing newline", decode_command, replace(COMMAND, id="c-1\n")),
    ("empty command id", decode_command, replace(COMMAND, id="")),
    ("command id too long", decode_command, replace(COMMAND, id="c" * 129)),
    ("empty command name", decode_command, replace(COMMAND, name="")),
    ("args not an object", decode_command, replace(COMMAND, args=["x"])),
    ("negative issued_at", decode_command, replace(COMMAND, issued_at=-1)),
    ("missing expires_at", decode_command, b'{"schema":1,"id":"c","name":"x","issued_at":1}'),
    ("unknown reply state", decode_reply, replace(REPLY, state="done")),
    ("reply without ts", decode_reply, b'{"schema":1,"id":"c","state":"ok"}'),
    ("error without message", decode_reply, replace(REPLY, error={"code": "x"})),
]


@pytest.mark.parametrize(
    ("decoder", "data"),
    [pytest.param(decoder, data, id=name) for name, decoder, data in SCHEMA_VIOLATIONS],
)
def test_payload_not_matching_its_model_is_refused_with_code_schema(
    decoder: Any, data: bytes
) -> None:
    with pytest.raises(PayloadError) as caught:
        decoder(data)
    assert caught.value.code == "schema"


# -- staleness ---------------------------------------------------------------------------
def test_offline_with_older_epoch_is_stale() -> None:
    current = status(epoch=5)
    late_will = status(state=AgentState.OFFLINE, epoch=4, reason="connection_lost")
    assert is_stale(current, late_will)


def test_equal_epoch_is_the_same_connection_and_not_stale() -> None:
    current = status(epoch=5)
    assert not is_stale(current, status(state=AgentState.STOPPING, epoch=5))
    assert not is_stale(current, status(state=AgentState.OFFLINE, epoch=5))


def test_newer_epoch_is_not_stale_and_nothing_is_stale_without_a_current_status() -> None:
    assert not is_stale(status(epoch=5), status(epoch=6))
    assert not is_stale(None, status(state=AgentState.OFFLINE, epoch=0))


@given(current=st.integers(min_value=0, max_value=2**62), incoming=st.integers(0, 2**62))
def test_stale_exactly_when_the_incoming_epoch_is_lower(current: int, incoming: int) -> None:
    assert is_stale(status(epoch=current), status(epoch=incoming)) is (incoming < current)


# -- command names and arguments ---------------------------------------------------------
def test_the_allowlist_has_exactly_ten_commands_each_with_a_model_and_timeout() -> None:
    names = {name.value for name in CommandName}
    assert names == {
        "restart",
        "stop",
        "screenshot",
        "shell",
        "docker_ps",
        "docker_restart",
        "metrics",
        "terminal",
        "update",
        "docker_update",
    }
    assert set(ARG_MODELS) == set(CommandName)
    assert set(DEFAULT_TIMEOUT_S) == set(CommandName)
    assert all(timeout > 0 for timeout in DEFAULT_TIMEOUT_S.values())


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("restart", RestartArgs()),
        ("stop", StopArgs()),
        ("metrics", MetricsArgs()),
        ("docker_ps", DockerPsArgs(all=False)),
        ("screenshot", ScreenshotArgs(monitor=0, max_bytes=2 * MiB)),
    ],
)
def test_commands_without_required_arguments_get_their_defaults(
    name: str, expected: cmds.CommandArgs
) -> None:
    assert parse_args(name, {}) == expected


def test_shell_and_docker_restart_defaults() -> None:
    shell = parse_args("shell", {"argv": ["uptime"]})
    assert shell == ShellArgs(
        argv=["uptime"], command=None, cwd=None, timeout_s=30.0, max_output=64 * KiB
    )
    restart = parse_args("docker_restart", {"container": "web"})
    assert restart == DockerRestartArgs(container="web", timeout_s=10)


ACCEPTED_ARGS = [
    ("screenshot", {"monitor": 32, "max_bytes": 16 * KiB}),
    ("screenshot", {"monitor": 1, "max_bytes": 8 * MiB}),
    ("shell", {"command": "df -h | head", "cwd": "/tmp", "timeout_s": 3600}),
    ("shell", {"argv": ["x"] * 256, "max_output": KiB}),
    ("shell", {"argv": ["ls"], "timeout_s": 0.5, "max_output": 4 * MiB}),
    ("shell", {"command": "printf 'a\\tb\\n'\t# other control characters are fine\n"}),
    ("docker_ps", {"all": True}),
    ("docker_restart", {"container": "3f2a9c1d7e5b", "timeout_s": 0}),
    ("docker_restart", {"container": "my_app.web-1", "timeout_s": 600}),
]


@pytest.mark.parametrize(("name", "args"), ACCEPTED_ARGS)
def test_arguments_at_their_limits_are_accepted(name: str, args: dict[str, Any]) -> None:
    parsed = parse_args(name, args)
    assert isinstance(parsed, ARG_MODELS[CommandName(name)])
    for key, value in args.items():
        assert getattr(parsed, key) == value


REFUSED_ARGS = [
    ("screenshot", {"monitor": 33}),
    ("screenshot", {"monitor": -1}),
    ("screenshot", {"max_bytes": 16 * KiB - 1}),
    ("screenshot", {"max_bytes": 8 * MiB + 1}),
    ("screenshot", {"monitor": "1"}),
    ("shell", {}),
    ("shell", {"argv": ["ls"], "command": "ls"}),
    ("shell", {"argv": []}),
    ("shell", {"argv": ["x"] * 257}),
    ("shell", {"argv": "ls -l"}),
    ("shell", {"argv": ["x" * 8193]}),
    ("shell", {"command": ""}),
    ("shell", {"command": "x" * 16385}),
    ("shell", {"argv": ["ls"], "timeout_s": 0}),
    ("shell", {"argv": ["ls"], "timeout_s": 3600.5}),
    ("shell", {"argv": ["ls"], "max_output": KiB - 1}),
    ("shell", {"argv": ["ls"], "max_output": 4 * MiB + 1}),
    ("shell", {"argv": ["ls"], "cwd": "d" * 4097}),
    # A NUL cannot reach a program: the OS ends C strings there.
    ("shell", {"argv": ["/usr/bin/\0/ls"]}),
    ("shell", {"argv": ["ls", "a\0b"]}),
    ("shell", {"command": "ls\0; reboot"}),
    ("shell", {"argv": ["ls"], "cwd": "/tmp\0"}),
    ("docker_ps", {"all": "yes"}),
    ("docker_restart", {}),
    ("docker_restart", {"container": ""}),
    ("docker_restart", {"container": "a/b"}),
    ("docker_restart", {"container": "-web"}),
    ("docker_restart", {"container": "web\n"}),
    ("docker_restart", {"container": "w" * 129}),
    ("docker_restart", {"container": "web", "timeout_s": 601}),
    ("docker_restart", {"container": "web", "timeout_s": -1}),
    ("docker_restart", {"container": "web", "timeout_s": 1.5}),
]


@pytest.mark.parametrize(("name", "args"), REFUSED_ARGS)
def test_arguments_out_of_their_model_are_refused_as_bad_args(
    name: str, args: dict[str, Any]
) -> None:
    with pytest.raises(CommandArgsError) as caught:
        parse_args(name, args)
    assert caught.value.code == "bad_args"


@pytest.mark.parametrize("name", [name.value for name in CommandName])
def test_unknown_argument_fields_are_refused_for_every_command(name: str) -> None:
    valid: dict[str, dict[str, Any]] = {
        "shell": {"argv": ["ls"]},
        "docker_restart": {"container": "web"},
    }
    args = {**valid.get(name, {}), "unexpected": 1}
    with pytest.raises(CommandArgsError, match="unexpected"):
        parse_args(name, args)


def test_shell_needs_exactly_one_of_argv_or_command() -> None:
    with pytest.raises(CommandArgsError, match="exactly one"):
        parse_args("shell", {"argv": ["ls"], "command": "ls"})
    with pytest.raises(CommandArgsError, match="exactly one"):
        parse_args("shell", {"cwd": "/"})
    assert parse_args("shell", {"command": "ls"}) == ShellArgs(command="ls")


@pytest.mark.parametrize(
    "name", ["reboot", "", "Shell", "SHELL", "__class__", "parse_args", "shell ", "rm"]
)
def test_unknown_command_name_raises_unknown_command_error(name: str) -> None:
    with pytest.raises(UnknownCommandError) as caught:
        command_name(name)
    assert caught.value.code == "unknown_command"
    assert caught.value.name == name
    with pytest.raises(UnknownCommandError):
        parse_args(name, {})


def test_command_errors_are_payload_errors_and_arete_errors() -> None:
    assert issubclass(CommandArgsError, PayloadError)
    assert issubclass(UnknownCommandError, PayloadError)
    assert issubclass(PayloadError, AreteError)


# -- signing -----------------------------------------------------------------------------
KEY = Ed25519PrivateKey.generate()


def command(**overrides: Any) -> Command:
    fields: dict[str, Any] = {
        "id": "c-1",
        "name": "docker_restart",
        "args": {"container": "web", "timeout_s": 5},
        "issued_at": NOW,
        "expires_at": NOW + 60,
    }
    fields.update(overrides)
    return Command(**fields)


def sign(agent_id: str, cmd: Command) -> bytes:
    return KEY.sign(signing_bytes(agent_id, cmd))


def test_signing_bytes_have_the_context_and_sorted_compact_json() -> None:
    data = signing_bytes("build-01", command())
    assert data.startswith(SIGNING_CONTEXT)
    body = data[len(SIGNING_CONTEXT) :]
    assert body == (
        b'{"agent":"build-01","args":{"container":"web","timeout_s":5},'
        b'"expires_at":1764050060.0,"id":"c-1","issued_at":1764050000.0,'
        b'"name":"docker_restart","schema":1}'
    )


def test_signing_bytes_bind_the_agent_id() -> None:
    cmd = command()
    assert signing_bytes("a1", cmd) != signing_bytes("a2", cmd)


def test_signing_bytes_exclude_the_signature() -> None:
    assert signing_bytes("a1", command(sig="AAAA")) == signing_bytes("a1", command())
    assert b'"sig"' not in signing_bytes("a1", command(sig="AAAA"))


def test_signing_bytes_do_not_depend_on_argument_insertion_order() -> None:
    first = command(args={"b": 1, "a": {"y": [1, 2], "x": None}})
    second = command(args={"a": {"x": None, "y": [1, 2]}, "b": 1})
    assert signing_bytes("a1", first) == signing_bytes("a1", second)


def test_signing_bytes_are_the_same_before_and_after_the_wire() -> None:
    # A maestro may build a command with integer timestamps; the agent decodes floats.
    sent = command(issued_at=1_764_050_000, expires_at=1_764_050_060)
    received = decode_command(encode(sent))
    assert signing_bytes("a1", sent) == signing_bytes("a1", received)


def test_ed25519_signature_over_signing_bytes_verifies() -> None:
    cmd = command()
    KEY.public_key().verify(sign("a1", cmd), signing_bytes("a1", cmd))


@pytest.mark.parametrize(
    "tampered",
    [
        command(id="c-2"),
        command(name="docker_ps"),
        command(args={"container": "db", "timeout_s": 5}),
        command(args={"container": "web", "timeout_s": 6}),
        command(args={"container": "web", "timeout_s": 5, "extra": True}),
        command(issued_at=NOW + 1),
        command(expires_at=NOW + 3600),
        command(schema=2),
    ],
)
def test_signature_fails_for_a_modified_command(tampered: Command) -> None:
    signature = sign("a1", command())
    with pytest.raises(InvalidSignature):
        KEY.public_key().verify(signature, signing_bytes("a1", tampered))


def test_signature_fails_for_another_agent() -> None:
    cmd = command()
    with pytest.raises(InvalidSignature):
        KEY.public_key().verify(sign("a1", cmd), signing_bytes("a2", cmd))


# -- docs/topics.md stays true to the code -----------------------------------------------
MARKER = re.compile(r"<!-- (fields|example): ([\w.]+) -->\n")


def resolve(dotted: str) -> type[msgspec.Struct]:
    module, _, name = dotted.rpartition(".")
    modules = {"arete.payloads": pl, "arete.commands": cmds, "arete.stored": stored}
    model = modules[module].__dict__[name]
    assert isinstance(model, type)
    assert issubclass(model, msgspec.Struct)
    return model


def doc_blocks(kind: str) -> list[tuple[str, str]]:
    text = DOCS.read_text(encoding="utf-8")
    return [(match[2], text[match.end() :]) for match in MARKER.finditer(text) if match[1] == kind]


def documented_fields(following: str) -> set[str]:
    rows = []
    for line in following.splitlines()[2:]:
        if not line.startswith("|"):
            break
        rows.append(line)
    return {re.match(r"\| `(\w+)` \|", row)[1] for row in rows}  # type: ignore[index]


def test_docs_field_tables_list_exactly_the_fields_of_their_model() -> None:
    tables = doc_blocks("fields")
    assert len(tables) >= 15
    for dotted, following in tables:
        fields = {field.encode_name for field in msgspec.structs.fields(resolve(dotted))}
        assert documented_fields(following) == fields, dotted


def test_docs_document_every_payload_and_argument_model() -> None:
    documented = {dotted for dotted, _ in doc_blocks("fields")}
    expected = {f"arete.payloads.{m.__name__}" for m in (Status, Metrics, Sample, Heartbeat)}
    expected |= {f"arete.payloads.{m.__name__}" for m in (Mount, Gpu, Command, Reply, ErrorInfo)}
    expected |= {f"arete.commands.{model.__name__}" for model in ARG_MODELS.values()} - {
        "arete.commands.RestartArgs",
        "arete.commands.StopArgs",
        "arete.commands.MetricsArgs",
    }
    assert expected <= documented


def test_docs_json_examples_decode_with_the_real_decoders() -> None:
    examples = doc_blocks("example")
    assert len(examples) >= 15
    for dotted, following in examples:
        assert following.startswith("```json\n"), dotted
        data = following[len("```json\n") : following.index("\n```")].encode()
        model = resolve(dotted)
        value = pl.decode(data, model, max_bytes=pl.MAX_REPLY_BYTES)
        assert encode(value) == data, f"{dotted} example is not what encode() writes"
        if isinstance(value, Command):
            parse_args(value.name, value.args)


def test_docs_signed_example_verifies_with_the_documented_public_key() -> None:
    text = DOCS.read_text(encoding="utf-8")
    public = re.search(r'commands\.public_key: "([A-Za-z0-9+/=]+)"', text)
    assert public is not None
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public[1]))
    signed = [
        decode_command(following[len("```json\n") : following.index("\n```")].encode())
        for dotted, following in doc_blocks("example")
        if dotted == "arete.payloads.Command" and '"sig":"' in following.split("\n```")[0]
    ]
    assert len(signed) == 1
    assert signed[0].sig is not None
    key.verify(base64.b64decode(signed[0].sig), signing_bytes("build-01", signed[0]))


def test_docs_list_every_topic_kind() -> None:
    text = DOCS.read_text(encoding="utf-8")
    for kind in Kind:
        assert f"`arete/{kind.value}/<" in text, kind


def test_update_takes_exactly_one_of_a_version_or_rollback() -> None:
    assert parse_args("update", {"version": "0.2.1"}) == UpdateArgs(version="0.2.1")
    assert parse_args("update", {"rollback": True}) == UpdateArgs(rollback=True)
    for bad in ({}, {"version": "0.2", "rollback": True}, {"rollback": False}):
        with pytest.raises(CommandArgsError, match="exactly one"):
            parse_args("update", bad)
    for version in ("1.2.3-rc1", "v1", "1..2", "1.2.3.4.5", "", "1.2\n"):
        with pytest.raises(CommandArgsError, match="version"):
            parse_args("update", {"version": version})


def test_docker_update_refuses_a_bad_image_reference() -> None:
    args = parse_args("docker_update", {"container": "web", "image": "127.0.0.1:5000/bb:2"})
    assert args == DockerUpdateArgs(container="web", image="127.0.0.1:5000/bb:2")
    for image in ("-bad", "a b", "x;rm -rf /", "a" * 256):
        with pytest.raises(CommandArgsError, match="image"):
            parse_args("docker_update", {"container": "web", "image": image})
