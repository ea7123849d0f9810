"""POST /v1/embeddings and the rerank routes."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from pocketserve.api.capability import model_for
from pocketserve.api.deps import RegistryDep, SettingsDep
from pocketserve.api.protocol.embeddings import EmbeddingRequest, embedding_list
from pocketserve.api.protocol.rerank import RerankRequest, rerank_response

router = APIRouter()


def _json(body: dict[str, Any]) -> Response:
    """Plain json.dumps: FastAPI's encoder walks every float and is slow on big vectors."""
    return Response(json.dumps(body, separators=(",", ":")), media_type="application/json")


@router.post("/v1/embeddings")
async def embeddings(body: EmbeddingRequest, registry: RegistryDep,
                     settings: SettingsDep) -> Response:
    spec = model_for(registry, body.model, "embeddings", "make embeddings")
    payload = body.to_engine(truncate=settings.embeddings_truncate)
    reply = await registry.call(spec.id, "embed", payload)
    return _json(embedding_list(list(reply["embeddings"]), body.encoding_format, spec.id,
                                int(reply["prompt_tokens"])))


@router.post("/v1/rerank")
@router.post("/v2/rerank")
@router.post("/rerank")
async def rerank(body: RerankRequest, registry: RegistryDep, settings: SettingsDep) -> Response:
    spec = model_for(registry, body.model, "rerank", "rerank documents")
    reply = await registry.call(spec.id, "rerank", body.to_engine(settings.rerank_truncate))
    return _json(rerank_response(body, spec.id, reply))
