"""Terminal frames on the ``term`` topics: what goes over the wire, and what is refused."""

from __future__ import annotations

import base64

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from arete.commands import TerminalArgs, parse_args
from arete.errors import CommandArgsError, PayloadError
from arete.terminal import (
    MAX_FRAME_BYTES,
    MAX_INPUT_BYTES,
    Close,
    Exit,
    ExitReason,
    Input,
    Output,
    Resize,
    decode_in,
    decode_out,
    encode_frame,
    input_frames,
)
from arete.topics import TermDirection, Topics


def test_input_bytes_travel_as_base64_in_a_typed_json_frame() -> None:
    wire = encode_frame(Input(data=b"ls -l\r"))
    assert msgspec.json.decode(wire) == {
        "type": "input",
        "schema": 1,
        "data": base64.b64encode(b"ls -l\r").decode(),
    }


@given(data=st.binary(max_size=MAX_INPUT_BYTES))
def test_any_bytes_round_trip_through_an_input_frame(data: bytes) -> None:
    assert decode_in(encode_frame(Input(data=data))) == Input(data=data)


@pytest.mark.parametrize(
    "frame",
    [Resize(cols=120, rows=40), Close()],
)
def test_control_frames_round_trip(frame: Resize | Close) -> None:
    assert decode_in(encode_frame(frame)) == frame


@pytest.mark.parametrize(
    "frame",
    [
        Output(seq=0, data=b"\x1b[32mok\x1b[0m\r\n"),
        Output(seq=7, data=b"\xff\xfe not utf-8"),
        Exit(seq=8, reason=ExitReason.EXITED, code=3),
        Exit(seq=0, reason=ExitReason.ERROR, message="cannot read the terminal"),
    ],
)
def test_output_frames_round_trip(frame: Output | Exit) -> None:
    assert decode_out(encode_frame(frame)) == frame


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"not json", "malformed"),
        (b'{"type":"shell","data":"bHM="}', "schema"),  # not a frame type
        (b'{"type":"output","seq":0,"data":""}', "schema"),  # an out frame on "in"
        (b'{"type":"input","data":"!!not base64"}', "schema"),
        (b'{"type":"input"}', "schema"),
        (b'{"type":"resize","cols":0,"rows":24}', "schema"),
        (b'{"type":"resize","cols":80,"rows":1001}', "schema"),
        (b'{"type":"input","schema":2,"data":""}', "schema"),
        (b"[" * 10_000, "schema"),
        (b'{"type":"input","data":"bHM=", "x":' + b"[" * 10_000, "malformed"),
        (b" " * (MAX_FRAME_BYTES + 1), "too_large"),
    ],
)
def test_bad_input_frames_are_refused_with_a_reason(payload: bytes, code: str) -> None:
    with pytest.raises(PayloadError) as caught:
        decode_in(payload)
    assert caught.value.code == code


def test_an_input_frame_over_its_byte_limit_is_refused() -> None:
    big = base64.b64encode(b"x" * (MAX_INPUT_BYTES + 1)).decode()
    with pytest.raises(PayloadError):
        decode_in(msgspec.json.encode({"type": "input", "data": big}))


def test_a_large_paste_is_split_into_frames_that_fit_and_keep_order() -> None:
    paste = bytes(range(256)) * 200  # 51200 bytes
    frames = list(input_frames(paste))
    assert len(frames) == 4
    assert all(len(encode_frame(f)) <= MAX_FRAME_BYTES for f in frames)
    assert b"".join(f.data for f in frames) == paste
    assert list(input_frames(b"")) == []


def test_a_full_output_frame_fits_the_frame_limit() -> None:
    frame = Output(seq=2**40, data=b"\xff" * 16 * 1024)
    assert len(encode_frame(frame)) <= MAX_FRAME_BYTES


def test_the_terminal_command_checks_its_session_id_and_size() -> None:
    args = parse_args("terminal", {"session": "Ab_-9", "cols": 132})
    assert args == TerminalArgs(session="Ab_-9", cols=132, rows=24, idle_timeout_s=900.0)
    for bad in (
        {"session": "a/b"},
        {"session": "+"},
        {"session": ""},
        {"session": "x" * 65},
        {"session": "ok", "rows": 0},
        {"session": "ok", "idle_timeout_s": 0},
        {},
    ):
        with pytest.raises(CommandArgsError):
            parse_args("terminal", bad)


def test_every_valid_session_id_makes_valid_topics() -> None:
    topics = Topics("arete")
    topic = topics.term("a1", "Ab_-9", TermDirection.OUT)
    parsed = topics.parse(topic)
    assert (parsed.agent_id, parsed.session, parsed.direction) == ("a1", "Ab_-9", TermDirection.OUT)
