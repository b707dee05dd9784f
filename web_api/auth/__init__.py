"""Users, API tokens, sessions and roles (viewer < operator < admin)."""

from __future__ import annotations

from web_api.auth.roles import Role
from web_api.auth.users import Principal, UserStore, ensure_admin

__all__ = ["Principal", "Role", "UserStore", "ensure_admin"]
