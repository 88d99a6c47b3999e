"""The installed models, as their manifests describe them."""

from __future__ import annotations

from fastapi import APIRouter

from service.api import problems
from service.api.problems import ProblemType
from service.api.runtime import RuntimeDep
from service.api.schemas import ModelInfo
from service.api.security import API_KEY
from service.codec import UnknownModel

router = APIRouter(tags=["models"], dependencies=[API_KEY])


@router.get(
    "/models",
    operation_id="listModels",
    summary="Installed models: id, modes, rate bound, sizes, metrics",
    responses=problems.responses(ProblemType.UNAUTHORIZED),
)
async def list_models(runtime: RuntimeDep) -> list[ModelInfo]:
    registry = runtime.registry
    try:
        default = registry.get()
    except UnknownModel:  # several models and none configured as the default
        default = None
    return [ModelInfo.of(model, default=model is default) for model in registry]
