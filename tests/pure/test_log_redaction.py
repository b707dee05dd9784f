"""No secret in a log line: the redaction filter on the web API's loggers."""

from __future__ import annotations

import io
import logging

from uvicorn.logging import AccessFormatter

from web_api.logredact import RedactSecrets, install_log_redaction, redact

TOKEN = "arete_0123456789abcdef_" + "S3cr3t-value_" * 3


def test_credential_query_values_and_tokens_are_redacted() -> None:
    line = f"GET /ws?token={TOKEN}&cols=80 /terminal/a1?access_token=abc&password=pw2 {TOKEN}"
    cleaned = redact(line)
    assert TOKEN not in cleaned
    assert "abc" not in cleaned
    assert "pw2" not in cleaned
    assert "cols=80" in cleaned
    assert cleaned.count("[redacted]") == 4


def test_uvicorn_access_lines_keep_their_fields_but_lose_the_token() -> None:
    logger = logging.getLogger("test.redaction.access")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(AccessFormatter('%(client_addr)s - "%(request_line)s" %(status_code)s'))
    logger.addHandler(handler)
    logger.addFilter(RedactSecrets())
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.info(
        '%s - "%s %s HTTP/%s" %d', "127.0.0.1:5555", "GET", f"/ws?token={TOKEN}", "1.1", 101
    )
    assert stream.getvalue().strip() == (
        '127.0.0.1:5555 - "GET /ws?token=[redacted] HTTP/1.1" 101 Switching Protocols'
    )


def test_the_filter_is_installed_once_on_uvicorns_loggers() -> None:
    install_log_redaction()
    install_log_redaction()
    for name in ("uvicorn.access", "uvicorn.error"):
        filters = logging.getLogger(name).filters
        assert sum(isinstance(f, RedactSecrets) for f in filters) == 1
