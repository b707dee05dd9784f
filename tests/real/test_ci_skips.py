"""CI=true turns a skip into a failure (tests/fixtures/ci.py): run pytest on a test that
skips, the way a missing chromium or dashboard build skips the browser tier."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SKIPPING = """
import pytest

pytestmark = pytest.mark.skipif(True, reason="the dashboard is not built")

def test_browser_tier():
    pass

@pytest.mark.ci_may_skip
def test_needs_a_machine_without_a_gpu():
    pytest.skip("this machine has a GPU")
"""


def run_pytest(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_skipping.py").write_text(SKIPPING)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "tests.fixtures.ci",
            "-q",
            "-rA",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(tmp_path),
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
        cwd=tmp_path,
    )


def test_in_ci_a_skipped_tier_fails_and_says_what_is_missing(tmp_path: Path) -> None:
    done = run_pytest(tmp_path, "true")
    assert done.returncode == 1, done.stdout
    assert "1 skipped, 1 error" in done.stdout  # a skip at setup fails as an error
    assert "skipped in CI" in done.stdout
    assert "the dashboard is not built" in done.stdout


def test_outside_ci_it_still_skips(tmp_path: Path) -> None:
    done = run_pytest(tmp_path, None)
    assert done.returncode == 0, done.stdout
    assert "2 skipped" in done.stdout
