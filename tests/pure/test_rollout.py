"""The fleet rollout's state machine: canary, batches, health gate, abort and rollback."""

from __future__ import annotations

from web_api.rollout import Phase, Plan, Rollout, Seen, Send, UpdateSeen
from web_api.rollout_run import known_release, seen_now

OLD, NEW = "0.1.0", "0.2.0"


class Fleet:
    """Simulated agents as the registry would show them, and a clock."""

    def __init__(self, agents: list[str], version: str = OLD) -> None:
        self.now = 1000.0
        self.seen = {a: Seen(state="online", version=version, sample_at=self.now) for a in agents}
        self.ids = 0

    def set(self, agent: str, **fields: object) -> None:
        old = self.seen[agent]
        self.seen[agent] = Seen(
            state=str(fields.get("state", old.state)),
            version=fields.get("version", old.version),  # type: ignore[arg-type]
            update=fields.get("update", old.update),  # type: ignore[arg-type]
            sample_at=fields.get("sample_at", old.sample_at),  # type: ignore[arg-type]
        )

    def tick(self, rollout: Rollout, dt: float = 1.0) -> list[Send]:
        self.now += dt
        sends = rollout.step(self.seen, self.now)
        for send in sends:
            self.ids += 1
            rollout.sent(send.agent, f"c{self.ids}", self.now)
        return sends

    def switch(self, rollout: Rollout, agent: str, version: str = NEW) -> None:
        """The agent's updater switches, it proves healthy, a sample arrives."""
        cid = rollout.agents[agent].command_id
        self.set(
            agent,
            version=version,
            update=UpdateSeen("switched", version, self.now, command_id=cid),
        )
        self.tick(rollout)
        self.set(agent, update=UpdateSeen("healthy", version, self.now, command_id=cid))
        self.set(agent, sample_at=self.now + 0.5)

    def roll_back(self, rollout: Rollout, agent: str) -> None:
        cid = rollout.agents[agent].command_id
        self.set(
            agent,
            version=OLD,
            update=UpdateSeen("rolled_back", NEW, self.now, command_id=cid, reason="did not start"),
        )


def agents_of(sends: list[Send]) -> list[str]:
    return [s.agent for s in sends]


def make(agents: list[str], fleet: Fleet, **plan: object) -> Rollout:
    return Rollout(Plan(version=NEW, agents=tuple(agents), **plan), fleet.seen, fleet.now)  # type: ignore[arg-type]


def test_the_canary_goes_alone_and_the_batches_wait_for_its_health_gate() -> None:
    names = [f"a{i}" for i in range(5)]
    fleet = Fleet(names)
    rollout = make(names, fleet, canary=1, batch_size=2)
    assert agents_of(fleet.tick(rollout)) == ["a0"]
    assert rollout.to_dict()["stage"] == "canary"
    assert rollout.agents["a1"].phase is Phase.WAITING
    # The canary reports installing: nothing else goes out.
    cid = rollout.agents["a0"].command_id
    fleet.set("a0", update=UpdateSeen("installing", NEW, fleet.now, command_id=cid))
    assert fleet.tick(rollout) == []
    assert rollout.agents["a0"].to_dict()["phase"] == "installing"
    fleet.switch(rollout, "a0")
    assert rollout.agents["a0"].to_dict()["phase"] == "switched"
    assert agents_of(fleet.tick(rollout)) == ["a1", "a2"]
    assert rollout.agents["a0"].phase is Phase.HEALTHY
    assert rollout.to_dict()["stage"] == "batches"
    for agent in ("a1", "a2"):
        fleet.switch(rollout, agent)
    assert agents_of(fleet.tick(rollout)) == ["a3", "a4"]
    for agent in ("a3", "a4"):
        fleet.switch(rollout, agent)
    assert fleet.tick(rollout) == []
    assert rollout.state == "done"
    assert rollout.ended
    assert rollout.phases() == {"healthy": 5}


