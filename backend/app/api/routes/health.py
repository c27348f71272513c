"""Liveness, readiness and version."""

from __future__ import annotations

import platform
import socket

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from app.api.deps import DatabaseDep, SettingsDep
from app.core.confinement import observe

router = APIRouter(tags=["health"])


class Readiness(BaseModel):
    status: str = Field(description='"ready" or "not ready"')
    reason: str | None = Field(default=None, description="Why not ready; absent when ready")


class VersionInfo(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    version: str = Field(description="APP_VERSION: the release version baked into the image")
    git_sha: str = Field(alias="gitSha", description="GIT_SHA: the commit the image was built from")
    python: str = Field(description="The Python version serving the request")
    release: str = Field(
        description=(
            "This process's host name. Docker sets it to the container's short id (unless the container "
            "runs on the host network or is given --hostname), so a deploy can tell through a proxy which "
            "container answered."
        )
    )


class Hardening(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    user: str = Field(description="uid:gid the process runs as")
    no_new_privileges: bool = Field(alias="noNewPrivileges", description="NoNewPrivs in /proc/self/status")
    read_only_root_filesystem: bool = Field(alias="readOnlyRootFilesystem", description="The root mount is read-only")
    all_capabilities_dropped: bool = Field(
        alias="allCapabilitiesDropped", description="The effective and bounding capability sets are empty"
    )
    effective_capabilities: str = Field(alias="effectiveCapabilities", description="CapEff, as the kernel prints it")
    bounding_capabilities: str = Field(alias="boundingCapabilities", description="CapBnd, as the kernel prints it")


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
async def version(settings: SettingsDep) -> VersionInfo:
    """What is running here: version, commit, Python, and which container (``release``)."""
    return VersionInfo(
        version=settings.APP_VERSION,
        git_sha=settings.GIT_SHA,
        python=platform.python_version(),
        # Read per request: cheap (one uname), and it follows a host name changed after start.
        release=socket.gethostname(),
    )


@router.get("/hardening")
async def hardening() -> Hardening:
    """How this process is confined, as the kernel reports it: what a deploy records of every replica.

    An orchestrator that runs replicas on other machines (Docker Swarm) can only ask the process
    itself; these are observations, not configuration.
    """
    seen = observe()
    return Hardening(
        user=f"{seen.uid}:{seen.gid}",
        no_new_privileges=seen.no_new_privileges,
        read_only_root_filesystem=seen.read_only_root,
        all_capabilities_dropped=seen.all_capabilities_dropped,
        effective_capabilities=seen.effective_capabilities,
        bounding_capabilities=seen.bounding_capabilities,
    )
