"""/openapi.json on an app serving no model: every route documents its errors in OpenAI's
envelope (Anthropic's on /v1/messages routes), its request and its answer with examples, and
the examples fit the schemas."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.routing import APIRoute
from jsonschema import Draft202012Validator
from pydantic import BaseModel

from pocketserve.api.app import create_app
from pocketserve.api.protocol import dialogue
from pocketserve.api.protocol.transcription import FORM_EXAMPLES, TranscriptionForm
from pocketserve.api.routes import (
    admin,
    chat,
    embeddings,
    messages,
    models,
    rerank,
    responses,
    speech,
    transcription,
    voice_aliases,
)
from pocketserve.config import Settings
from tests.e2e.openapi_examples import events

ENVELOPE = {"$ref": "#/components/schemas/ErrorResponse"}
ANTHROPIC_ENVELOPE = {"$ref": "#/components/schemas/AnthropicError"}


def _document(**settings: Any) -> dict[str, Any]:
    document: dict[str, Any] = create_app(Settings(models=[], **settings)).openapi()
    return document


DOC = _document()
OPERATIONS = [(f"{method.upper()} {path}", op) for path, item in DOC["paths"].items()
              for method, op in item.items()]


def _validator(schema: dict[str, Any]) -> Draft202012Validator:
    """Validates against `schema`, its refs resolved in the document's components."""
    return Draft202012Validator({**schema, "components": DOC["components"]})


@pytest.mark.parametrize(("name", "operation"), OPERATIONS, ids=[n for n, _ in OPERATIONS])
def test_every_error_is_the_envelope_and_none_is_422(name: str, operation: dict[str, Any]) -> None:
    responses = operation["responses"]
    assert "422" not in responses
    errors = {code: r for code, r in responses.items() if code.startswith(("4", "5"))}
    assert "400" in errors  # a bad X-Request-Timeout, on any route
    if "requestBody" in operation:
        assert "413" in errors
    envelope = ANTHROPIC_ENVELOPE if name.startswith("POST /v1/messages") else ENVELOPE
    for code, response in errors.items():
        if name in ("GET /health", "GET /healthz", "GET /ping") and code == "503":
            continue  # /health and its aliases answer their own body while not ready
        assert response["content"]["application/json"]["schema"] == envelope, code


def test_model_routes_list_the_serving_errors() -> None:
    chat = DOC["paths"]["/v1/chat/completions"]["post"]["responses"]
    assert {"400", "404", "413", "429", "500", "503", "504"} <= set(chat)
    assert set(chat) == set(DOC["paths"]["/v1/messages"]["post"]["responses"])
    assert set(DOC["paths"]["/v1/models"]["get"]["responses"]) == {"200", "400"}


def test_no_fastapi_validation_schemas_and_every_ref_resolves() -> None:
    schemas = DOC["components"]["schemas"]
    assert "HTTPValidationError" not in schemas and "ValidationError" not in schemas
    refs = {r.rsplit("/", 1)[1] for r in _refs(DOC)}
    assert refs - set(schemas) == set()


def _refs(value: Any) -> list[str]:
    if isinstance(value, dict):
        own = [value["$ref"]] if isinstance(value.get("$ref"), str) else []
        return own + [r for v in value.values() for r in _refs(v)]
    if isinstance(value, list):
        return [r for v in value for r in _refs(v)]
    return []


def test_audio_forms_list_what_the_parser_reads() -> None:
    schemas = DOC["components"]["schemas"]
    body = DOC["paths"]["/v1/audio/transcriptions"]["post"]["requestBody"]
    assert body["content"]["multipart/form-data"]["schema"]["$ref"].endswith(
        "CreateTranscriptionRequest")
    form = schemas["CreateTranscriptionRequest"]
    assert form["required"] == ["file", "model"]
    assert form["properties"]["file"] == {**form["properties"]["file"], "type": "string",
                                          "format": "binary"}
    assert set(form["properties"]) == {"file", *TranscriptionForm.model_fields}
    assert set(schemas["CreateTranslationRequest"]["properties"]) == {
        "file", "model", "prompt", "response_format", "temperature"}
    assert "null" not in json.dumps(form["properties"])  # a form field is text or absent


def _request_models() -> dict[str, type[BaseModel]]:
    found = {}
    for module in (admin, embeddings, models, rerank, speech, chat, transcription, responses,
                   messages, voice_aliases):
        for route in module.router.routes:
            assert isinstance(route, APIRoute)
            field = route.body_field
            if field is not None:
                model = field.field_info.annotation
                assert isinstance(model, type) and issubclass(model, BaseModel)
                found[model.__name__] = model
    return found


@pytest.mark.parametrize(("name", "model"), sorted(_request_models().items()))
def test_request_examples_parse_as_their_model(name: str, model: type[BaseModel]) -> None:
    examples = DOC["components"]["schemas"][name]["examples"]
    assert examples
    for example in examples:
        model.model_validate(example)
        _validator(DOC["components"]["schemas"][name]).validate(example)


def test_form_examples_parse_as_the_form() -> None:
    for task, examples in FORM_EXAMPLES.items():
        for example in examples:
            fields = {k: v for k, v in example.items() if k != "file"}
            TranscriptionForm.model_validate(fields)
            assert example["file"], task


def test_dialogue_form_lists_what_the_parser_reads_and_its_examples_parse() -> None:
    form = DOC["components"]["schemas"]["DialogueRequest"]
    assert form["required"] == ["file"]
    assert set(form["properties"]) == {"file", *dialogue.DialogueForm.model_fields}
    assert "null" not in json.dumps(form["properties"])
    for example in form["examples"]:
        dialogue.DialogueForm.model_validate({k: v for k, v in example.items() if k != "file"})
        _validator(form).validate(example)
    alias = DOC["components"]["schemas"]["SpeechToTextRequest"]
    assert alias["required"] == ["file"]
    assert set(alias["properties"]) == {"file", *TranscriptionForm.model_fields}


@pytest.mark.parametrize(("name", "operation"), OPERATIONS, ids=[n for n, _ in OPERATIONS])
def test_every_answer_example_fits_its_schema(name: str, operation: dict[str, Any]) -> None:
    content = operation["responses"]["200"]["content"]
    documented = [(media, example) for media, body in content.items()
                  for example in body.get("examples", {}).values()]
    assert documented, f"{name} has no example answer"
    for media, example in documented:
        schema = content[media]["schema"]
        if media == "text/event-stream":
            data = schema["properties"]["data"]
            json_branch = next(b for b in data.get("anyOf", [data]) if "contentSchema" in b)
            for event in events(example["value"]):
                if event != "[DONE]":
                    _validator(json_branch["contentSchema"]).validate(event)
        else:
            _validator(schema).validate(example["value"])


def test_keys_and_rate_limits_appear_where_they_apply() -> None:
    document = _document(api_keys=["sk-x"], rate_limit_requests_per_min=10)
    assert set(document["components"]["securitySchemes"]) == {"bearer", "apiKey"}
    chat = document["paths"]["/v1/chat/completions"]["post"]
    assert {"401", "429"} <= set(chat["responses"]) and chat["security"]
    for path in ("/health", "/healthz", "/ping"):
        health = document["paths"][path]["get"]
        assert "401" not in health["responses"] and "security" not in health
    assert "401" not in DOC["paths"]["/v1/models"]["get"]["responses"]  # no keys: no 401


def test_docs_page_is_served() -> None:
    from fastapi.testclient import TestClient

    with TestClient(create_app(Settings(models=[]))) as client:
        assert client.get("/openapi.json").json() == DOC
        assert client.get("/docs").status_code == 200