def test_a_switched_agent_without_a_sample_since_the_switch_does_not_pass_the_gate() -> None:
    fleet = Fleet(["a0", "a1"])
    rollout = make(["a0", "a1"], fleet, canary=1, health_timeout_s=30)
    fleet.tick(rollout)
    cid = rollout.agents["a0"].command_id
    fleet.set("a0", version=NEW, update=UpdateSeen("healthy", NEW, fleet.now, command_id=cid))
    for _ in range(10):
        assert fleet.tick(rollout) == []  # its newest sample is from before the switch
    assert rollout.agents["a0"].phase is Phase.SWITCHED
    fleet.set("a0", sample_at=fleet.now + 0.1)
    assert agents_of(fleet.tick(rollout)) == ["a1"]


def test_an_offline_agent_on_the_new_version_does_not_pass_the_gate_and_times_out() -> None:
    fleet = Fleet(["a0", "a1"])
    rollout = make(["a0", "a1"], fleet, canary=1, health_timeout_s=20)
    fleet.tick(rollout)
    fleet.set("a0", version=NEW, state="offline", sample_at=fleet.now + 5)
    for _ in range(19):
        assert fleet.tick(rollout) == []
    # It switched (it runs the new version) but missed the gate: the rollout sends it back.
    assert fleet.tick(rollout, 2) == [Send("a0", {"rollback": True})]
    assert rollout.agents["a0"].failed
    assert rollout.agents["a0"].reason == "not healthy within 20 s"
    assert rollout.state == "failed"
    assert rollout.agents["a1"].phase is Phase.WAITING  # never sent


def test_agents_already_on_the_target_count_as_done_without_a_command() -> None:
    fleet = Fleet(["a0", "a1", "a2"])
    fleet.set("a1", version=NEW)
    rollout = make(["a0", "a1", "a2"], fleet, canary=1, batch_size=5)
    assert rollout.agents["a1"].phase is Phase.HEALTHY
    assert rollout.agents["a1"].reason == "already on this version"
    assert agents_of(fleet.tick(rollout)) == ["a0"]  # the canary is one that needs it
    fleet.switch(rollout, "a0")
    assert agents_of(fleet.tick(rollout)) == ["a2"]
    fleet.switch(rollout, "a2")
    fleet.tick(rollout)
    assert rollout.state == "done"


def test_a_whole_fleet_on_the_target_is_done_at_once() -> None:
    fleet = Fleet(["a0", "a1"], version=NEW)
    rollout = make(["a0", "a1"], fleet)
    assert fleet.tick(rollout) == []
    assert rollout.state == "done"


def test_a_rolled_back_canary_fails_the_rollout_and_nothing_else_is_sent() -> None:
    fleet = Fleet(["a0", "a1", "a2"])
    rollout = make(["a0", "a1", "a2"], fleet, canary=1)
    fleet.tick(rollout)
    cid = rollout.agents["a0"].command_id
    fleet.set("a0", version=NEW, update=UpdateSeen("switched", NEW, fleet.now, command_id=cid))
    fleet.tick(rollout)
    fleet.roll_back(rollout, "a0")
    assert fleet.tick(rollout) == []  # its own updater rolled it back: no rollback command
    assert rollout.state == "failed"
    assert rollout.ended
    assert rollout.agents["a0"].phase is Phase.ROLLED_BACK
    assert "did not start" in (rollout.agents["a0"].reason or "")
    assert rollout.failures == 1
    assert rollout.phases() == {"rolled_back": 1, "waiting": 2}


def test_the_abort_threshold_rolls_back_exactly_the_agents_the_rollout_switched() -> None:
    names = ["a0", "a1", "a2", "a3", "a4", "a5"]
    fleet = Fleet(names)
    fleet.set("a5", version=NEW)  # already there: not switched by this rollout
    rollout = make(names, fleet, canary=1, batch_size=3, max_failures=0)
    fleet.tick(rollout)
    fleet.switch(rollout, "a0")
    assert agents_of(fleet.tick(rollout)) == ["a1", "a2", "a3"]
    fleet.switch(rollout, "a1")
    fleet.roll_back(rollout, "a2")  # its updater gave up
    fleet.tick(rollout)
    assert rollout.state == "failed"
    assert rollout.to_dict()["stage"] == "settling"  # a3 has not settled yet
    # a3 never reports: the command fails.
    rollout.command_done("a3", ok=False, reason="not_supported: no updater", now=fleet.now)
    sends = fleet.tick(rollout)
    assert sorted(agents_of(sends)) == ["a0", "a1"]
    assert all(s.args == {"rollback": True} for s in sends)
    assert rollout.to_dict()["stage"] == "rolling_back"
    assert rollout.agents["a4"].phase is Phase.WAITING
    fleet.set("a0", version=OLD)
    fleet.tick(rollout)
    assert rollout.agents["a0"].phase is Phase.ROLLED_BACK
    assert not rollout.ended
    fleet.set("a1", version=OLD)
    fleet.tick(rollout)
    assert rollout.ended
    assert rollout.agents["a1"].reason == "rolled back by the rollout to 0.1.0"
    assert rollout.agents["a3"].phase is Phase.FAILED
    assert rollout.agents["a3"].reason == "command failed: not_supported: no updater"
    assert rollout.agents["a5"].phase is Phase.HEALTHY
    assert rollout.stop_reason == "1 failed, more than max_failures=0"


