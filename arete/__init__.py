"""Areté's contract: topics, payloads, commands and errors. Pure: no I/O.

Every other package (edge_agent, maestro, web_api, mosquitto) imports this one and
builds or parses topics and payloads only through it.
"""

from arete.commands import (
    ARG_MODELS,
    DEFAULT_TIMEOUT_S,
    MAX_COMMAND_TTL_S,
    CommandArgs,
    CommandName,
    command_name,
    parse_args,
)
from arete.errors import (
    AreteError,
    CommandArgsError,
    KeyFormatError,
    PayloadError,
    ReleaseRefused,
    TopicError,
    UnknownCommandError,
)
from arete.payloads import (
    SCHEMA,
    AgentState,
    Command,
    ErrorInfo,
    Heartbeat,
    Metrics,
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
from arete.signing import sign_command, signing_bytes
from arete.stored import Stored, decode_stored, seq_ranges
from arete.topics import DEFAULT_ROOT, RESERVED_IDS, Kind, Topics, validate_agent_id
from arete.version import __version__

__all__ = [
    "ARG_MODELS",
    "DEFAULT_ROOT",
    "DEFAULT_TIMEOUT_S",
    "MAX_COMMAND_TTL_S",
    "RESERVED_IDS",
    "SCHEMA",
    "AgentState",
    "AreteError",
    "Command",
    "CommandArgs",
    "CommandArgsError",
    "CommandName",
    "ErrorInfo",
    "Heartbeat",
    "KeyFormatError",
    "Kind",
    "Metrics",
    "PayloadError",
    "ReleaseRefused",
    "Reply",
    "ReplyState",
    "Sample",
    "Status",
    "Stored",
    "TopicError",
    "Topics",
    "UnknownCommandError",
    "__version__",
    "command_name",
    "decode_command",
    "decode_heartbeat",
    "decode_metrics",
    "decode_reply",
    "decode_status",
    "decode_stored",
    "encode",
    "encode_metrics",
    "is_stale",
    "parse_args",
    "seq_ranges",
    "sign_command",
    "signing_bytes",
    "validate_agent_id",
]
