"""POST /v1/embeddings."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from pocketserve.api.capability import model_for
from pocketserve.api.deps import RegistryDep, SettingsDep
from pocketserve.api.openapi import MODEL_CALL, answers
from pocketserve.api.protocol.answers import EmbeddingList
from pocketserve.api.protocol.embeddings import EmbeddingRequest, embedding_list
from pocketserve.api.streaming import json_response
from pocketserve.ops.embeddings import EMBED, Embeddings

router = APIRouter()


@router.post("/v1/embeddings", responses=answers(EmbeddingList, *MODEL_CALL))
async def embeddings(body: EmbeddingRequest, registry: RegistryDep,
                     settings: SettingsDep) -> Response:
    spec = model_for(registry, body.model, "embeddings", "make embeddings")
    payload = body.to_engine(truncate=settings.embeddings_truncate)
    reply = await registry.call(spec.id, EMBED, payload, Embeddings)
    return json_response(embedding_list(reply.embeddings, body.encoding_format, spec.id,
                                        reply.prompt_tokens))

