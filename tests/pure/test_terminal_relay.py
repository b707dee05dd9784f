"""The relay's pure parts: browser messages, output text, and loss detection by seq."""

from __future__ import annotations

import asyncio

import pytest

from arete.terminal import Exit, ExitReason, Output
from maestro.terminal import MAX_QUEUED_FRAMES, Lost, TerminalSession
from web_api.terminal import (
    LOST_NOTICE,
    ClientFrameError,
    CloseSession,
    OutputText,
    ResizeTo,
    TypeIn,
    parse_client_frame,
    size_from_query,
)


class FakeHub:
    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.finished_sessions: list[TerminalSession] = []

    async def send(self, session: TerminalSession, payload: bytes) -> None:
        self.sent.append(payload)

    def finished(self, session: TerminalSession) -> None:
        self.finished_sessions.append(session)


def new_session() -> tuple[TerminalSession, FakeHub]:
    hub = FakeHub()
    session = TerminalSession(hub, "a1", "s1", actor="user:alice", cols=80, rows=24)  # type: ignore[arg-type]
    return session, hub


def drain(session: TerminalSession) -> list[object]:
    async def collect() -> list[object]:
        events: list[object] = []
        while True:
            try:
                events.append(await session.next_event(timeout_s=0))
            except TimeoutError:
                return events

    return asyncio.run(collect())


# -- browser messages ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "frame"),
    [
        ('{"type":"input","data":"ls\\r"}', TypeIn("ls\r")),
        ('{"type":"resize","cols":132,"rows":43}', ResizeTo(132, 43)),
        ('{"type":"close"}', CloseSession()),
    ],
)
def test_browser_messages_become_frames(text: str, frame: object) -> None:
    assert parse_client_frame(text) == frame


@pytest.mark.parametrize(
    "text",
    [
        "ls",
        "[]",
        '{"type":"input"}',
        '{"type":"input","data":7}',
        '{"type":"resize","cols":0,"rows":10}',
        '{"type":"resize","cols":80,"rows":1001}',
        '{"type":"resize","cols":true,"rows":10}',
        '{"type":"resize","cols":"80","rows":10}',
        '{"type":"exec","data":"rm"}',
        '{"type":"input","data":"' + "x" * 300_000 + '"}',
    ],
)
def test_bad_browser_messages_are_refused_with_a_reason(text: str) -> None:
    with pytest.raises(ClientFrameError):
        parse_client_frame(text)


def test_query_sizes_default_and_are_checked() -> None:
    assert size_from_query(None, 80) == 80
    assert size_from_query("132", 80) == 132
    for bad in ("0", "abc", "1001", "-3"):
        with pytest.raises(ClientFrameError):
            size_from_query(bad, 80)


# -- output to the browser -----------------------------------------------------------------
def test_a_character_split_across_two_frames_arrives_whole() -> None:
    text = OutputText()
    euro = "€".encode()
    first = text.message(Output(seq=0, data=b"price: " + euro[:2]))
    second = text.message(Output(seq=1, data=euro[2:] + b"5"))
    assert first == {"type": "output", "data": "price: "}
    assert second == {"type": "output", "data": "€5"}


def test_loss_and_exit_become_a_notice_and_an_exit_message() -> None:
    text = OutputText()
    assert text.message(Lost(2)) == {"type": "output", "data": LOST_NOTICE}
    assert text.message(Exit(seq=3, reason=ExitReason.EXITED, code=3)) == {
        "type": "exit",
        "code": 3,
        "reason": "exited",
        "message": "",
    }


def test_undecodable_bytes_become_replacement_characters() -> None:
    assert OutputText().message(Output(seq=0, data=b"a\xffb")) == {
        "type": "output",
        "data": "a\ufffdb",
    }


# -- sequence numbers ----------------------------------------------------------------------
def test_a_gap_in_sequence_numbers_is_reported_as_lost_frames() -> None:
    session, _ = new_session()
    session.receive(Output(seq=0, data=b"a"))
    session.receive(Output(seq=3, data=b"d"))  # 1 and 2 never came
    session.receive(Output(seq=3, data=b"d"))  # a duplicate is ignored
    assert drain(session) == [Output(seq=0, data=b"a"), Lost(2), Output(seq=3, data=b"d")]
    assert session.lost_frames == 2
    assert session.bytes_out == 2


def test_the_exit_frame_ends_the_session_once_and_later_frames_are_ignored() -> None:
    session, hub = new_session()
    session.receive(Output(seq=0, data=b"bye"))
    session.receive(Exit(seq=1, reason=ExitReason.CLOSED))
    session.receive(Output(seq=2, data=b"late"))
    session.agent_gone()
    assert drain(session)[-1] == Exit(seq=1, reason=ExitReason.CLOSED)
    assert session.ended
    assert hub.finished_sessions == [session]


def test_an_agent_that_goes_offline_ends_the_session_with_an_error_exit() -> None:
    session, hub = new_session()
    session.agent_gone()
    (event,) = drain(session)
    assert isinstance(event, Exit)
    assert event.reason is ExitReason.ERROR
    assert "offline" in event.message
    assert hub.finished_sessions == [session]


def test_a_reader_that_does_not_keep_up_loses_frames_instead_of_memory() -> None:
    session, _ = new_session()
    for seq in range(MAX_QUEUED_FRAMES + 10):
        session.receive(Output(seq=seq, data=b"x"))
    events = drain(session)
    assert len([e for e in events if isinstance(e, Output)]) == MAX_QUEUED_FRAMES
    assert session.lost_frames == 10


def test_resizing_outside_the_limits_is_refused() -> None:
    from maestro.errors import CommandError

    session, hub = new_session()
    with pytest.raises(CommandError):
        asyncio.run(session.resize(0, 24))
    asyncio.run(session.resize(100, 30))
    assert len(hub.sent) == 1
