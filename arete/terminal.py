"""Remote terminal frames on ``<root>/term/<id>/<session>/{in,out}``, and their codecs.

A session is opened by the signed ``terminal`` command (:class:`arete.commands.TerminalArgs`),
so only the maestro can start one and the agent can verify it. After that, frames flow
on QoS 0 topics (a lost keystroke is better than a late one):

- ``.../in`` (maestro -> agent): :class:`Input` bytes, :class:`Resize`, :class:`Close`.
- ``.../out`` (agent -> maestro): :class:`Output` bytes and one final :class:`Exit`.

Out frames carry a ``seq`` counting from 0 (``Exit`` takes the next number), so the
relay can tell the user that output was lost. Bytes travel base64 in JSON (msgspec's
encoding of ``bytes``); the terminal's byte stream is not necessarily UTF-8 and a
multi-byte character may be split across two frames.
"""

from __future__ import annotations

from collections.abc import Iterator
from enum import StrEnum
from typing import Annotated, Final, TypeVar

import msgspec

from arete.errors import PayloadError
from arete.payloads import SCHEMA, NonNegInt

SessionId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,64}\Z")]
"""A session id: one topic level (the same rule as :meth:`arete.topics.Topics.term`)."""

TermSize = Annotated[int, msgspec.Meta(ge=1, le=1000)]
"""Columns or rows of a terminal."""

MAX_INPUT_BYTES: Final = 16 * 1024
"""Raw bytes in one :class:`Input` frame; a larger paste is split (:func:`input_frames`)."""
MAX_OUTPUT_BYTES: Final = 16 * 1024
"""Raw bytes in one :class:`Output` frame; the agent batches output up to this."""
MAX_FRAME_BYTES: Final = 32 * 1024
"""An encoded frame (base64 of the bytes and the envelope) is refused above this."""
MAX_MESSAGE_CHARS: Final = 1024


class ExitReason(StrEnum):
    EXITED = "exited"  # the shell ended (``exit``, Ctrl-D)
    CLOSED = "closed"  # a Close frame arrived (the user closed the terminal)
    IDLE = "idle"  # no input for the session's idle timeout
    AGENT_STOPPING = "agent_stopping"  # the agent is stopping or restarting
    ERROR = "error"  # the agent could not keep the session going (see ``message``)


class _Frame(msgspec.Struct, kw_only=True, frozen=True, tag_field="type"):
    schema: int = SCHEMA


class Input(_Frame, kw_only=True, frozen=True, tag="input"):
    """Bytes typed or pasted, written to the terminal as they are."""

    data: Annotated[bytes, msgspec.Meta(max_length=MAX_INPUT_BYTES)]


class Resize(_Frame, kw_only=True, frozen=True, tag="resize"):
    """The terminal's new size; the shell's foreground job gets SIGWINCH."""

    cols: TermSize
    rows: TermSize


class Close(_Frame, kw_only=True, frozen=True, tag="close"):
    """End the session: the shell's process group is hung up (SIGHUP, then SIGKILL)."""


class Output(_Frame, kw_only=True, frozen=True, tag="output"):
    """Bytes the terminal wrote, batched for about 20 ms."""

    seq: NonNegInt
    data: Annotated[bytes, msgspec.Meta(max_length=MAX_OUTPUT_BYTES)]


class Exit(_Frame, kw_only=True, frozen=True, tag="exit"):
    """The last frame of a session."""

    seq: NonNegInt
    reason: ExitReason
    code: int | None = None  # the shell's exit status; negative: killed by that signal
    message: Annotated[str, msgspec.Meta(max_length=MAX_MESSAGE_CHARS)] = ""


InFrame = Input | Resize | Close
OutFrame = Output | Exit

_encoder = msgspec.json.Encoder()
_in_decoder = msgspec.json.Decoder(InFrame)
_out_decoder = msgspec.json.Decoder(OutFrame)
_F = TypeVar("_F", bound=_Frame)


def encode_frame(frame: Input | Resize | Close | Output | Exit) -> bytes:
    return _encoder.encode(frame)


def decode_in(data: bytes | bytearray | memoryview) -> InFrame:
    """Decode a frame from ``.../in``; raise :class:`PayloadError` with a reason code."""
    frame: InFrame = _decode(data, _in_decoder, "terminal input frame")
    return frame


def decode_out(data: bytes | bytearray | memoryview) -> OutFrame:
    """Decode a frame from ``.../out``; raise :class:`PayloadError` with a reason code."""
    frame: OutFrame = _decode(data, _out_decoder, "terminal output frame")
    return frame


def input_frames(data: bytes) -> Iterator[Input]:
    """``data`` as Input frames of at most :data:`MAX_INPUT_BYTES` each, in order."""
    for start in range(0, len(data), MAX_INPUT_BYTES):
        yield Input(data=data[start : start + MAX_INPUT_BYTES])


def _decode(
    data: bytes | bytearray | memoryview, decoder: msgspec.json.Decoder[_F], what: str
) -> _F:
    if len(data) > MAX_FRAME_BYTES:
        raise PayloadError(
            f"{what} of {len(data)} bytes exceeds the {MAX_FRAME_BYTES}-byte limit",
            code="too_large",
        )
    try:
        frame = decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise PayloadError(f"invalid {what}: {exc}", code="schema") from None
    except msgspec.DecodeError as exc:
        raise PayloadError(f"undecodable {what}: {exc}", code="malformed") from None
    except RecursionError:  # deeper than the interpreter allows
        raise PayloadError(f"{what} nested too deeply", code="malformed") from None
    if frame.schema != SCHEMA:
        raise PayloadError(
            f"unsupported {what} schema {frame.schema} (this build speaks {SCHEMA})",
            code="schema",
        )
    return frame
