"""Roles, ordered: a role may do everything a lower one may."""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class Role(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def allows(self, needed: Role) -> bool:
        return self.rank >= needed.rank


_RANK: Final = {Role.VIEWER: 0, Role.OPERATOR: 1, Role.ADMIN: 2}

# Commands and the role each needs; anything not listed (a new command) needs admin.
COMMAND_ROLES: Final[dict[str, Role]] = {
    "restart": Role.OPERATOR,
    "stop": Role.OPERATOR,
    "screenshot": Role.OPERATOR,
    "docker_ps": Role.OPERATOR,
    "docker_restart": Role.OPERATOR,
    "metrics": Role.OPERATOR,
    "update": Role.OPERATOR,  # only to a signed release (docs/updates.md)
    "shell": Role.ADMIN,
}


def role_for_command(name: str) -> Role:
    return COMMAND_ROLES.get(name, Role.ADMIN)
