"""How ``arete up`` turns each child's line into one prefixed line (or JSON object)."""

from __future__ import annotations

import io
import json
import time

from arete_cli.console import Output, parse, render, wanted

NOW = time.mktime((2026, 12, 6, 7, 30, 15, 0, 0, -1))


def test_agent_json_becomes_message_and_key_values_with_the_common_time() -> None:
    raw = json.dumps(
        {"ts": NOW, "level": "warning", "logger": "arete.agent", "event": "link lost", "n": 2}
    )
    line = parse("agent", raw)
    assert line is not None
    assert render(line, "console") == "07:30:15 agent   | WARNING link lost n=2"


def test_web_run_lines_say_whether_the_maestro_or_the_api_wrote_them() -> None:
    maestro = parse("web", json.dumps({"ts": NOW, "logger": "arete.maestro.x", "event": "a"}))
    api = parse("web", json.dumps({"ts": NOW, "logger": "uvicorn.error", "event": "b"}))
    assert maestro is not None
    assert maestro.component == "maestro"
    assert api is not None
    assert api.component == "web"


def test_mosquitto_lines_lose_their_own_timestamp_and_keep_their_level() -> None:
    line = parse("broker", "2026-12-06T07:30:15: Warning: ACL pattern has no %c")
    assert line is not None
    assert render(line, "console") == "07:30:15 broker  | WARNING ACL pattern has no %c"
    epoch = parse("broker", f"{int(NOW)}: Client pc disconnected.")
    assert epoch is not None
    assert render(epoch, "console") == "07:30:15 broker  | Client pc disconnected."


def test_access_lines_only_at_debug_and_levels_filter() -> None:
    access = parse("web", json.dumps({"ts": NOW, "logger": "uvicorn.access", "event": "GET / 200"}))
    assert access is not None
    assert not wanted(access, "info")
    assert wanted(access, "debug")
    debug = parse("agent", json.dumps({"ts": NOW, "level": "debug", "event": "x"}))
    assert debug is not None
    assert not wanted(debug, "info")


def test_json_output_has_iso_time_component_and_fields() -> None:
    line = parse("agent", json.dumps({"ts": NOW, "event": "agent starting", "agent_id": "pc"}))
    assert line is not None
    document = json.loads(render(line, "json"))
    assert document["component"] == "agent"
    assert document["ts"].startswith("2026-12-06T07:30:15.000")
    assert document["agent_id"] == "pc"
    assert document["event"] == "agent starting"


def test_plain_text_and_broken_json_are_printed_as_they_are() -> None:
    out = io.StringIO()
    output = Output("console", "info", out)
    for raw in ("broker: mqtt://127.0.0.1:1883", '{"not": "a log line"', "", "error: boom"):
        line = parse("broker", raw, now=NOW)
        if line is not None:
            output.write(line)
    assert out.getvalue().splitlines() == [
        "07:30:15 broker  | broker: mqtt://127.0.0.1:1883",
        '07:30:15 broker  | {"not": "a log line"',
        "07:30:15 broker  | ERROR error: boom",
    ]


def test_bare_tcp_connections_to_the_broker_are_debug_lines_and_clients_stay_visible() -> None:
    probe = parse("broker", "2026-12-06T07:30:15: New connection from 127.0.0.1:4 on port 1")
    gone = parse("broker", "2026-12-06T07:30:15: Client <unknown> closed its connection.")
    client = parse("broker", "2026-12-06T07:30:15: New client connected from 127.0.0.1:5 as pc")
    assert probe is not None
    assert gone is not None
    assert client is not None
    assert not wanted(probe, "info")
    assert not wanted(gone, "info")
    assert wanted(client, "info")


def test_services_json_log_lines_carry_the_same_iso_time_that_up_reads_back() -> None:
    import logging

    from arete.logs import _KvFormatter

    record = logging.LogRecord("arete.agent", logging.INFO, __file__, 1, "hello", None, None)
    record.created = NOW + 0.25
    document = json.loads(_KvFormatter(as_json=True).format(record))
    assert document["ts"].startswith("2026-12-06T07:30:15.250")
    line = parse("agent", json.dumps(document))
    assert line is not None
    assert render(line, "console") == "07:30:15 agent   | hello"
