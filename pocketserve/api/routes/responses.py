"""OpenAI's Responses API: create (whole or streamed), retrieve, list input items, delete."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query

from pocketserve.api.capability import check_images, check_tools, model_for
from pocketserve.api.deps import ImageLoaderDep, RegistryDep, ResponseStoreDep, SettingsDep
from pocketserve.api.openapi import MODEL_CALL, Responses, answers
from pocketserve.api.protocol.answers import ErrorResponse
from pocketserve.api.protocol.response_shapes import (
    STREAM_EVENTS,
    Response,
    ResponseDeleted,
    ResponseItemList,
)
from pocketserve.api.protocol.responses import CreateResponse
from pocketserve.api.response_answers import (
    ResponseBuilder,
    earlier_items,
    item_page,
    keeper,
    settings_echo,
    stored,
    stream_events,
    unknown,
    whole_response,
)
from pocketserve.api.streaming import json_response, primed, typed_sse_response
from pocketserve.errors import InvalidRequest
from pocketserve.images.inputs import ImageInputs
from pocketserve.ops import chat as ops

router = APIRouter()

_UNKNOWN: Responses = {404: {"model": ErrorResponse, "description": "No stored response has "
                             "this id (never stored, deleted, or past its retention)."}}


@router.post("/v1/responses", response_model=None, responses=answers(
    Response, *MODEL_CALL, stream=STREAM_EVENTS, done=False,
    description="The response, or with `stream` its events as server-sent events (each with "
    "an `event:` line naming its type)."))
async def create_response(body: CreateResponse, registry: RegistryDep, settings: SettingsDep,
                          store: ResponseStoreDep, loader: ImageLoaderDep) -> Any:
    spec = model_for(registry, body.model, "chat", "generate text")
    items = body.items(await earlier_items(store, body.previous_response_id))
    images = ImageInputs()
    request = body.to_engine(items, split_reasoning=settings.reasoning_content, images=images)
    check_tools(spec, request)
    check_images(spec, images)
    await loader.load(images)
    builder = ResponseBuilder(spec.id, settings_echo(body, spec.default_sampling),
                              logprobs=body.logprobs)
    keep = keeper(store, items) if body.keep else None
    events = registry.stream(spec.id, ops.CHAT, request)
    if body.stream:
        return typed_sse_response(stream_events(builder, await primed(events), keep))
    response = await whole_response(builder, events)
    if keep is not None:
        await keep(response)
    return json_response(response)


@router.get("/v1/responses/{response_id}/input_items", response_model=None,
            responses={**answers(ResponseItemList), **_UNKNOWN})
async def list_input_items(response_id: str, store: ResponseStoreDep,
                           limit: int = Query(default=20, ge=1, le=100),
                           order: Literal["asc", "desc"] = "desc",
                           after: str | None = None) -> dict[str, Any]:
    """Everything the model read for this response (earlier turns included), newest first
    unless `order=asc`; `after` an item id to page on."""
    return item_page((await stored(store, response_id)).input_items, limit, order, after)


@router.get("/v1/responses/{response_id}", response_model=None,
            responses={**answers(Response), **_UNKNOWN})
async def retrieve_response(response_id: str, store: ResponseStoreDep,
                            stream: bool = False) -> dict[str, Any]:
    if stream:
        raise InvalidRequest("Replaying a stored response as a stream is not supported; "
                             "leave out `stream`.", param="stream", code="unsupported_parameter")
    return (await stored(store, response_id)).response


@router.delete("/v1/responses/{response_id}", response_model=None,
               responses={**answers(ResponseDeleted), **_UNKNOWN})
async def delete_response(response_id: str, store: ResponseStoreDep) -> dict[str, Any]:
    if not await store.delete(response_id):
        raise unknown(response_id)
    return {"id": response_id, "object": "response", "deleted": True}
