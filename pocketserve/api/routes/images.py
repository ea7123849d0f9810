"""Image description: /v1/images/describe (one image) and /v1/images/describe/batch, on the
chat operation of a model that sees."""

from __future__ import annotations

import asyncio
import time
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from pocketserve.api.capability import vision_model
from pocketserve.api.deps import ImageLoaderDep, RegistryDep, SettingsDep
from pocketserve.api.errors import error_body
from pocketserve.api.openapi import MODEL_CALL, answers
from pocketserve.api.protocol.images import (
    DescribeBatchRequest,
    DescribeImageRequest,
    DescribeOptions,
    ImageDescription,
    ImageDescriptionBatch,
    form_files,
    form_options,
)
from pocketserve.config import ModelSpec
from pocketserve.errors import InvalidRequest, PocketserveError
from pocketserve.images.inputs import ImageInputs, ImageLoader
from pocketserve.ops.chat import CHAT, ChatRequest, TextDelta
from pocketserve.ops.common import Usage
from pocketserve.serving.registry import ModelRegistry

router = APIRouter()
Model = TypeVar("Model", bound=DescribeOptions)


def _docs(body: str, form: str, ok: type[Any], what: str) -> dict[str, Any]:
    """JSON or a multipart form (both read by hand, so FastAPI cannot see them)."""
    return {"response_model": None, "responses": answers(ok, *MODEL_CALL, description=what),
            "openapi_extra": {"requestBody": {"required": True, "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{body}"}},
                "multipart/form-data": {"schema": {"$ref": f"#/components/schemas/{form}"}}}}}}


@dataclass
class _Image:
    param: str  # where it is in the request: image, images[2], file[0]
    prompt: str | None
    detail: str
    url: str | None = None
    data: bytes | None = None


@router.post("/v1/images/describe", **_docs(
    "DescribeImageRequest", "DescribeImageForm", ImageDescription, "The description."))
async def describe(request: Request, registry: RegistryDep, settings: SettingsDep,
                   loader: ImageLoaderDep) -> dict[str, Any]:
    """One image (a JSON `image` URL, or a multipart `file`) and an optional prompt in, its
    description out."""
    if _is_form(request):
        form = await request.form(max_files=1, max_fields=16)
        options: DescribeOptions = form_options(form)
        (data,) = await form_files(form, settings.image_max_bytes)
        image = _Image("file", None, options.detail, data=data)
    else:
        body = await _json(request, DescribeImageRequest)
        options, image = body, _Image("image", None, body.detail, url=body.image)
    spec = vision_model(registry, options.model, settings.vision_model)
    text, finish, usage = await _describe(registry, loader, spec, options, image)
    return {"object": "image.description", "created": int(time.time()), "model": spec.id,
            "description": text, "finish_reason": finish, "usage": _usage(usage)}


@router.post("/v1/images/describe/batch", **_docs(
    "DescribeBatchRequest", "DescribeBatchForm", ImageDescriptionBatch,
    "One result per image, in order: a description, or that image's error."))
async def describe_batch(request: Request, registry: RegistryDep, settings: SettingsDep,
                         loader: ImageLoaderDep) -> dict[str, Any]:
    """Several images, each with an optional prompt, described concurrently (the model's
    engine batches them); each is checked on its own and fails on its own."""
    limit = settings.image_describe_max_batch
    if _is_form(request):
        form = await request.form(max_files=limit + 1, max_fields=16)
        options: DescribeOptions = form_options(form)
        images = [_Image(f"file[{i}]", None, options.detail, data=d)
                  for i, d in enumerate(await form_files(form, settings.image_max_bytes))]
        field = "file"
    else:
        batch = await _json(request, DescribeBatchRequest)
        options, field = batch, "images"
        images = [_Image(f"images[{i}]", item.prompt, item.detail or batch.detail,
                         url=item.image) for i, item in enumerate(batch.images)]
    if len(images) > limit:
        raise InvalidRequest(f"The batch holds {len(images)} images; this server takes at most "
                             f"{limit} (image_describe_max_batch).", param=field,
                             code="too_many_images")
    spec = vision_model(registry, options.model, settings.vision_model)
    results = await asyncio.gather(*(_one(i, registry, loader, spec, options, image)
                                     for i, image in enumerate(images)))
    total = Usage(sum(r.get("usage", {}).get("prompt_tokens", 0) for r in results),
                  sum(r.get("usage", {}).get("completion_tokens", 0) for r in results))
    return {"object": "list", "created": int(time.time()), "model": spec.id, "data": results,
            "usage": _usage(total)}


async def _one(index: int, registry: ModelRegistry, loader: ImageLoader, spec: ModelSpec,
               options: DescribeOptions, image: _Image) -> dict[str, Any]:
    try:
        text, finish, usage = await _describe(registry, loader, spec, options, image)
    except PocketserveError as exc:
        return {"index": index, "object": "image.description",
                **error_body(exc.message, exc.kind, exc.param, exc.code)}
    return {"index": index, "object": "image.description", "description": text,
            "finish_reason": finish, "usage": _usage(usage)}


async def _describe(registry: ModelRegistry, loader: ImageLoader, spec: ModelSpec,
                    options: DescribeOptions, image: _Image) -> tuple[str, str, Usage]:
    images = ImageInputs()
    if image.data is not None:
        part = images.from_bytes(image.data, image.detail, image.param)
    else:
        part = images.from_url(image.url or "", image.detail, image.param)
    await loader.load(images)
    return await _generate(registry, spec.id, options.chat(part, image.prompt))


async def _generate(registry: ModelRegistry, model: str,
                    request: ChatRequest) -> tuple[str, str, Usage]:
    """The answer's text (thinking left out), why it ended, and its tokens."""
    texts: list[str] = []
    finish = "stop"
    usage = Usage(0)
    events = registry.stream(model, CHAT, request)
    async with aclosing(events):  # type: ignore[type-var]
        async for event in events:
            if isinstance(event, TextDelta) and event.index == 0:
                texts.append(event.text)
                finish = event.finish_reason or finish
            elif isinstance(event, Usage):
                usage = event
    return "".join(texts).strip(), finish, usage


def _usage(usage: Usage) -> dict[str, int]:
    return {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.prompt_tokens + usage.completion_tokens}


def _is_form(request: Request) -> bool:
    return request.headers.get("content-type", "").lower().startswith("multipart/form-data")


async def _json(request: Request, model: type[Model]) -> Model:
    try:
        return model.model_validate_json(await request.body(), strict=True)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from exc
