"""How the sink reads a failed write, and how long it waits before the next try."""

from __future__ import annotations

import email.utils

import pytest
from influxdb_client.rest import ApiException
from urllib3 import HTTPResponse
from urllib3.exceptions import NewConnectionError, ReadTimeoutError

from arete.backoff import Backoff
from maestro.influx.failures import (
    MAX_RETRY_AFTER_S,
    WriteFailure,
    classify_failure,
    parse_retry_after,
    retry_delay,
)

NOW = 1_800_000_000.0


def http_error(status: int, body: bytes = b"", retry_after: str | None = None) -> ApiException:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    response = HTTPResponse(body=body, status=status, headers=headers)
    return ApiException(http_resp=response)  # type: ignore[no-untyped-call]


def test_a_429_is_throttling_and_honours_retry_after() -> None:
    failure = classify_failure(http_error(429, b'{"message":"slow down"}', retry_after="7"))
    assert failure == WriteFailure("throttled", 429, "HTTP 429: slow down", 7.0)
    assert retry_delay(failure, Backoff(0.5, 30, rand=lambda: 1.0), 30) == 7.0


def test_a_429_without_retry_after_backs_off() -> None:
    failure = classify_failure(http_error(429))
    assert failure.kind == "throttled"
    assert failure.retry_after_s is None
    assert retry_delay(failure, Backoff(0.5, 30, rand=lambda: 1.0), 30) == 0.5


def test_retry_after_zero_does_not_make_a_busy_loop() -> None:
    failure = classify_failure(http_error(429, retry_after="0"))
    assert retry_delay(failure, Backoff(0.5, 30, rand=lambda: 1.0), 30) == 0.5


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408])
def test_server_errors_and_timeouts_are_an_outage(status: int) -> None:
    assert classify_failure(http_error(status)).kind == "unavailable"


def test_a_503_with_retry_after_waits_as_asked() -> None:
    failure = classify_failure(http_error(503, retry_after="12"))
    assert (failure.kind, failure.retry_after_s) == ("throttled", 12.0)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413])
def test_other_client_errors_are_rejections_retried_slowly(status: int) -> None:
    failure = classify_failure(
        http_error(status, b'{"code":"unauthorized","message":"unauthorized access"}')
    )
    assert failure.kind == "rejected"
    assert failure.status == status
    assert "unauthorized access" in failure.text
    assert retry_delay(failure, Backoff(0.5, 30, rand=lambda: 1.0), 30.0) == 30.0


def test_connection_errors_and_timeouts_are_an_outage() -> None:
    refused = classify_failure(NewConnectionError(None, "Connection refused"))  # type: ignore[arg-type]
    assert refused.kind == "unavailable"
    assert refused.status is None
    assert "NewConnectionError" in refused.text
    timeout = classify_failure(ReadTimeoutError(None, "/api/v2/write", "read timed out"))  # type: ignore[arg-type]
    assert timeout.kind == "unavailable"
    assert classify_failure(ConnectionRefusedError()).text == "ConnectionRefusedError"


def test_an_unexpected_error_is_treated_as_an_outage_not_a_crash() -> None:
    assert classify_failure(RuntimeError("boom\nsecond line")).text == "RuntimeError: boom"


def test_retry_after_as_http_date_and_garbage() -> None:
    in_ten_s = email.utils.formatdate(NOW + 10, usegmt=True)
    assert parse_retry_after(in_ten_s, NOW) == pytest.approx(10.0)
    assert parse_retry_after(email.utils.formatdate(NOW - 60, usegmt=True), NOW) == 0.0
    assert parse_retry_after("soon", NOW) is None
    assert parse_retry_after("-5", NOW) is None
    assert parse_retry_after(None, NOW) is None
    assert parse_retry_after("999999999", NOW) == MAX_RETRY_AFTER_S


def test_backoff_doubles_to_the_cap_with_jitter_and_resets() -> None:
    low = Backoff(0.5, 4.0, rand=lambda: 0.0)
    high = Backoff(0.5, 4.0, rand=lambda: 1.0)
    assert [high.next() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert [low.next() for _ in range(5)] == [0.25, 0.5, 1.0, 2.0, 2.0]
    high.reset()
    assert high.next() == 0.5


def test_outage_retries_follow_the_backoff() -> None:
    backoff = Backoff(1.0, 8.0, rand=lambda: 1.0)
    down = WriteFailure("unavailable", None, "ConnectionRefusedError")
    assert [retry_delay(down, backoff, 8.0) for _ in range(5)] == [1.0, 2.0, 4.0, 8.0, 8.0]
