"""/openapi.json as the server behaves: every error a route can answer, in OpenAI's envelope.

Two halves. `answers()` builds a route's `responses=` (its 200 shape and the errors that route
itself can give); `install_openapi()` post-processes the generated document once for what no
route knows: errors from middleware (a bad X-Request-Timeout, a body over the limit, API keys
and rate limits as configured), FastAPI's 422 removed (validation failures are answered as 400,
see errors.py), the real examples from openapi_examples.json, and schemas that only the
document needs (SSE events, the audio upload form).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache, partial
from importlib import resources
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from pocketserve.api.auth import is_open_path
from pocketserve.api.errors import anthropic_path
from pocketserve.api.protocol import answers as answers_
from pocketserve.api.protocol import dialogue as dialogue_
from pocketserve.api.protocol import images as images_
from pocketserve.api.protocol.answers import ErrorResponse
from pocketserve.api.protocol.message_answers import MESSAGE_EVENTS, AnthropicError
from pocketserve.api.protocol.response_shapes import STREAM_EVENTS
from pocketserve.api.protocol.transcription import alias_form_schema, form_schema
from pocketserve.api.protocol.voice_answers import DIALOGUE_EVENTS
from pocketserve.config import Settings

Responses = dict[int | str, dict[str, Any]]

DESCRIPTION = """OpenAI's API (chat, completions, responses, embeddings, speech, transcription),
Anthropic's Messages API (/v1/messages) and vLLM's/Cohere's extras (tokenize, rerank), served by
small local models.

Every error is OpenAI's envelope `{"error": {"message", "type", "param", "code"}}`, except on
/v1/messages routes: Anthropic's `{"type": "error", "error": {"type", "message"}, "request_id"}`.
Every answer carries `X-Request-ID`. The examples are real answers of the default models."""

ERRORS: dict[int, str] = {
    400: "Invalid request: bad JSON, a missing or invalid parameter (named in `error.param`), "
         "a model that does not do this, or a bad X-Request-Timeout header.",
    401: "No API key, or an unknown one (`invalid_api_key`).",
    404: "No such model (`model_not_found`); the message lists the served ones.",
    413: "The request body, or the uploaded file, is over the server's limit.",
    429: "The model's queue is full (`queue_full`), or the API key's rate limit is spent; "
         "retry after `Retry-After` seconds.",
    500: "The model failed on this request (`server_error`).",
    503: "The model is loading, restarting after a crash or failed to load, or the server is "
         "shutting down (`model_not_ready`).",
    504: "The request waited or ran past its deadline (`deadline_exceeded`); its work was "
         "stopped.",
}

# What a route that hands work to a model can answer besides its own 400s.
MODEL_CALL = (404, 429, 500, 503, 504)

_SSE = "text/event-stream"
_TIMEOUT_HEADER = {
    "name": "X-Request-Timeout", "in": "header", "required": False,
    "description": "Seconds this request may wait and run; shortens the server's "
                   "request_timeout_s, never lengthens it. Past it: 504.",
    "schema": {"type": "number", "exclusiveMinimum": 0},
}
_ID_HEADER = {
    "name": "X-Request-ID", "in": "header", "required": False,
    "description": "Kept (1-128 of A-Z a-z 0-9 . _ : -) and sent back on the response, "
                   "else a new one is made; it is in every log line of the request.",
    "schema": {"type": "string"},
}


def error(status: int, envelope: type[BaseModel] = ErrorResponse) -> dict[str, Any]:
    return {"model": envelope, "description": ERRORS[status]}


def answers(ok: type[BaseModel] | None, *errors: int, description: str = "OK",
            stream: tuple[type[BaseModel], ...] = (), done: bool = True, named: bool = False,
            media: dict[str, dict[str, Any]] | None = None,
            envelope: type[BaseModel] = ErrorResponse) -> Responses:
    """A route's `responses=`: `ok` as the JSON answer, `stream` as what each SSE event's data
    may be (listed in DOC_MODELS; `done`: a last `data: [DONE]`; `named`: each event has an
    `event:` line naming its type, as Anthropic's), `media` for other answers (audio, text),
    and `errors` in `envelope`."""
    content: dict[str, Any] = dict(media or {})
    if stream:
        content[_SSE] = {"schema": sse_event(stream, done and not named, named)}
    success: dict[str, Any] = {"description": description}
    if ok is not None:
        success["model"] = ok
    if content:
        success["content"] = content
    return {200: success, **{status: error(status, envelope) for status in errors}}


def ref(model: type[BaseModel]) -> str:
    return f"#/components/schemas/{model.__name__}"


def sse_event(data: tuple[type[BaseModel], ...], done: bool,
              named: bool = False) -> dict[str, Any]:
    """One server-sent event, as OpenAPI 3.1 describes the items of a stream (3.2 would call
    it `itemSchema`): `data` is JSON text of one of `data`, or the literal [DONE]; `named`:
    its `event` is the data's `type`."""
    names = " or ".join(m.__name__ for m in data)
    json_data: dict[str, Any] = {
        "type": "string", "contentMediaType": "application/json",
        "contentSchema": {"anyOf": [{"$ref": ref(m)} for m in data]}}
    field = {"anyOf": [{"const": "[DONE]"}, json_data]} if done else json_data
    last = ", then `data: [DONE]`" if done else ""
    schema: dict[str, Any] = {
        "type": "object", "required": ["data"], "properties": {"data": field},
        "description": f"Server-sent events: each `data:` is one {names} as JSON{last}."}
    if named:
        schema["required"] = ["event", "data"]
        schema["properties"]["event"] = {"type": "string", "description": "The data's `type`."}
        schema["description"] += " Each `event:` names the data's `type`."
    return schema


# Schemas only the document refers to: the data of SSE events (see `answers(stream=...)`),
# and the JSON transcripts (one media type, two shapes).
DOC_MODELS: tuple[type[BaseModel], ...] = (
    answers_.Transcription, answers_.VerboseTranscription, answers_.ChatCompletionChunk,
    answers_.Completion, answers_.SpeechAudioDelta, answers_.SpeechAudioDone,
    answers_.SpeechStreamError, answers_.TranscriptTextDelta, answers_.TranscriptTextDone,
    *STREAM_EVENTS, ErrorResponse, *MESSAGE_EVENTS, *DIALOGUE_EVENTS,
    images_.DescribeImageRequest, images_.DescribeBatchRequest)

# Multipart forms FastAPI cannot see (parsed by hand): component name -> schema maker.
FORMS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "CreateTranscriptionRequest": partial(form_schema, "transcribe"),
    "CreateTranslationRequest": partial(form_schema, "translate"),
    "SpeechToTextRequest": alias_form_schema,
    "DialogueRequest": dialogue_.form_schema,
    "DescribeImageForm": lambda _: images_.form_schema(batch=False),
    "DescribeBatchForm": lambda _: images_.form_schema(batch=True),
}


