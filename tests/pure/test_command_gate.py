"""The agent's command admission: every refusal reason, with plain inputs and a fixed clock."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from arete.commands import CommandName, ShellArgs
from arete.payloads import Command, ReplyState, encode
from arete.signing import sign_command
from edge_agent.gate import Admitted, Refused, Verify, admit

NOW = 1_800_000_000.0
KEY = Ed25519PrivateKey.generate()
PUBLIC = KEY.public_key()


def verify(signature: bytes, data: bytes) -> bool:
    try:
        PUBLIC.verify(signature, data)
    except Exception:
        return False
    return True


def command(**overrides: Any) -> Command:
    fields: dict[str, Any] = {
        "id": "c-1",
        "name": "shell",
        "args": {"argv": ["uptime"]},
        "issued_at": NOW - 1,
        "expires_at": NOW + 30,
    }
    fields.update(overrides)
    return Command(**fields)


def signed(cmd: Command, agent_id: str = "a1") -> Command:
    return sign_command(agent_id, cmd, KEY)


def run(
    payload: bytes,
    *,
    seen: set[str] | None = None,
    verifier: Verify | None = None,
    now: float = NOW,
    offset: float | None = None,
) -> Admitted | Refused:
    known = seen or set()
    return admit(
        payload,
        agent_id="a1",
        now=now,
        max_ttl_s=3600,
        seen=known.__contains__,
        verify=verifier,
        offset=offset,
    )


def refusal(result: Admitted | Refused) -> tuple[ReplyState, str]:
    assert isinstance(result, Refused), result
    return result.state, result.error.code


def test_valid_command_is_admitted_with_typed_args() -> None:
    result = run(encode(command()))
    assert isinstance(result, Admitted)
    assert result.name is CommandName.SHELL
    assert result.args == ShellArgs(argv=["uptime"])


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"not json",
        b"[1,2]",
        b"\xff\xfe",
        b'{"id": 5}',
        b"{" * 10_000,
        b"[" * 60_000,  # deeper than the recursion limit, under the size limit
        b'{"id": "c-1", "args": ' + b"[" * 60_000,
    ],
)
def test_garbage_is_rejected_as_malformed_or_schema(payload: bytes) -> None:
    state, code = refusal(run(payload))
    assert state is ReplyState.REJECTED
    assert code in {"malformed", "schema", "too_large"}


def test_rejection_of_a_broken_command_still_names_its_id() -> None:
    result = run(b'{"id": "c-77", "name": "shell", "args": {}, "issued_at": "x"}')
    assert isinstance(result, Refused)
    assert result.command_id == "c-77"


def test_oversized_payload_is_rejected_before_parsing() -> None:
    assert refusal(run(b'{"pad": "' + b"x" * 70_000 + b'"}')) == (ReplyState.REJECTED, "too_large")


def test_unknown_command_is_rejected() -> None:
    result = run(encode(command(name="format_disk", args={})))
    assert refusal(result) == (ReplyState.REJECTED, "unknown_command")


def test_bad_arguments_are_rejected_with_the_reason() -> None:
    result = run(encode(command(args={"argv": ["ls"], "command": "ls"})))
    assert refusal(result) == (ReplyState.REJECTED, "bad_args")
    assert isinstance(result, Refused)
    assert "exactly one" in result.error.message


def test_duplicate_id_is_rejected() -> None:
    assert refusal(run(encode(command()), seen={"c-1"})) == (ReplyState.REJECTED, "duplicate")


def test_expired_command_answers_expired_when_the_clocks_are_known_to_agree() -> None:
    result = run(encode(command(issued_at=NOW - 100, expires_at=NOW - 10)), offset=0.0)
    assert refusal(result) == (ReplyState.EXPIRED, "expired")
    assert isinstance(result, Refused)
    assert result.error.message == "command expired 10.0s ago"


def test_command_past_its_lifetime_on_the_maestros_clock_is_expired_whatever_ours_says() -> None:
    # Agent 30 s ahead; the command was issued 20 s ago by the maestro's clock, 10 s life.
    cmd = command(issued_at=NOW - 50, expires_at=NOW - 40)
    assert refusal(run(encode(cmd), offset=30.0)) == (ReplyState.EXPIRED, "expired")


@pytest.mark.parametrize("skew", [30.0, -45.0, 299.0, -299.0])
@pytest.mark.parametrize("known", [True, False])
def test_a_fresh_command_runs_on_an_agent_whose_clock_is_off_within_the_bound(
    skew: float, known: bool
) -> None:
    # The maestro issued it 0.2 s ago with the default 10 s life of `metrics`.
    issued = NOW - skew - 0.2
    cmd = command(name="metrics", args={}, issued_at=issued, expires_at=issued + 10)
    result = run(encode(cmd), offset=skew if known else None)
    assert isinstance(result, Admitted), result
    assert result.offset_s == pytest.approx(skew, abs=10.5)


@pytest.mark.parametrize("skew", [7200.0, -7200.0, 400.0, -400.0])
@pytest.mark.parametrize("known", [True, False])
def test_beyond_the_bound_a_fresh_command_is_refused_as_clock_skew_not_expired(
    skew: float, known: bool
) -> None:
    issued = NOW - skew - 0.2
    cmd = command(name="metrics", args={}, issued_at=issued, expires_at=issued + 10)
    result = run(encode(cmd), offset=skew if known else None)
    assert refusal(result) == (ReplyState.REJECTED, "clock_skew")
    assert isinstance(result, Refused)
    way = "ahead of" if skew > 0 else "behind"
    assert f"{abs(skew):.0f}s {way} the maestro's" in result.error.message or not known


def test_without_a_clock_estimate_a_queued_command_within_its_lifetime_runs() -> None:
    # Issued 20 min ago with a one-hour life, queued by the broker while the agent was away.
    cmd = command(issued_at=NOW - 1200, expires_at=NOW + 2400)
    assert isinstance(run(encode(cmd)), Admitted)


def test_a_command_that_arrives_sooner_than_the_estimate_allows_corrects_it() -> None:
    # A stale estimate says 60 s ahead; a command stamped 5 s ago proves it is at most 5.
    cmd = command(issued_at=NOW - 5, expires_at=NOW + 5)
    result = run(encode(cmd), offset=60.0)
    assert isinstance(result, Admitted)
    assert result.offset_s == 5.0


def test_command_with_no_lifetime_is_expired() -> None:
    cmd = command(issued_at=NOW, expires_at=NOW - 1)
    assert refusal(run(encode(cmd))) == (ReplyState.EXPIRED, "expired")


def test_command_living_longer_than_the_agent_allows_is_rejected() -> None:
    result = run(encode(command(expires_at=NOW + 2 * 3600)))
    assert refusal(result) == (ReplyState.REJECTED, "ttl_too_long")


def test_command_from_the_future_is_rejected() -> None:
    result = run(encode(command(issued_at=NOW + 600, expires_at=NOW + 900)))
    assert refusal(result) == (ReplyState.REJECTED, "clock_skew")


def test_signed_command_is_admitted_when_signing_is_on() -> None:
    assert isinstance(run(encode(signed(command())), verifier=verify), Admitted)


def test_unsigned_command_is_refused_when_signing_is_on() -> None:
    assert refusal(run(encode(command()), verifier=verify)) == (ReplyState.REJECTED, "unsigned")


def test_forged_command_is_refused() -> None:
    good = signed(command())
    forged = Command(
        id=good.id,
        name=good.name,
        args={"argv": ["rm", "-rf", "/"]},
        issued_at=good.issued_at,
        expires_at=good.expires_at,
        sig=good.sig,
    )
    assert refusal(run(encode(forged), verifier=verify)) == (ReplyState.REJECTED, "bad_signature")


def test_command_signed_for_another_agent_is_refused() -> None:
    other = signed(command(), agent_id="a2")
    assert refusal(run(encode(other), verifier=verify)) == (ReplyState.REJECTED, "bad_signature")


def test_signature_that_is_not_base64_is_refused() -> None:
    cmd = command(sig="!!not base64!!")
    assert refusal(run(encode(cmd), verifier=verify)) == (ReplyState.REJECTED, "bad_signature")


def test_replayed_signed_command_is_refused_as_duplicate() -> None:
    payload = encode(signed(command()))
    assert isinstance(run(payload, verifier=verify), Admitted)
    assert refusal(run(payload, seen={"c-1"}, verifier=verify)) == (
        ReplyState.REJECTED,
        "duplicate",
    )
