"""What a caller may read of commands whose arguments and output can carry secrets.

``shell`` runs what its arguments say and returns what the program printed; a terminal
carries a whole session. On MQTT the viewer is kept from replies for that reason; here
every answer that shows commands (``/commands``, their history, ``/audit``, ``/jobs``
and ``/ws`` events) hides their arguments, results and error texts from any role below
the one that may run them (admin). The record itself (who, when, which agent, state)
stays visible: that something ran is not a secret, what it did may be.
"""

from __future__ import annotations

from typing import Any, Final

from web_api.auth.roles import Role, role_for_command

PRIVATE_COMMANDS: Final = frozenset({"shell", "terminal"})
HIDDEN: Final = "hidden: only a role that may run this command sees it"
# Audit detail keys that stay visible for a private command's entry.
_AUDIT_KEPT: Final = ("command_id", "name", "code")


def hidden(role: Role, command_name: object) -> bool:
    """Whether ``role`` must not see the arguments and output of ``command_name``."""
    name = str(command_name)
    return name in PRIVATE_COMMANDS and not role.allows(role_for_command(name))


def command_view(role: Role, record: dict[str, Any]) -> dict[str, Any]:
    """A command record (``CommandRecord.to_dict()`` or a ``command`` event) as ``role``
    may read it: a private command's args, result and error message removed."""
    if not hidden(role, record.get("name")):
        return record
    return {
        **record,
        "args": {},
        "result": None,
        "error_message": HIDDEN if record.get("error_message") else None,
        "redacted": True,
    }


def history_detail(role: Role, command_name: str, detail: str) -> str:
    return "" if hidden(role, command_name) and detail else detail


def audit_detail(role: Role, action: str, detail: dict[str, Any]) -> dict[str, Any]:
    """An audit entry's detail as ``role`` may read it."""
    if action.startswith("terminal."):
        name: object = "terminal"
    elif action.startswith("command."):
        name = detail.get("name")
    else:
        return detail
    if not hidden(role, name):
        return detail
    kept = {key: detail[key] for key in _AUDIT_KEPT if key in detail}
    return kept | {"redacted": True}


def job_view(role: Role, job: dict[str, Any]) -> dict[str, Any]:
    if not hidden(role, job.get("name")):
        return job
    return {**job, "args": {}, "redacted": True}
