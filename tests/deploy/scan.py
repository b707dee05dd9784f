"""Look for secret values in every file of the deployed hosts (issue 12, item 4).

A secret may reach a service through an encrypted systemd credential (decrypted into
/run, in memory), the environment, or Infisical; it must never sit in a plain file.
:func:`scan_hosts` reads every regular file of each running host outside /proc, /sys,
/dev and /run (tmpfs mounts such as /tmp and the journal included: ``tar`` runs inside
the host) and reports each file that holds a value.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from tests.fixtures.hosts import Host

MIN_NEEDLE = 12  # shorter values would match by chance


def pem_body(pem: str) -> list[str]:
    """The base64 lines of a PEM block (the armour lines are the same for every key)."""
    return [line.strip() for line in pem.splitlines() if line.strip() and "-----" not in line]


def needles(values: Mapping[str, str]) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    for label, value in values.items():
        lines = pem_body(value) if "-----BEGIN" in value else [value.strip()]
        for index, line in enumerate(lines):
            if len(line) < MIN_NEEDLE:
                raise ValueError(f"{label}: a value of {len(line)} characters is too short")
            found[label if len(lines) == 1 else f"{label}[{index}]"] = line.encode()
    return found


def scan_hosts(hosts: Iterable[Host], values: Mapping[str, str]) -> dict[str, list[str]]:
    """``{label: ["host:/path", ...]}`` for each value found in some file."""
    wanted = needles(values)
    hits: dict[str, list[str]] = {}
    for host in hosts:
        for path, data in host.files():
            for label, needle in wanted.items():
                if needle in data:
                    hits.setdefault(label, []).append(f"{host.name}:{path}")
    return hits
