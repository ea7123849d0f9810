"""Anthropic's Messages API: POST /v1/messages and /v1/messages/count_tokens, on the chat
engine."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from pocketserve.api.capability import check_images, check_tools, model_for
from pocketserve.api.deps import ImageLoaderDep, RegistryDep, SettingsDep
from pocketserve.api.message_answers import MessageShaper, message_events, whole_message
from pocketserve.api.openapi import MODEL_CALL, answers
from pocketserve.api.protocol.message_answers import (
    MESSAGE_EVENTS,
    AnthropicError,
    AnthropicMessage,
    MessageTokensCount,
)
from pocketserve.api.protocol.messages import CountTokensRequest, MessagesRequest
from pocketserve.api.streaming import json_response, primed, typed_sse_response
from pocketserve.images.inputs import ImageInputs
from pocketserve.ops import chat as ops

router = APIRouter()


@router.post("/v1/messages", response_model=None, responses=answers(
    AnthropicMessage, *MODEL_CALL, stream=MESSAGE_EVENTS, named=True, envelope=AnthropicError,
    description="The whole message, or with `stream` its events (server-sent, each named by "
                "its type)."))
async def create_message(body: MessagesRequest, registry: RegistryDep,
                         settings: SettingsDep, loader: ImageLoaderDep) -> Any:
    spec = model_for(registry, body.model, "chat", "generate text")
    images = ImageInputs()
    request = body.to_engine(split_reasoning=settings.reasoning_content, images=images)
    check_tools(spec, request)
    check_images(spec, images)
    await loader.load(images)
    source = await primed(registry.stream(spec.id, ops.CHAT, request))
    shaper = MessageShaper(spec.id, thinking=body.thinking_shown)
    if body.stream:
        return typed_sse_response(message_events(shaper, source))
    return json_response(await whole_message(shaper, source))


@router.post("/v1/messages/count_tokens", response_model=None, responses=answers(
    MessageTokensCount, *MODEL_CALL, envelope=AnthropicError))
async def count_tokens(body: CountTokensRequest, registry: RegistryDep) -> dict[str, Any]:
    spec = model_for(registry, body.model, "chat", "generate text")
    request = body.to_engine()
    check_tools(spec, request)
    reply = await registry.call(spec.id, ops.TOKENIZE, request, ops.Tokens)
    return {"input_tokens": len(reply.tokens)}
