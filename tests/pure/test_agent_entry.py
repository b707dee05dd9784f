"""The agent's command line stays light: ``arete agent run`` never loads Typer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROBE = """
import sys
from arete_cli.launch import main
sys.argv = ["arete", "agent", "run", "--config", sys.argv[1]]
try:
    main()
except SystemExit as exc:
    print("exit", exc.code)
print("typer loaded", "typer" in sys.modules)
"""


def test_agent_run_does_not_import_typer_and_reports_bad_config(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.toml"
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(missing)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "exit 2" in done.stdout
    assert "typer loaded False" in done.stdout
    assert f"config file {missing} does not exist" in done.stderr


def test_agent_run_help_documents_exit_codes() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "arete_cli", "agent", "run", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0
    assert "--config" in done.stdout
    assert "64 after a 'stop' command" in done.stdout
