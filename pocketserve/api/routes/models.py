"""GET /v1/models, /v1/models/{id} and /health."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.responses import JSONResponse

from pocketserve.api.deps import RegistryDep
from pocketserve.api.openapi import Responses, answers
from pocketserve.api.protocol.answers import Health, ModelList, ModelObject
from pocketserve.catalog import sees, takes_tools
from pocketserve.config import ModelSpec
from pocketserve.serving.registry import ModelStatus

router = APIRouter()


# Facts a worker reports that only some capabilities have (embedding size, how a reranker
# scores, which weights file llama.cpp loaded); shown only where present.
_OPTIONAL_INFO = ("dimensions", "scoring", "weights_file")


def input_modalities(spec: ModelSpec) -> list[str]:
    """What a model reads, as llama-server and OpenRouter list it: text, image, audio."""
    if spec.capability == "transcription":
        return ["audio"]
    return ["text", "image"] if sees(spec) else ["text"]


def _model_object(status: ModelStatus, created: int, spec: ModelSpec) -> dict[str, Any]:
    extra = {k: status.info[k] for k in _OPTIONAL_INFO if k in status.info}
    if status.capability == "chat":
        extra["tools"] = takes_tools(spec)  # whether requests with `tools` may come
        extra["vision"] = sees(spec)  # whether requests with images may come
    return {
        "id": status.id, "object": "model", "created": created, "owned_by": "pocketserve",
        "capability": status.capability, "backend": status.backend, "aliases": status.aliases,
        "state": status.state, "error": status.error, "restarts": status.restarts,
        "context_length": status.info.get("context_length"),
        "input_modalities": input_modalities(spec),
        **extra,
    }


MODEL_ID = Annotated[str, Path(description="A model id or alias.", openapi_examples={
    "chat": {"summary": "The default chat model", "value": "smollm2-135m-instruct"}})]


@router.get("/v1/models", response_model=None, responses=answers(ModelList))
async def list_models(registry: RegistryDep) -> dict[str, Any]:
    created = registry.started_at
    return {"object": "list",
            "data": [_model_object(s, created, registry.spec(s.id))
                     for s in registry.statuses()]}


@router.get("/v1/models/{model_id:path}", response_model=None,
            responses=answers(ModelObject, 404))
async def get_model(model_id: MODEL_ID, registry: RegistryDep) -> dict[str, Any]:
    spec = registry.spec(model_id)
    status = next(s for s in registry.statuses() if s.id == spec.id)
    return _model_object(status, registry.started_at, spec)


_HEALTH_ANSWERS: Responses = {
    **answers(Health, description="Every model is ready or can load on demand."),
    503: {"model": Health, "description": "A model is loading or failed, or the server is "
          "shutting down."}}


# /healthz (Kubernetes' convention) and /ping (SageMaker's and vLLM's) are the same answer, for
# probes and load balancers written for those designs.
@router.get("/ping", response_model=None, responses=_HEALTH_ANSWERS,
            summary="Health (alias of /health)")
@router.get("/healthz", response_model=None, responses=_HEALTH_ANSWERS,
            summary="Health (alias of /health)")
@router.get("/health", response_model=None, responses=_HEALTH_ANSWERS)
async def health(registry: RegistryDep) -> JSONResponse:
    """200 while every model answers or can load on demand; 503 while one is loading or
    failed, and while the server shuts down. /healthz and /ping answer the same."""
    states = {s.id: s.state for s in registry.statuses()}
    not_ready = sorted(name for name, state in states.items()
                       if state not in ("ready", "unloaded"))
    ok = registry.all_ready()
    body = {"status": "ok" if ok else "unavailable", "models": states, "not_ready": not_ready}
    return JSONResponse(body, status_code=200 if ok else 503)
