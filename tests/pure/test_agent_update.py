"""The agent's side of self-update, without processes: its [update] settings, the files
it shares with the host updater, health.json's conditions, and the update handler driven
by a fake link that delivers the broker's retained release messages."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from arete.commands import UpdateArgs, UpdateResult
from arete.payloads import Command, UpdatePhase, UpdateState
from arete.release import RELEASE_CHUNK_BYTES
from arete.topics import Topics
from edge_agent.errors import CommandFailed, ConfigError
from edge_agent.health import SAMPLES_NEEDED, HealthWatch, health_path, remove_health
from edge_agent.settings import UpdateSettings, load_settings
from edge_agent.update import SelfUpdate, load_release_keys
from edge_agent.update_files import PARTIAL_PREFIX, UpdateFiles, UpdateRequest
from tests.fixtures.releases import BuiltRelease, build_release, public_text, wheel_name

pytestmark = pytest.mark.pure

KEY = Ed25519PrivateKey.generate()
TOPICS = Topics("t1")
WHEELS = {
    wheel_name("arete", "0.2.0"): os.urandom(RELEASE_CHUNK_BYTES * 2 + 17),
    wheel_name("msgspec", "0.18.6"): b"small wheel",
}


# -- settings --------------------------------------------------------------------------
def test_update_is_off_by_default_with_no_keys() -> None:
    settings = load_settings(None, env={"ARETE_AGENT_ID": "a1"})
    assert settings.update == UpdateSettings()
    assert not settings.update.enabled
    assert settings.update.release_keys == []
    assert settings.update.fetch_timeout_s == 120.0
    assert settings.update.pickup_timeout_s == 15.0


def test_release_keys_come_from_toml_and_env(tmp_path: Path) -> None:
    key = public_text(KEY)
    config = tmp_path / "agent.toml"
    config.write_text(f'id = "a1"\n[update]\nenabled = true\nrelease_keys = ["{key}"]\n')
    assert load_settings(config, env={}).update.release_keys == [key]
    env = {"ARETE_AGENT_ID": "a1", "ARETE_AGENT_UPDATE__RELEASE_KEYS": f'["{key}"]'}
    assert load_settings(None, env=env).update.release_keys == [key]


# Ids fixed: KEY is random per process, and pytest-xdist workers must collect the same ids.
@pytest.mark.parametrize(
    "bad",
    ["not base64!", "AAAA", public_text(KEY) + "AAAA"],
    ids=["not-base64", "too-short", "too-long"],
)
def test_a_bad_release_key_stops_the_agent_at_start(bad: str) -> None:
    env = {"ARETE_AGENT_ID": "a1", "ARETE_AGENT_UPDATE__RELEASE_KEYS": f'["{bad}"]'}
    with pytest.raises(ConfigError, match=r"update\.release_keys\[0\]"):
        load_settings(None, env=env)


def test_fetch_timeout_is_bounded_by_the_command_deadline() -> None:
    env = {"ARETE_AGENT_ID": "a1", "ARETE_AGENT_UPDATE__FETCH_TIMEOUT_S": "900"}
    with pytest.raises(ConfigError, match="fetch_timeout_s"):
        load_settings(None, env=env)


def test_release_key_file_is_relative_to_the_config_and_read_line_by_line(
    tmp_path: Path,
) -> None:
    other = Ed25519PrivateKey.generate()
    (tmp_path / "release.pub").write_text(
        f"# release keys\n{public_text(KEY)}\n\n{public_text(other)}  # next key\n"
    )
    config = tmp_path / "agent.toml"
    config.write_text('id = "a1"\n[update]\nrelease_key_file = "release.pub"\n')
    settings = load_settings(config, env={})
    assert settings.update.release_key_file == str(tmp_path / "release.pub")
    assert len(load_release_keys(settings.update)) == 2


def test_a_bad_or_missing_release_key_file_is_a_config_error(tmp_path: Path) -> None:
    missing = UpdateSettings(release_key_file=str(tmp_path / "nope.pub"))
    with pytest.raises(ConfigError, match="release_key_file"):
        load_release_keys(missing)
    (tmp_path / "bad.pub").write_text("garbage\n")
    with pytest.raises(ConfigError, match="line 1"):
        load_release_keys(UpdateSettings(release_key_file=str(tmp_path / "bad.pub")))


# -- health.json -----------------------------------------------------------------------
def test_health_needs_connection_online_ack_samples_and_a_heartbeat() -> None:
    watch = HealthWatch()
    watch.on_connected()
    watch.on_online_acked()
    watch.on_samples_acked(SAMPLES_NEEDED - 1)
    watch.on_heartbeat()
    assert not watch.due(), "one sample short"
    watch.on_samples_acked(1)
    assert watch.due()
    watch.on_disconnected()
    assert not watch.due(), "not while disconnected"
    watch.on_connected()
    watch.written = True
    assert not watch.due(), "once per process"


def test_health_without_a_heartbeat_or_online_ack_is_not_due() -> None:
    watch = HealthWatch()
    watch.on_connected()
    watch.on_samples_acked(10)
    watch.on_online_acked()
    assert not watch.due()
    other = HealthWatch()
    other.on_connected()
    other.on_samples_acked(10)
    other.on_heartbeat()
    assert not other.due()


def test_health_file_of_an_earlier_process_is_removed(tmp_path: Path) -> None:
    health_path(tmp_path).write_text("{}")
    remove_health(tmp_path)
    assert not health_path(tmp_path).exists()
    remove_health(tmp_path)  # nothing there: fine


# -- files -----------------------------------------------------------------------------
def test_request_json_has_the_planned_fields(tmp_path: Path) -> None:
    files = UpdateFiles(tmp_path)
    files.write_request(
        UpdateRequest(
            version=None,
            rollback=True,
            from_version="0.1.0",
            command_id="c-1",
            health_deadline_s=120.0,
            requested_at=1.5,
        )
    )
    assert msgspec.json.decode(files.request.read_bytes()) == {
        "version": None,
        "rollback": True,
        "from_version": "0.1.0",
        "command_id": "c-1",
        "health_deadline_s": 120.0,
        "requested_at": 1.5,
    }
    assert [p.name for p in files.root.iterdir()] == ["request.json"], "no temporary left"


def test_half_written_release_dirs_are_removed_at_start(tmp_path: Path) -> None:
    files = UpdateFiles(tmp_path)
    partial = files.root / f"{PARTIAL_PREFIX}0.2.0-123"
    partial.mkdir(parents=True)
    (partial / "x.whl").write_bytes(b"half")
    files.spool("0.1.9", [("release.json", b"{}")])
    files.clean_partial()
    assert sorted(p.name for p in files.root.iterdir()) == ["0.1.9"]


def test_in_progress_while_a_request_waits_or_the_updater_works(tmp_path: Path) -> None:
    files = UpdateFiles(tmp_path)
    assert files.in_progress() is None
    files.root.mkdir()
    for phase in UpdatePhase:
        write_state(files, phase, "c-x")
        busy = files.in_progress()
        if phase in (UpdatePhase.PENDING, UpdatePhase.INSTALLING, UpdatePhase.SWITCHED):
            assert busy is not None
            assert phase.value in busy
        else:
            assert busy is None
    files.request.write_text("{}")
    assert files.in_progress() is not None


def write_state(files: UpdateFiles, phase: UpdatePhase, command_id: str) -> None:
    files.root.mkdir(exist_ok=True)
    state = UpdateState(
        phase=phase, from_version="0.1.0", to_version="0.2.0", ts=1.0, command_id=command_id
    )
    files.state.write_bytes(msgspec.json.encode(state))


# -- the handler, with a fake link -----------------------------------------------------
class FakeBroker:
    """Retained messages; a subscription delivers the matching ones, as Mosquitto does."""

    def __init__(self, handler: Callable[[], SelfUpdate]) -> None:
        self.retained: dict[str, bytes] = {}
        self.subscribed: list[str] = []
        self.unsubscribed: list[str] = []
        self._handler = handler

    def publish(self, release: BuiltRelease) -> None:
        self.retained.update(release.messages(TOPICS))

    def subscribe(self, topic_filter: str) -> None:
        self.subscribed.append(topic_filter)
        prefix = topic_filter.removesuffix("#")
        loop = asyncio.get_running_loop()
        for topic, payload in self.retained.items():
            if topic == topic_filter or (topic_filter.endswith("#") and topic.startswith(prefix)):
                loop.call_soon(self._handler().on_message, topic, payload)

    def unsubscribe(self, topic_filter: str) -> None:
        self.unsubscribed.append(topic_filter)


def make_handler(
    tmp_path: Path, *, running: str = "0.1.0", settings: dict[str, object] | None = None
) -> tuple[SelfUpdate, FakeBroker]:
    values: dict[str, object] = {
        "enabled": True,
        "release_keys": [public_text(KEY)],
        "fetch_timeout_s": 1.0,
        "pickup_timeout_s": 0.6,
    }
    values.update(settings or {})
    holder: list[SelfUpdate] = []
    broker = FakeBroker(lambda: holder[0])
    handler = SelfUpdate(
        msgspec.convert(values, UpdateSettings),
        TOPICS,
        UpdateFiles(tmp_path),
        subscribe=broker.subscribe,
        unsubscribe=broker.unsubscribe,
        running_version=running,
    )
    holder.append(handler)
    return handler, broker


def command(args: UpdateArgs) -> Command:
    return Command(
        id="c-42", name="update", args=msgspec.to_builtins(args), issued_at=1, expires_at=2
    )


async def run_with_updater(
    handler: SelfUpdate, args: UpdateArgs, phase: UpdatePhase
) -> UpdateResult:
    """Run the handler while a fake host updater answers the request with ``phase``."""

    async def updater() -> None:
        while not handler.files.request.exists():  # noqa: ASYNC110 - a file, not an event
            await asyncio.sleep(0.02)
        write_state(handler.files, phase, "c-42")

    helper = asyncio.create_task(updater())
    try:
        return await handler.run(args, command(args))
    finally:
        helper.cancel()


def test_a_good_release_is_spooled_byte_exact_and_handed_over(tmp_path: Path) -> None:
    handler, broker = make_handler(tmp_path)
    release = build_release(KEY, "0.2.0", WHEELS)
    broker.publish(release)
    args = UpdateArgs(version="0.2.0", health_deadline_s=60)
    result = asyncio.run(run_with_updater(handler, args, UpdatePhase.PENDING))
    assert result == UpdateResult(state="handed_over", from_version="0.1.0", to_version="0.2.0")
    spooled = handler.files.release_dir("0.2.0")
    assert (spooled / "release.json").read_bytes() == release.raw
    for name, data in WHEELS.items():
        assert (spooled / name).read_bytes() == data
    request = msgspec.json.decode(handler.files.request.read_bytes(), type=UpdateRequest)
    assert (request.version, request.rollback, request.from_version) == ("0.2.0", False, "0.1.0")
    assert (request.command_id, request.health_deadline_s) == ("c-42", 60.0)
    assert broker.subscribed == [
        TOPICS.release_manifest("0.2.0"),
        TOPICS.release_filter("0.2.0"),
    ], "chunks only once the manifest verified"
    assert set(broker.unsubscribed) == set(broker.subscribed)


@pytest.mark.parametrize(
    ("code", "options", "running"),
    [
        ("unsigned", {"unsigned": True}, "0.1.0"),
        ("bad_signature", {"bad_signature": True}, "0.1.0"),
        ("expired", {"expires_in_s": -10.0}, "0.1.0"),
        ("downgrade", {}, "0.3"),
        ("too_old", {"min_from_version": "0.1.5"}, "0.1.0"),
        ("tampered", {"tamper_chunk": (0, 1)}, "0.1.0"),
    ],
)
def test_each_bad_release_is_refused_with_its_code_and_nothing_written(
    tmp_path: Path, code: str, options: dict[str, object], running: str
) -> None:
    handler, broker = make_handler(tmp_path, running=running)
    broker.publish(build_release(KEY, "0.2.0", WHEELS, **options))  # type: ignore[arg-type]
    with pytest.raises(CommandFailed) as refused:
        asyncio.run(handler.run(UpdateArgs(version="0.2.0"), command(UpdateArgs(version="0.2.0"))))
    assert refused.value.code == code
    assert not handler.files.root.exists() or not any(handler.files.root.iterdir())


def test_a_release_signed_by_an_unknown_key_is_refused(tmp_path: Path) -> None:
    handler, broker = make_handler(tmp_path)
    broker.publish(build_release(Ed25519PrivateKey.generate(), "0.2.0", WHEELS))
    with pytest.raises(CommandFailed) as refused:
        asyncio.run(handler.run(UpdateArgs(version="0.2.0"), command(UpdateArgs(version="0.2.0"))))
    assert refused.value.code == "unknown_key"


def test_missing_release_and_missing_chunks(tmp_path: Path) -> None:
    handler, broker = make_handler(tmp_path)
    args = UpdateArgs(version="0.2.0")
    with pytest.raises(CommandFailed) as refused:
        asyncio.run(handler.run(args, command(args)))
    assert refused.value.code == "no_release"
    release = build_release(KEY, "0.2.0", WHEELS)
    release.chunks.pop()
    broker.publish(release)
    with pytest.raises(CommandFailed) as refused:
        asyncio.run(handler.run(args, command(args)))
    assert refused.value.code == "fetch_failed"
    assert not handler.files.root.exists()


def test_same_version_is_up_to_date_without_fetching(tmp_path: Path) -> None:
    handler, broker = make_handler(tmp_path, running="0.2")
    args = UpdateArgs(version="0.2.0")
    result = asyncio.run(handler.run(args, command(args)))
    assert result == UpdateResult(state="up_to_date", from_version="0.2", to_version="0.2")
    assert broker.subscribed == []


def test_disabled_or_keyless_agents_refuse_before_accepting(tmp_path: Path) -> None:
    args = UpdateArgs(version="0.2.0")
    disabled: dict[str, object] = {"enabled": False}
    keyless: dict[str, object] = {"release_keys": []}
    for overrides in (disabled, keyless):
        handler, _ = make_handler(tmp_path, settings=overrides)
        with pytest.raises(CommandFailed) as refused:
            handler.precheck(args)
        assert refused.value.code == "not_enabled"


def test_busy_while_the_updater_works(tmp_path: Path) -> None:
    handler, _ = make_handler(tmp_path)
    write_state(handler.files, UpdatePhase.INSTALLING, "c-1")
    with pytest.raises(CommandFailed) as refused:
        handler.precheck(UpdateArgs(version="0.2.0"))
    assert refused.value.code == "busy"


def test_without_a_host_updater_the_request_is_taken_back(tmp_path: Path) -> None:
    handler, broker = make_handler(tmp_path)
    broker.publish(build_release(KEY, "0.2.0", WHEELS))
    args = UpdateArgs(version="0.2.0")
    with pytest.raises(CommandFailed) as refused:
        asyncio.run(handler.run(args, command(args)))
    assert refused.value.code == "not_supported"
    assert "docs/updates.md" in refused.value.message
    assert not handler.files.request.exists()
    assert not handler.files.release_dir("0.2.0").exists()
    handler.precheck(args)  # not left busy


def test_an_updater_that_fails_at_once_is_install_failed(tmp_path: Path) -> None:
    handler, broker = make_handler(tmp_path)
    broker.publish(build_release(KEY, "0.2.0", WHEELS))
    with pytest.raises(CommandFailed) as refused:
        asyncio.run(run_with_updater(handler, UpdateArgs(version="0.2.0"), UpdatePhase.FAILED))
    assert refused.value.code == "install_failed"


def test_rollback_writes_a_request_naming_the_previous_version(tmp_path: Path) -> None:
    handler, _ = make_handler(tmp_path, running="0.2.0")
    write_state(handler.files, UpdatePhase.HEALTHY, "c-1")  # 0.1.0 -> 0.2.0 went well
    args = UpdateArgs(rollback=True)
    result = asyncio.run(handler.run(args, command(args)))
    assert result == UpdateResult(
        state="rollback_requested", from_version="0.2.0", to_version="0.1.0"
    )
    request = msgspec.json.decode(handler.files.request.read_bytes(), type=UpdateRequest)
    assert (request.version, request.rollback, request.command_id) == (None, True, "c-42")


def test_a_rollback_request_nobody_takes_is_withdrawn_after_the_pickup_timeout(
    tmp_path: Path,
) -> None:
    handler, _ = make_handler(tmp_path, running="0.2.0")
    args = UpdateArgs(rollback=True)

    async def scenario() -> tuple[bool, bool]:
        await handler.run(args, command(args))
        waiting = handler.files.request.exists()
        await asyncio.sleep(1.0)  # pickup_timeout_s is 0.6 here
        return waiting, handler.files.request.exists()

    assert asyncio.run(scenario()) == (True, False)
    handler.precheck(UpdateArgs(version="0.3.0"))  # not left busy
