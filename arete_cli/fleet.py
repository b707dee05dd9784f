"""``arete fleet update``: start a fleet rollout through the REST API and follow it.

It talks to a running web API (``--url`` / ``ARETE_API_URL``) with an API token
(``ARETE_API_TOKEN`` or ``--token-file``; never an argument, which other users of the
machine could read in the process list), POSTs ``/jobs/update`` and polls
``GET /jobs/{id}`` until the rollout (its rollback included) is over: a progress bar on
a terminal, one line per change otherwise. Exit code 0 when the rollout is done, 1
when it failed or was stopped, 2 when the API refused to start it.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Final

import typer

DEFAULT_URL: Final = "http://127.0.0.1:8080"
TOKEN_ENV: Final = "ARETE_API_TOKEN"  # noqa: S105 - the variable's name, not a token
BAR_WIDTH: Final = 30
ORDER: Final = (
    "healthy",
    "switched",
    "installing",
    "sent",
    "waiting",
    "rolling_back",
    "rolled_back",
    "failed",
)

fleet_app = typer.Typer(
    help="Fleet-wide operations through the web API (ARETE_API_URL, ARETE_API_TOKEN).",
    no_args_is_help=True,
)


class ApiProblemError(Exception):
    """The API answered with an error (or not at all)."""


# -- pure: what is shown --------------------------------------------------------------
def parse_selector(pairs: Sequence[str]) -> dict[str, str]:
    """``role=web`` (repeatable, or comma-separated) as a label selector."""
    labels: dict[str, str] = {}
    for item in pairs:
        for pair in item.split(","):
            key, sep, value = pair.strip().partition("=")
            if not sep or not key:
                raise typer.BadParameter(f"a selector reads key=value, not {pair!r}")
            labels[key] = value
    return labels


def phase_counts(job: dict[str, Any]) -> str:
    phases: dict[str, int] = (job.get("rollout") or {}).get("phases") or {}
    return " ".join(f"{p}={phases[p]}" for p in ORDER if phases.get(p))


def progress_line(job: dict[str, Any], width: int = BAR_WIDTH) -> str:
    """One line: a bar of settled agents, the stage and batch, counts by phase."""
    rollout = job.get("rollout") or {}
    phases: dict[str, int] = rollout.get("phases") or {}
    total = max(1, int(job.get("total") or 0))
    healthy = phases.get("healthy", 0)
    bad = sum(phases.get(p, 0) for p in ("failed", "rolled_back"))
    done = min(width, round(width * healthy / total))
    failed = min(width - done, round(width * bad / total))
    bar = "#" * done + "x" * failed + "." * (width - done - failed)
    stage = rollout.get("stage", "?")
    where = f"batch {rollout.get('batch', 0)}/{max(0, rollout.get('batches', 1) - 1)}"
    if stage == "canary":
        where = "canary"
    return f"[{bar}] {healthy}/{total} healthy  {job.get('state')} {stage} {where}  " + (
        phase_counts(job)
    )


def final_lines(job: dict[str, Any]) -> list[str]:
    """The outcome, and every agent that did not end healthy with its reason."""
    rollout = job.get("rollout") or {}
    lines = [
        f"job {job.get('id')}: {job.get('state')} (version {rollout.get('version')}, "
        f"{job.get('total')} agents: {phase_counts(job)})"
    ]
    if job.get("stopped_reason"):
        lines.append(f"  reason: {job['stopped_reason']}")
    for agent in rollout.get("agents") or []:
        if agent.get("phase") not in ("healthy", "waiting"):
            lines.append(f"  {agent['id']}: {agent['phase']}: {agent.get('reason') or ''}")
    return lines


# -- I/O ------------------------------------------------------------------------------
class Api:
    def __init__(self, url: str, token: str, timeout_s: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout_s = timeout_s

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 - the operator's own API URL
            self.url + path,
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as answer:  # noqa: S310
                return json.loads(answer.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise ApiProblemError(f"{exc.code} {_detail(exc.read())}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise ApiProblemError(f"cannot reach {self.url}: {exc}") from None


def _detail(raw: bytes) -> str:
    try:
        body = json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")[:300]
    if isinstance(body, dict) and "detail" in body:
        return f"{body.get('error', '')}: {body['detail']}"
    return str(body)[:300]


def read_token(token_file: Path | None) -> str:
    if token_file is not None:
        try:
            return token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            typer.echo(f"error: cannot read {token_file}: {exc.strerror}", err=True)
            raise typer.Exit(2) from None
    token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        typer.echo(f"error: set {TOKEN_ENV} or give --token-file", err=True)
        raise typer.Exit(2)
    return token


def follow(api: Api, job_id: str, *, interval_s: float, tty: bool) -> dict[str, Any]:
    """Poll the job until it is over (``finished_at``), showing its progress."""
    shown = ""
    while True:
        job: dict[str, Any] = api.call("GET", f"/jobs/{job_id}")
        line = progress_line(job)
        if tty:
            sys.stdout.write("\r" + line[:200].ljust(len(shown)))
            sys.stdout.flush()
        elif line != shown:
            typer.echo(line)
        shown = line
        if job.get("finished_at") is not None:
            if tty:
                sys.stdout.write("\n")
            return job
        time.sleep(interval_s)


@fleet_app.command("update")
def update(  # noqa: PLR0917 - Typer passes CLI options as keyword arguments
    version: Annotated[
        str, typer.Option("--version", metavar="VERSION", help="The release to roll out.")
    ],
    selector: Annotated[
        list[str],
        typer.Option(
            "--selector",
            metavar="KEY=VALUE",
            help="key=value labels the agents must all have (repeat).",
        ),
    ] = [],  # noqa: B006 - Typer copies defaults
    agents: Annotated[
        str | None,
        typer.Option("--agents", metavar="IDS", help="Only these agents (comma-separated)."),
    ] = None,
    canary: Annotated[
        int, typer.Option(metavar="N", help="Agents updated alone first.", min=0)
    ] = 1,
    batch: Annotated[
        int, typer.Option(metavar="N", help="Agents per batch after the canary.", min=1)
    ] = 10,
    max_failures: Annotated[
        int, typer.Option(metavar="N", help="More failures halt it.", min=0)
    ] = 0,
    health_timeout: Annotated[
        float, typer.Option(metavar="S", help="Seconds per agent to pass the health gate.", min=10)
    ] = 180.0,
    rollback: Annotated[
        bool, typer.Option("--rollback/--no-rollback", help="Send switched agents back on a halt.")
    ] = True,
    url: Annotated[
        str, typer.Option(envvar="ARETE_API_URL", metavar="URL", help="The web API's base URL.")
    ] = DEFAULT_URL,
    token_file: Annotated[
        Path | None,
        typer.Option(metavar="FILE", help=f"A file holding the API token (else ${TOKEN_ENV})."),
    ] = None,
    interval: Annotated[
        float, typer.Option(metavar="S", help="Seconds between polls.", min=0.2)
    ] = 1.0,
) -> None:
    """Roll a release out to the agents chosen by labels: a canary first, then batches,
    each gated on every agent proving healthy on the new version; more than
    --max-failures failures halt the rollout and send the agents it switched back.

    Examples:

      arete fleet update --version 0.2.0 --selector role=web

      arete fleet update --version 0.2.0 --agents web1,web2 --canary 0 --batch 2

    Exit code: 0 done, 1 failed or stopped, 2 refused (the reason is printed).
    """
    body: dict[str, Any] = {
        "version": version,
        "labels": parse_selector(selector),
        "canary": canary,
        "batch_size": batch,
        "max_failures": max_failures,
        "health_timeout_s": health_timeout,
        "rollback_on_abort": rollback,
    }
    if agents:
        body["agents"] = [a.strip() for a in agents.split(",") if a.strip()]
    api = Api(url, read_token(token_file))
    try:
        job = api.call("POST", "/jobs/update", body)
    except ApiProblemError as exc:
        typer.echo(f"error: the rollout was not started: {exc}", err=True)
        raise typer.Exit(2) from None
    rollout = job.get("rollout") or {}
    typer.echo(
        f"job {job['id']}: {version} to {job['total']} agents "
        f"({rollout.get('batches', 0)} batches, canary {canary})"
    )
    try:
        job = follow(api, job["id"], interval_s=interval, tty=sys.stdout.isatty())
    except ApiProblemError as exc:
        typer.echo(f"\nerror: lost the job: {exc} (it goes on: GET /jobs/{job['id']})", err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        typer.echo(
            f"\ninterrupted: the rollout goes on; stop it with POST /jobs/{job['id']}/abort",
            err=True,
        )
        raise typer.Exit(130) from None
    for line in final_lines(job):
        typer.echo(line)
    raise typer.Exit(0 if job.get("state") == "done" else 1)
