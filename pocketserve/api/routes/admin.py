"""Operator endpoints: Prometheus metrics, and model states with load/unload by hand."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from pocketserve.api.deps import RegistryDep
from pocketserve.serving.metrics import CONTENT_TYPE, Metrics
from pocketserve.serving.registry import ModelStatus

router = APIRouter()


def _state(status: ModelStatus) -> dict[str, Any]:
    body = asdict(status)
    body["memory_mb"] = round(status.memory_bytes / (1024 * 1024), 1)
    return body


@router.get("/metrics")
async def metrics(request: Request, registry: RegistryDep) -> Response:
    await registry.refresh_stats()
    collected: Metrics = request.app.state.metrics
    return Response(collected.render(), media_type=CONTENT_TYPE)


@router.get("/admin/models")
async def list_states(registry: RegistryDep) -> dict[str, Any]:
    """Every model's state (loading, ready, failed, unloaded), memory, load and activity."""
    await registry.refresh_stats()
    return {"object": "list", "data": [_state(s) for s in registry.statuses()]}


@router.post("/admin/models/{model_id:path}/load")
async def load(model_id: str, registry: RegistryDep) -> dict[str, Any]:
    return _state(await registry.load(model_id))


@router.post("/admin/models/{model_id:path}/unload")
async def unload(model_id: str, registry: RegistryDep) -> dict[str, Any]:
    return _state(await registry.unload(model_id))