def install_openapi(app: FastAPI, settings: Settings) -> None:
    """Replace `app.openapi` with one that finishes the generated document once."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()
            _add_schemas(document, DOC_MODELS, FORMS)
            for path, item in document["paths"].items():
                for operation in item.values():
                    _finish(operation, path, settings)
            _add_security(document, settings)
            _add_examples(document)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _add_schemas(document: dict[str, Any], models: tuple[type[BaseModel], ...],
                 forms: dict[str, Callable[[dict[str, Any]], dict[str, Any]]]) -> None:
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    _, generated = models_json_schema([(m, "serialization") for m in models],
                                      ref_template="#/components/schemas/{model}")
    for name, schema in generated.get("$defs", {}).items():
        schemas.setdefault(name, schema)
    for name, make in forms.items():
        schemas[name] = make(schemas)


def _finish(operation: dict[str, Any], path: str, settings: Settings) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    responses.pop("422", None)
    extra = [400]
    if "requestBody" in operation:
        extra.append(413)
    guarded = bool(settings.all_api_keys()) and not is_open_path(path, settings.open_paths)
    if guarded:
        extra.append(401)
        if settings.rate_limit_requests_per_min or settings.rate_limit_tokens_per_min:
            extra.append(429)
        operation["security"] = [{"bearer": []}, {"apiKey": []}]
    envelope = AnthropicError if anthropic_path(path) else ErrorResponse
    for status in extra:
        responses.setdefault(str(status), _error_object(status, envelope))
    operation["responses"] = dict(sorted(responses.items()))
    operation.setdefault("parameters", []).extend([_TIMEOUT_HEADER, _ID_HEADER])


def _error_object(status: int, envelope: type[BaseModel]) -> dict[str, Any]:
    return {"description": ERRORS[status], "content": {"application/json": {
        "schema": {"$ref": ref(envelope)}}}}


def _add_security(document: dict[str, Any], settings: Settings) -> None:
    if settings.all_api_keys():
        document["components"]["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}}


@cache
def examples() -> dict[str, dict[str, dict[str, Any]]]:
    """Real answers, by "METHOD /path" then media type then name (see tests/e2e)."""
    text = resources.files("pocketserve.api").joinpath("openapi_examples.json").read_text()
    loaded: dict[str, dict[str, dict[str, Any]]] = json.loads(text)
    return loaded


def _add_examples(document: dict[str, Any]) -> None:
    for key, by_media in examples().items():
        method, path = key.split(" ", 1)
        success = document["paths"][path][method.lower()]["responses"]["200"]
        for media_type, named in by_media.items():
            success.setdefault("content", {}).setdefault(media_type, {})["examples"] = named