def test_failures_up_to_the_threshold_let_the_rollout_go_on() -> None:
    fleet = Fleet(["a0", "a1", "a2"])
    rollout = make(["a0", "a1", "a2"], fleet, canary=1, batch_size=2, max_failures=1)
    fleet.tick(rollout)
    rollout.command_done("a0", ok=False, reason="not_enabled: updates are off", now=fleet.now)
    assert agents_of(fleet.tick(rollout)) == ["a1", "a2"]
    fleet.switch(rollout, "a1")
    fleet.switch(rollout, "a2")
    fleet.tick(rollout)
    assert rollout.state == "done"
    assert rollout.failures == 1


def test_a_user_abort_stops_after_the_batch_and_rolls_back_what_switched() -> None:
    fleet = Fleet(["a0", "a1", "a2"])
    rollout = make(["a0", "a1", "a2"], fleet, canary=1, batch_size=2)
    fleet.tick(rollout)
    fleet.switch(rollout, "a0")
    assert rollout.abort("user:op", fleet.now)
    assert not rollout.abort("user:op", fleet.now)
    sends = fleet.tick(rollout)
    assert sends == [Send("a0", {"rollback": True})]
    assert rollout.state == "stopped"
    assert rollout.stop_reason == "aborted by user:op"
    fleet.set("a0", version=OLD)
    fleet.tick(rollout)
    assert rollout.ended
    assert rollout.phases() == {"rolled_back": 1, "waiting": 2}


def test_without_rollback_on_abort_nothing_is_sent_back() -> None:
    fleet = Fleet(["a0", "a1"])
    rollout = make(["a0", "a1"], fleet, canary=1, rollback_on_abort=False, health_timeout_s=5)
    fleet.tick(rollout)
    fleet.set("a0", version=NEW, state="late")
    fleet.tick(rollout)
    assert fleet.tick(rollout, 10) == []
    assert rollout.ended
    assert rollout.state == "failed"
    assert rollout.agents["a0"].phase is Phase.FAILED


def test_an_updater_state_of_an_earlier_command_is_not_taken_for_this_one() -> None:
    fleet = Fleet(["a0"])
    fleet.set("a0", update=UpdateSeen("rolled_back", NEW, fleet.now - 3600, command_id="old"))
    rollout = make(["a0"], fleet, canary=1)
    fleet.tick(rollout)
    fleet.tick(rollout)
    assert rollout.agents["a0"].phase is Phase.SENT
    fleet.switch(rollout, "a0")
    fleet.tick(rollout)
    assert rollout.state == "done"


def test_an_agent_whose_rollback_does_not_come_back_ends_failed() -> None:
    fleet = Fleet(["a0", "a1"])
    rollout = make(["a0", "a1"], fleet, canary=1, health_timeout_s=10)
    fleet.tick(rollout)
    fleet.switch(rollout, "a0")
    rollout.abort("user:op", fleet.now)
    fleet.tick(rollout)
    rollout.command_done("a0", ok=False, reason="busy: an update is in progress", now=fleet.now)
    fleet.tick(rollout, 11)
    assert rollout.ended
    assert rollout.agents["a0"].phase is Phase.FAILED
    assert "not back on 0.1.0 within 10 s" in (rollout.agents["a0"].reason or "")
    assert "busy" in (rollout.agents["a0"].reason or "")


