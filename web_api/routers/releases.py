"""Signed releases in the maestro's release store (docs/updates.md): what the fleet may
be updated to. Read-only: releases are added with ``arete release add``."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from web_api.auth.roles import Role
from web_api.deps import CurrentUser, Fleet, needs

router = APIRouter(tags=["releases"])


class ReleasePublic(BaseModel):
    """One verified release (signature, expiry and every wheel's sha256 checked)."""

    version: str
    created_at: float = Field(description="Unix seconds, when it was signed.")
    expires_at: float = Field(description="Unix seconds; agents refuse it afterwards.")
    min_from_version: str = Field(description="The oldest version it may update from.")
    key_id: str = Field(description="The release key that signed it (16 hex digits).")
    artifacts: int = Field(description="How many wheels it ships.")
    bytes: int = Field(description="Their total size.")
    published: bool = Field(description="Its manifest and every chunk are on the broker.")


class RefusedReleasePublic(BaseModel):
    """A directory of the store that is not published, and why."""

    name: str
    code: str = Field(description="bad_manifest, unknown_key, bad_signature, expired, tampered")
    message: str


class ReleaseList(BaseModel):
    items: list[ReleasePublic] = Field(description="Verified releases, newest first.")
    refused: list[RefusedReleasePublic]
    publishing: bool = Field(
        description="False when the maestro has no release public key ([releases]"
        " public_keys): nothing is published then."
    )


@router.get("/releases", **needs(Role.VIEWER, 503))
async def list_releases(user: CurrentUser, m: Fleet) -> ReleaseList:
    """The release store as of the maestro's last scan (every ``[releases]
    scan_interval_s``): verified releases, whether each is on the broker, and the
    directories it refused."""
    store = m.releases
    return ReleaseList(
        items=[
            ReleasePublic.model_validate(info, from_attributes=True) for info in store.releases()
        ],
        refused=[
            RefusedReleasePublic.model_validate(r, from_attributes=True) for r in store.refused()
        ],
        publishing=m.release_publisher is not None,
    )
