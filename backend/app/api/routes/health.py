"""Liveness, readiness and version."""

from __future__ import annotations

import platform

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from app.api.deps import DatabaseDep, SettingsDep

router = APIRouter(tags=["health"])


class Readiness(BaseModel):
    status: str = Field(description='"ready" or "not ready"')
    reason: str | None = Field(default=None, description="Why not ready; absent when ready")


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: answers as long as the process serves requests; touches no dependency."""
    # A plain dict, not a model: this is the route the middleware benchmark loads.
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"description": "Not ready; the body says why", "model": Readiness}},
)
async def readyz(database: DatabaseDep) -> JSONResponse:
    """Readiness: the database answers within a short timeout and the schema exists."""
    reason = await database.check()
    if reason is not None:
        return JSONResponse({"status": "not ready", "reason": reason}, status_code=503)
    return JSONResponse({"status": "ready"})


@router.get("/version")
async def version(settings: SettingsDep) -> dict[str, str]:
    return {"version": settings.APP_VERSION, "gitSha": settings.GIT_SHA, "python": platform.python_version()}
