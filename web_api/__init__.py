"""The web API: REST and websockets over a running maestro, auth, the dashboard.

``create_app(settings)`` builds the FastAPI application; see ``docs/api.md``.
"""

from __future__ import annotations

from web_api.app import create_app
from web_api.settings import WebSettings

__all__ = ["WebSettings", "create_app"]