def test_seen_reads_a_registry_view() -> None:
    view = {
        "state": "online",
        "version": NEW,
        "metrics": {"ts": 1.0, "rx_ts": 2.5, "cpu": 3.0},
        "update": {"phase": "healthy", "from_version": OLD, "to_version": NEW, "ts": 2.0},
    }
    seen = Seen.from_view(view)
    assert seen.sample_at == 2.5
    assert seen.update == UpdateSeen("healthy", NEW, 2.0)
    assert Seen.from_view({"state": "unknown", "version": None, "metrics": None}).update is None


class _Registry:
    def __init__(self, views: dict[str, dict[str, object]]) -> None:
        self.views = views

    def view(self, agent: str) -> dict[str, object]:
        return self.views[agent]


def test_a_sample_seen_live_counts_when_the_share_gave_this_replica_none() -> None:
    # With two replicas the share can hand every sample of an agent to the other one:
    # this replica's registry keeps an old receive time; the job's live follow sees more.
    views: dict[str, dict[str, object]] = {
        a: {"state": "online", "version": NEW, "metrics": {"rx_ts": 10.0}} for a in ("a0", "a1")
    }
    views["a2"] = {"state": "online", "version": NEW, "metrics": None}
    maestro = type("M", (), {"registry": _Registry(views)})()
    seen = seen_now(maestro, ["a0", "a1", "a2"], {"a0": 50.0, "a1": 5.0, "a2": 7.0})
    assert [seen[a].sample_at for a in ("a0", "a1", "a2")] == [50.0, 10.0, 7.0]
    assert seen_now(maestro, ["a0"])["a0"].sample_at == 10.0
    # In the gate: switched at 20, the registry's sample (10) is older, the live one passes.
    fleet = Fleet(["a0"])
    rollout = make(["a0"], fleet, canary=1)
    fleet.tick(rollout)
    progress = rollout.agents["a0"]
    progress.switched_at = 20.0
    phases = []
    rollout._judge(progress, seen_now(maestro, ["a0"])["a0"], 21.0)
    phases.append(progress.phase)
    rollout._judge(progress, seen_now(maestro, ["a0"], {"a0": 50.0})["a0"], 51.0)
    phases.append(progress.phase)
    assert phases == [Phase.SWITCHED, Phase.HEALTHY]


def test_the_agents_watched_are_the_batch_under_way_and_the_next_one() -> None:
    fleet = Fleet(["a0", "a1", "a2", "a3"])
    rollout = make(["a0", "a1", "a2", "a3"], fleet, canary=1, batch_size=2)
    assert rollout.watching() == ["a0"]
    fleet.tick(rollout)
    assert rollout.watching() == ["a0", "a1", "a2"]
    fleet.switch(rollout, "a0")
    rollout.abort("user:op", fleet.now)
    fleet.tick(rollout)
    assert rollout.watching() == ["a0"]  # rolling back


class _Store:
    """A release store whose last scan predates a release just added."""

    def __init__(self, scanned: list[str], on_disk: list[str]) -> None:
        self.scanned, self.on_disk, self.scans = scanned, on_disk, 0

    def releases(self) -> list[str]:
        return list(self.scanned)

    def scan(self) -> dict[str, object]:
        self.scans += 1
        self.scanned = list(self.on_disk)
        return dict.fromkeys(self.on_disk)


class _Publisher:
    woken = 0

    def wake(self) -> None:
        self.woken += 1


class _Maestro:
    def __init__(self, store: _Store) -> None:
        self.releases, self.release_publisher = store, _Publisher()


def test_a_release_added_since_the_last_scan_is_found_and_published_at_once() -> None:
    maestro = _Maestro(_Store(scanned=["0.1.0"], on_disk=["0.1.0", "0.2.0"]))
    assert known_release(maestro, "0.1.0") is True  # type: ignore[arg-type]
    assert maestro.releases.scans == 0  # what the last scan holds needs no new one
    assert known_release(maestro, "0.2.0") is True  # type: ignore[arg-type]
    assert maestro.release_publisher.woken == 1
    assert known_release(maestro, "0.3.0") is False  # type: ignore[arg-type]
    assert maestro.release_publisher.woken == 1
