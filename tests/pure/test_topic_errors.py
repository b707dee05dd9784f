"""Bad arguments to the topic builder raise the contract's TopicError, never a bare error."""

from __future__ import annotations

from typing import Any

import pytest

from arete.errors import AreteError, TopicError
from arete.topics import Topics


@pytest.mark.parametrize(
    "build",
    [
        lambda t: t.term("a1", "s1", "sideways"),
        lambda t: t.all_of("nope"),
        lambda t: t.status("bad id"),
        lambda t: t.term("a1", "bad/session", "in"),
    ],
)
def test_bad_arguments_raise_topic_error(build: Any) -> None:
    with pytest.raises(TopicError) as caught:
        build(Topics())
    assert isinstance(caught.value, AreteError)
    assert str(caught.value)
