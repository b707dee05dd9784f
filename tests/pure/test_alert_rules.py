"""Rules from TOML: built-in overrides and custom threshold rules, with clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from arete.payloads import AlertSeverity
from maestro.alerts.rules import BUILTIN_RULES, load_rules
from maestro.alerts.settings import AlertSettings, RuleOverride
from maestro.errors import ConfigError


def rules_file(tmp_path: Path, text: str) -> AlertSettings:
    path = tmp_path / "rules.toml"
    path.write_text(text, encoding="utf-8")
    return AlertSettings(rules_file=path)


def by_name(settings: AlertSettings) -> dict[str, object]:
    return {rule.name: rule for rule in load_rules(settings)}


def test_without_a_rules_file_the_builtins_apply() -> None:
    names = [rule.name for rule in load_rules(AlertSettings())]
    assert names[:5] == ["agent_critical", "agent_offline", "cpu_high", "mem_high", "disk_high"]
    assert {"broker_unreachable", "metrics_stalled", "clock_skew", "identity_conflict"} <= set(
        names
    )


def test_a_custom_rule_and_a_builtin_override_load(tmp_path: Path) -> None:
    settings = rules_file(
        tmp_path,
        """
        [builtin.cpu_high]
        threshold = 95
        for_s = 120

        [builtin.disk_high]
        enabled = false

        [[rules]]
        name = "db_disk"
        field = "disk"
        op = ">="
        threshold = 80
        for_s = 30
        severity = "critical"
        labels = { role = "db" }
        summary = "{agent}: disk {value}% on a database"
        """,
    )
    rules = {rule.name: rule for rule in load_rules(settings)}
    assert "disk_high" not in rules
    assert rules["cpu_high"].threshold == 95
    assert rules["cpu_high"].for_s == 120
    db = rules["db_disk"]
    assert db.severity is AlertSeverity.CRITICAL
    assert db.labels == {"role": "db"}
    assert db.value_holds(80.0)
    assert not db.value_holds(79.9)
    assert db.describe("db1", 81.5) == "db1: disk 81.5% on a database"


def test_settings_overrides_apply_before_the_rules_file(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text("[builtin.mem_high]\nthreshold = 97\n", encoding="utf-8")
    settings = AlertSettings(
        rules_file=path,
        builtin={"mem_high": RuleOverride(threshold=80, for_s=10), "cpu_high": RuleOverride()},
    )
    mem = next(r for r in load_rules(settings) if r.name == "mem_high")
    assert (mem.threshold, mem.for_s) == (97, 10)


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[[rules]]\nname = "x"\nfield = "cpu"\nop = "!="\nthreshold = 1\n', "rule 'x'.*op"),
        ('[[rules]]\nname = "x"\nfield = "gpu"\nop = ">"\nthreshold = 1\n', "unknown field 'gpu'"),
        ('[[rules]]\nname = "x"\nfield = "cpu"\nop = ">"\n', "rule 'x'.*threshold"),
        ('[[rules]]\nname = "Bad Name"\nfield = "cpu"\nop = ">"\nthreshold = 1\n', "name"),
        ('[[rules]]\nname = "x"\nfield = "cpu"\nop = ">"\nthreshold = 1\nfor = 3\n', "for"),
        (
            '[[rules]]\nname = "cpu_high"\nfield = "cpu"\nop = ">"\nthreshold = 1\n',
            r"built-in rule; change it with \[builtin.cpu_high\]",
        ),
        (
            '[[rules]]\nname = "x"\nfield = "cpu"\nop = ">"\nthreshold = 1\n' * 2,
            "a second rule with this name",
        ),
        (
            '[[rules]]\nname = "x"\nfield = "cpu"\nop = ">"\nthreshold = 1\nsummary = "{host}"\n',
            "summary uses 'host'",
        ),
        (
            '[[rules]]\nname = "x"\nfield = "cpu"\nop = ">"\nthreshold = 1\n'
            'summary = "{value:.1f}"\n',
            "take no format",
        ),
        ('[[rules]]\nname = "x"\nfield = "cpu"\nop = ">"\nthreshold = 1\nfor_s = -1\n', "for_s"),
        ("[builtin.cpu_hgih]\nthreshold = 1\n", "'cpu_hgih' is not a built-in rule"),
        ("[builtin.agent_offline]\nthreshold = 1\n", "has no threshold"),
        ("[builtin.cpu_high]\nclean_stops = true\n", "agent_offline only"),
        ("[builtin.cpu_high]\nthreshhold = 1\n", "threshhold"),
        ("[[rule]]\n", "rule"),
        ("rules = [", "not valid TOML"),
    ],
)
def test_a_bad_rules_file_is_refused_naming_the_file_and_the_rule(
    tmp_path: Path, toml: str, message: str
) -> None:
    settings = rules_file(tmp_path, toml)
    with pytest.raises(ConfigError, match=message) as caught:
        load_rules(settings)
    assert str(tmp_path / "rules.toml") in str(caught.value)


def test_a_missing_rules_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_rules(AlertSettings(rules_file=tmp_path / "nope.toml"))


def test_an_unknown_builtin_in_the_settings_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"alerts\.builtin.*'disk' is not a built-in"):
        load_rules(AlertSettings(builtin={"disk": RuleOverride(enabled=False)}))


def test_a_disabled_custom_rule_is_checked_but_not_loaded(tmp_path: Path) -> None:
    settings = rules_file(
        tmp_path,
        '[[rules]]\nname = "x"\nfield = "cpu"\nop = ">"\nthreshold = 1\nenabled = false\n',
    )
    assert [r.name for r in load_rules(settings)] == [r.name for r in BUILTIN_RULES]


def test_disabled_alerting_settings_are_valid() -> None:
    assert AlertSettings(enabled=False).enabled is False
