"""POST /v1/rerank, /v2/rerank and /rerank (the paths vLLM serves; Cohere and Jina clients
point at one of them)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from pocketserve.api.capability import model_for
from pocketserve.api.deps import RegistryDep, SettingsDep
from pocketserve.api.protocol.rerank import RerankRequest, rerank_response
from pocketserve.api.routes.embeddings import json_response
from pocketserve.ops.rerank import RERANK, Ranking

router = APIRouter()


@router.post("/v1/rerank")
@router.post("/v2/rerank")
@router.post("/rerank")
async def rerank(body: RerankRequest, registry: RegistryDep, settings: SettingsDep) -> Response:
    spec = model_for(registry, body.model, "rerank", "rerank documents")
    reply = await registry.call(spec.id, RERANK, body.to_engine(settings.rerank_truncate),
                                Ranking)
    return json_response(rerank_response(body, spec.id, reply))
