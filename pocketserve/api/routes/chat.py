"""Chat completions, legacy completions, tokenize and detokenize."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from pocketserve.api.capability import check_images, check_tools, model_for
from pocketserve.api.chat_answers import Shaper, stream_chunks, whole_response
from pocketserve.api.deps import ImageLoaderDep, RegistryDep, SettingsDep
from pocketserve.api.openapi import MODEL_CALL, answers
from pocketserve.api.protocol.answers import (
    ChatCompletion,
    ChatCompletionChunk,
    Completion,
    Detokenized,
    ErrorResponse,
    Tokenized,
)
from pocketserve.api.protocol.chat import ChatCompletionRequest
from pocketserve.api.protocol.completions import CompletionRequest
from pocketserve.api.protocol.tokenize import DetokenizeRequest, TokenizeRequest
from pocketserve.api.streaming import json_response, primed, sse_response
from pocketserve.images.inputs import ImageInputs
from pocketserve.ops import chat as ops
from pocketserve.serving.registry import ModelRegistry

router = APIRouter()


@router.post("/v1/chat/completions", response_model=None, responses=answers(
    ChatCompletion, *MODEL_CALL, stream=(ChatCompletionChunk, ErrorResponse),
    description="The whole answer, or with `stream` its chunks as server-sent events."))
async def chat_completions(body: ChatCompletionRequest, registry: RegistryDep,
                           settings: SettingsDep, loader: ImageLoaderDep) -> Any:
    spec = model_for(registry, body.model, "chat", "generate text")
    images = ImageInputs()
    request = body.to_engine(split_reasoning=settings.reasoning_content, images=images)
    check_tools(spec, request)
    check_images(spec, images)
    await loader.load(images)
    sources = [registry.stream(spec.id, ops.CHAT, request)]
    shaper = Shaper("chat", spec.id, logprobs=body.logprobs)
    if body.stream:
        chunks = stream_chunks(shaper, sources, body.n, body.include_usage)
        return sse_response(await primed(chunks))
    return json_response(await whole_response(shaper, sources, body.n))


@router.post("/v1/completions", response_model=None, responses=answers(
    Completion, *MODEL_CALL, stream=(Completion, ErrorResponse),
    description="The whole answer, or with `stream` its chunks as server-sent events."))
async def completions(body: CompletionRequest, registry: RegistryDep) -> Any:
    answer = await completion(body, registry)
    return answer if isinstance(answer, StreamingResponse) else json_response(answer)


async def completion(body: CompletionRequest,
                     registry: ModelRegistry) -> dict[str, Any] | StreamingResponse:
    """The completion as a dict, or its stream (the /v1/generate alias reads the dict)."""
    spec = model_for(registry, body.model, "chat", "generate text")
    sources = [registry.stream(spec.id, ops.COMPLETE, r) for r in body.to_engine()]
    shaper = Shaper("completion", spec.id, logprobs=body.logprobs is not None)
    if body.stream:
        chunks = stream_chunks(shaper, sources, body.n, body.include_usage)
        return sse_response(await primed(chunks))
    return await whole_response(shaper, sources, body.n)


@router.post("/tokenize", response_model=None,
             responses=answers(Tokenized, *MODEL_CALL))
async def tokenize(body: TokenizeRequest, registry: RegistryDep) -> dict[str, Any]:
    spec = model_for(registry, body.model, "chat", "generate text")
    reply = await registry.call(spec.id, ops.TOKENIZE, body.to_engine(), ops.Tokens)
    return {"count": len(reply.tokens), "max_model_len": reply.max_model_len,
            "tokens": reply.tokens}


@router.post("/detokenize", response_model=None,
             responses=answers(Detokenized, *MODEL_CALL))
async def detokenize(body: DetokenizeRequest, registry: RegistryDep) -> dict[str, Any]:
    spec = model_for(registry, body.model, "chat", "generate text")
    reply = await registry.call(spec.id, ops.DETOKENIZE, ops.DetokenizeRequest(body.tokens),
                                ops.Detokenized)
    return {"prompt": reply.prompt}
