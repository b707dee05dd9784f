"""Only ``arete/`` builds topic strings: no other package may write one by hand.

A hand-built topic drifts from the contract the day the contract changes (a new root, a
new level) and escapes every test of ``arete.topics``. Build topics with
``arete.topics.Topics`` instead.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHECKED = ["edge_agent", "mosquitto", "maestro", "web_api", "arete_cli", "bench"]

_KINDS = r"(status|metrics|heartbeat|cmd|reply|term|alerts|stored|release)"
STRAY_TOPIC = re.compile(
    # "arete/status/{...}", 'cmd/%u', "reply/+" ... (the before-stop hook's pattern)
    rf"[\"'](arete/)?{_KINDS}/[{{%+#]"
    # "pattern write arete/reply/%u": the default root anywhere inside a string
    rf"|[\"'][^\"'\n]*\barete/{_KINDS}/[{{%+#]"
    # f"{root}/status/{agent_id}", f"{self.topic_root}/cmd/+"
    rf"|\{{[^{{}}\n]*root[^{{}}\n]*\}}/{_KINDS}/"
    # "$share/group/..." shared subscriptions: Topics.shared builds them
    r"|[\"']\$share/"
)


def strays_in(text: str) -> list[str]:
    return [
        f"{number}: {line.strip()}"
        for number, line in enumerate(text.splitlines(), start=1)
        if STRAY_TOPIC.search(line)
    ]


@pytest.mark.parametrize(
    "line",
    [
        'topic = f"arete/status/{agent_id}"',
        "sub = 'arete/metrics/+'",
        'ack = f"arete/stored/{agent_id}"',
        'acl = "pattern write arete/reply/%u"',
        'client.subscribe("cmd/#")',
        'topic = f"{self.root}/heartbeat/{agent_id}"',
        'topic = f"{settings.mqtt.root}/term/{agent_id}/{session}/out"',
        'client.subscribe("$share/maestro/arete/metrics/+")',
    ],
)
def test_detector_flags_hand_built_topics(line: str) -> None:
    assert strays_in(line)


@pytest.mark.parametrize(
    "line",
    [
        "topic = topics.status(agent_id)",
        'log.info("status published", extra={"kv": {"topic": topic}})',
        'path = f"/api/agents/{agent_id}/status"',
        'help="Show the status of agents."',
        'root = "arete"',
    ],
)
def test_detector_leaves_ordinary_code_alone(line: str) -> None:
    assert not strays_in(line)


def test_no_package_outside_arete_builds_topic_strings() -> None:
    found = [
        f"{path.relative_to(REPO)}:{stray}"
        for package in CHECKED
        for path in sorted((REPO / package).rglob("*.py"))
        for stray in strays_in(path.read_text(encoding="utf-8"))
    ]
    assert not found, "topic strings built outside arete/ (use arete.topics.Topics):\n" + (
        "\n".join(found)
    )
