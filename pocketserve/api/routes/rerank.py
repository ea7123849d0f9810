"""POST /v1/rerank, /v2/rerank and /rerank (the paths vLLM serves; Cohere and Jina clients
point at one of them)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from pocketserve.api.capability import model_for
from pocketserve.api.deps import RegistryDep, SettingsDep
from pocketserve.api.openapi import MODEL_CALL, answers
from pocketserve.api.protocol.answers import RerankResponse
from pocketserve.api.protocol.rerank import RerankRequest, rerank_response
from pocketserve.api.streaming import json_response
from pocketserve.ops.rerank import RERANK, Ranking

router = APIRouter()
_ANSWERS = answers(RerankResponse, *MODEL_CALL,
                   description="Documents by relevance to the query, most relevant first.")


@router.post("/v1/rerank", responses=_ANSWERS)
@router.post("/v2/rerank", responses=_ANSWERS)
@router.post("/rerank", responses=_ANSWERS)
async def rerank(body: RerankRequest, registry: RegistryDep, settings: SettingsDep) -> Response:
    spec = model_for(registry, body.model, "rerank", "rerank documents")
    reply = await registry.call(spec.id, RERANK, body.to_engine(settings.rerank_truncate),
                                Ranking)
    return json_response(rerank_response(body, spec.id, reply))
