"""Operator endpoints: Prometheus metrics, and model states with load/unload by hand."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import PlainTextResponse, Response

from pocketserve.api.deps import RegistryDep
from pocketserve.api.openapi import answers
from pocketserve.api.protocol.answers import ModelStatus as ModelStatusAnswer
from pocketserve.api.protocol.answers import ModelStatusList
from pocketserve.serving.metrics import CONTENT_TYPE, Metrics
from pocketserve.serving.registry import ModelStatus

router = APIRouter()
MODEL_ID = Annotated[str, Path(description="A model id or alias.", openapi_examples={
    "embeddings": {"summary": "The embeddings model", "value": "all-minilm-l6-v2"}})]


def _state(status: ModelStatus) -> dict[str, Any]:
    body = asdict(status)
    body["memory_mb"] = round(status.memory_bytes / (1024 * 1024), 1)
    return body


@router.get("/metrics", response_class=PlainTextResponse, responses=answers(
    None, description="Prometheus text format.",
    media={CONTENT_TYPE.split(";")[0]: {"schema": {"type": "string"}}}))
async def metrics(request: Request, registry: RegistryDep) -> Response:
    await registry.refresh_stats()
    collected: Metrics = request.app.state.metrics
    return Response(collected.render(), media_type=CONTENT_TYPE)


@router.get("/admin/models", response_model=None, responses=answers(ModelStatusList))
async def list_states(registry: RegistryDep) -> dict[str, Any]:
    """Every model's state (loading, ready, failed, unloaded), memory, load and activity."""
    await registry.refresh_stats()
    return {"object": "list", "data": [_state(s) for s in registry.statuses()]}


@router.post("/admin/models/{model_id:path}/load", response_model=None,
             responses=answers(ModelStatusAnswer, 404, 503,
                               description="The model's state once it is loaded."))
async def load(model_id: MODEL_ID, registry: RegistryDep) -> dict[str, Any]:
    return _state(await registry.load(model_id))


@router.post("/admin/models/{model_id:path}/unload", response_model=None,
             responses=answers(ModelStatusAnswer, 404,
                               description="The model's state once it is unloaded."))
async def unload(model_id: MODEL_ID, registry: RegistryDep) -> dict[str, Any]:
    return _state(await registry.unload(model_id))
