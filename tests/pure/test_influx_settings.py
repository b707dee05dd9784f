"""Settings of the InfluxDB sink: off by default, clear errors, the token never shown."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from maestro.influx.settings import InfluxSettings

REPO = Path(__file__).resolve().parents[2]


def test_the_sink_is_off_unless_a_url_is_set() -> None:
    assert not InfluxSettings().enabled
    assert InfluxSettings(url="https://influx.example:8086").enabled


@pytest.mark.parametrize(
    "url",
    ["influx:8086", "ftp://host", "http://", "http://host:99999", "http://u:p@host", "x"],
)
def test_a_url_that_is_not_plain_http_or_https_is_refused(url: str) -> None:
    with pytest.raises(ValidationError, match="url"):
        InfluxSettings(url=url)


@pytest.mark.parametrize("token", ["changeme", "my-token", "token", "  ", "My-Token"])
def test_placeholder_tokens_are_refused(token: str) -> None:
    with pytest.raises(ValidationError, match="token"):
        InfluxSettings(url="http://127.0.0.1:8086", token=SecretStr(token))


def test_a_refused_token_is_not_repeated_in_the_error() -> None:
    with pytest.raises(ValidationError, match="one word") as caught:
        InfluxSettings(url="http://127.0.0.1:8086", token=SecretStr("Abc123 Secret-Part"))
    assert "Secret-Part" not in str(caught.value)


def test_the_token_is_read_from_a_file_and_never_shown(tmp_path: Path) -> None:
    token_file = tmp_path / "influx.token"
    token_file.write_text("s3cr3t-Tok3n-value\n")
    token_file.chmod(0o600)
    settings = InfluxSettings(url="http://127.0.0.1:8086", token_file=token_file)
    assert settings.token_value() == "s3cr3t-Tok3n-value"
    assert "s3cr3t" not in repr(settings)
    assert "s3cr3t" not in str(settings.model_dump())


def test_a_missing_token_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="cannot read token_file"):
        InfluxSettings(url="http://127.0.0.1:8086", token_file=tmp_path / "absent")


def test_token_and_token_file_together_are_refused(tmp_path: Path) -> None:
    token_file = tmp_path / "t"
    token_file.write_text("abcdef123456")
    with pytest.raises(ValidationError, match="not both"):
        InfluxSettings(url="http://x:1", token=SecretStr("abcdef123456"), token_file=token_file)


def test_no_token_is_allowed_for_servers_that_need_none() -> None:
    assert InfluxSettings(url="http://127.0.0.1:8428").token_value() is None


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("retry_max_s", 0.1, "retry_max_s"),
        ("max_spool_rows", 10, "max_spool_rows"),
        ("batch_lines", 0, "batch_lines"),
        ("measurement", "#arete", "measurement"),
        ("flush_s", 0, "flush_s"),
        ("unknown", 1, "unknown"),
    ],
)
def test_bad_values_are_refused_with_the_field_named(
    field: str, value: object, message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        InfluxSettings.model_validate({"url": "http://h:1", field: value})


def test_influxdb_client_is_only_imported_inside_functions() -> None:
    """A maestro without the sink must not pay for loading influxdb-client."""
    for path in sorted((REPO / "maestro").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:  # module level only
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not any(name.startswith("influxdb_client") for name in names), path
