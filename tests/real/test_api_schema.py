"""Schemathesis over the live server's OpenAPI: generated requests, valid and not,
never get a 5xx."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from tests.fixtures.api import ApiServer
from web_api.auth.roles import Role

EXAMPLES = 15
UNLIMITED = {
    "rate_per_client": 1e6,
    "burst_per_client": 1e6,
    "rate_per_user": 1e6,
    "burst_per_user": 1e6,
}


def test_generated_requests_never_get_a_server_error(
    api_server: Callable[..., ApiServer],
) -> None:
    api = api_server(**UNLIMITED)
    document = httpx.get(f"{api.base_url}/openapi.json").json()
    schema = schemathesis.openapi.from_dict(document)
    headers = {"Authorization": f"Bearer {api.tokens[Role.ADMIN]}"}
    failures: list[str] = []
    operations = 0
    seen: dict[int, int] = {}
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]  # an Err raises here, as wanted
        operations += 1
        strategy = st.one_of(
            operation.as_strategy(GenerationMode.POSITIVE),
            operation.as_strategy(GenerationMode.NEGATIVE),
        )

        @given(case=strategy)
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: schemathesis.Case[Any]) -> None:
            answer = case.call(base_url=api.base_url, headers=headers, timeout=30)
            seen[answer.status_code] = seen.get(answer.status_code, 0) + 1
            if answer.status_code >= 500:
                failures.append(
                    f"{case.method} {case.formatted_path} {case.query} {case.body!r:.200}"
                    f" -> {answer.status_code} {answer.text[:200]}"
                )

        run()
    assert any(200 <= code < 300 for code in seen), seen
    assert any(400 <= code < 500 for code in seen), seen
    assert operations >= 25
    assert not failures, "\n".join(failures[:20])
