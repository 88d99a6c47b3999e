"""Liveness and readiness probes (always open: orchestrators call them without keys)."""

from __future__ import annotations

from fastapi import APIRouter

from service.api import problems
from service.api.problems import Problem, ProblemType
from service.api.runtime import RuntimeDep
from service.api.schemas import Health, Readiness

router = APIRouter(tags=["health"])


@router.get("/healthz", operation_id="healthz", summary="Liveness: the process is serving")
async def healthz() -> Health:
    return Health()


@router.get(
    "/readyz",
    operation_id="readyz",
    summary="Readiness: models warmed up and room for another request",
    responses=problems.responses(ProblemType.NOT_READY),
)
async def readyz(runtime: RuntimeDep) -> Readiness:
    """503 while starting or stopping, and while saturated, so a load balancer sends work elsewhere."""
    limiter = runtime.limiter
    if not runtime.ready:
        raise Problem(ProblemType.NOT_READY, "the service is shutting down")
    if limiter.saturated:
        raise Problem(ProblemType.NOT_READY, f"saturated: {limiter.running} jobs running, {limiter.waiting} queued")
    return Readiness(models=len(runtime.registry), jobs_running=limiter.running, jobs_queued=limiter.waiting)
