"""Liveness, readiness and version."""

from __future__ import annotations

import platform

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from app.api.deps import DatabaseDep, SettingsDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: answers as long as the process serves requests; touches no dependency."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "Not ready; the body says why"}})
async def readyz(database: DatabaseDep) -> JSONResponse:
    """Readiness: the database answers within a short timeout and the schema exists."""
    reason = await database.check()
    if reason is not None:
        return JSONResponse({"status": "not ready", "reason": reason}, status_code=503)
    return JSONResponse({"status": "ready"})


@router.get("/version")
async def version(settings: SettingsDep) -> dict[str, str]:
    return {"version": settings.APP_VERSION, "gitSha": settings.GIT_SHA, "python": platform.python_version()}
