"""Liveness and readiness probes (always open: orchestrators call them without keys).

Each answers HEAD too, as load balancers often probe with it: the GET answer's status and headers, whose body
the server does not send. HEAD stays out of openapi.json, which lists operations, not probe conveniences.
"""

from __future__ import annotations

from fastapi import APIRouter

from service.api import problems
from service.api.problems import Problem, ProblemType
from service.api.runtime import RuntimeDep
from service.api.schemas import Health, Readiness

router = APIRouter(tags=["health"])


@router.head("/healthz", include_in_schema=False)
@router.get("/healthz", operation_id="healthz", summary="Liveness: the process is serving")
async def healthz() -> Health:
    return Health()


@router.head("/readyz", include_in_schema=False)
@router.get(
    "/readyz",
    operation_id="readyz",
    summary="Readiness: models warmed up and room for another request",
    responses=problems.responses(ProblemType.NOT_READY),
)
async def readyz(runtime: RuntimeDep) -> Readiness:
    """503 while starting or stopping, while every worker is stuck past its time or being replaced, and while
    saturated, so a load balancer sends work elsewhere."""
    limiter = runtime.limiter
    if not runtime.ready:
        raise Problem(ProblemType.NOT_READY, "the service is shutting down")
    if limiter.stalled:
        detail = f"all {limiter.concurrency} workers are running jobs past their time limit or being replaced"
        raise Problem(ProblemType.NOT_READY, detail)
    if limiter.saturated:
        raise Problem(ProblemType.NOT_READY, f"saturated: {limiter.running} jobs running, {limiter.waiting} queued")
    return Readiness(models=len(runtime.registry), jobs_running=limiter.running, jobs_queued=limiter.waiting)
