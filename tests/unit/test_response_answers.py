"""Responses API shaping without a model: engine events in, OpenAI's events and response out,
each checked by the official SDK's own types; input items and refusals; keys on the routes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from pocketserve.api.app import create_app
from pocketserve.api.protocol.responses import CreateResponse
from pocketserve.api.response_answers import ResponseBuilder, settings_echo, stream_events
from pocketserve.config import Settings
from pocketserve.errors import InvalidRequest, ModelNotReady, StorageFailure
from pocketserve.ops.chat import ChatEvent, ReasoningDelta, TextDelta, ToolCallDelta
from pocketserve.ops.common import Usage

SDK_EVENT: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
TOOL = {"type": "function", "name": "f", "parameters": {"type": "object"}}


def _body(**fields: Any) -> CreateResponse:
    return CreateResponse.model_validate({"model": "m", "input": "hi", **fields})


def _run(events: list[ChatEvent], fail: Exception | None = None,
         **fields: Any) -> list[dict[str, Any]]:
    builder = ResponseBuilder("m", settings_echo(_body(**fields), {}))

    async def source() -> AsyncIterator[ChatEvent]:
        for event in events:
            yield event
        if fail is not None:
            raise fail

    async def collect() -> list[dict[str, Any]]:
        return [e async for e in stream_events(builder, source())]

    out = asyncio.run(collect())
    for event in out:
        SDK_EVENT.validate_python(event)  # the SDK's strict types accept every event
    return out


def test_text_then_call_in_openai_order() -> None:
    events = _run([ReasoningDelta(0, "hm"), TextDelta(0, "Hel"), TextDelta(0, "lo"),
                   ToolCallDelta(0, 0, "", id="call_1", name="f"), ToolCallDelta(0, 0, "{}"),
                   TextDelta(0, "", finish_reason="tool_calls"), Usage(5, 7)], tools=[TOOL])
    assert [e["type"] for e in events] == [
        "response.created", "response.in_progress",
        "response.output_item.added", "response.content_part.added",
        "response.reasoning_text.delta", "response.reasoning_text.done",
        "response.content_part.done", "response.output_item.done",
        "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta",
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.done", "response.output_item.done",
        "response.completed"]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    final = Response.model_validate(events[-1]["response"])
    assert final.status == "completed" and final.output_text == "Hello"
    assert [item.type for item in final.output] == ["reasoning", "message", "function_call"]
    call = final.output[2]
    assert call.type == "function_call" and (call.call_id, call.arguments) == ("call_1", "{}")
    assert final.usage is not None and final.usage.total_tokens == 12
    assert final.usage.output_tokens_details.reasoning_tokens == 1
    assert events[0]["response"]["output"] == [] and events[0]["response"]["usage"] is None


def test_length_is_incomplete_and_the_open_item_says_so() -> None:
    events = _run([TextDelta(0, "Once"), TextDelta(0, "", finish_reason="length"),
                   Usage(3, 16)])
    assert events[-1]["type"] == "response.incomplete"
    final = Response.model_validate(events[-1]["response"])
    assert final.status == "incomplete" and final.completed_at is None
    assert final.incomplete_details is not None
    assert final.incomplete_details.reason == "max_output_tokens"
    assert final.output[0].type == "message" and final.output[0].status == "incomplete"


def test_failure_after_the_start_is_response_failed() -> None:
    events = _run([TextDelta(0, "Hi")], fail=ModelNotReady("The model crashed."))
    assert events[-1]["type"] == "response.failed"
    failed = Response.model_validate(events[-1]["response"])
    assert failed.status == "failed" and failed.error is not None
    assert (failed.error.code, failed.error.message) == ("server_error", "The model crashed.")
    assert failed.output_text == "Hi"


def test_a_response_that_cannot_be_stored_does_not_claim_success() -> None:
    builder = ResponseBuilder("m", settings_echo(_body(), {}))

    async def source() -> AsyncIterator[ChatEvent]:
        yield TextDelta(0, "Hi", finish_reason="stop")

    async def keep(response: dict[str, Any]) -> None:
        raise StorageFailure("The response store failed.")

    async def collect() -> list[dict[str, Any]]:
        return [e async for e in stream_events(builder, source(), keep)]

    events = asyncio.run(collect())
    assert events[-1]["type"] == "response.failed"
    assert events[-1]["response"]["error"]["message"] == "The response store failed."
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    for event in events:
        SDK_EVENT.validate_python(event)


def test_nothing_generated_is_still_one_empty_message() -> None:
    final = _run([TextDelta(0, "", finish_reason="stop")])[-1]["response"]
    assert [item["type"] for item in final["output"]] == ["message"]
    assert final["output"][0]["content"][0]["text"] == ""


def test_input_items_become_chat_messages() -> None:
    body = _body(instructions="Be brief.", tools=[TOOL], input=[
        {"role": "developer", "content": "Use tools."},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "a"},
                                                        {"type": "input_text", "text": "b"}]},
        {"role": "assistant", "content": [{"type": "output_text", "text": "Let me see."}]},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "reasoning", "id": "rs_1", "summary": []},
        {"type": "function_call_output", "call_id": "c1", "output": "42"}])
    request = body.to_engine(body.items([]))
    assert [(m.role, m.content) for m in request.messages] == [
        ("system", "Be brief."), ("system", "Use tools."), ("user", "ab"),
        ("assistant", "Let me see."), ("tool", "42")]
    assert [c.id for c in request.messages[3].tool_calls] == ["c1"]
    assert (request.messages[4].tool_call_id, request.messages[4].name) == ("c1", "f")
    assert request.tool_choice == "auto"


@pytest.mark.parametrize(("fields", "param"), [
    ({"input": [{"type": "computer_call", "id": "x"}]}, "input[0].type"),
    ({"input": [{"content": "no role"}]}, "input[0].type"),
    ({"input": [{"role": "user"}]}, "input[0].content"),
    ({"input": ["text"]}, "input[0]"),
    ({"input": [{"role": "user", "content": [{"type": "input_audio"}]}]},
     "input[0].content[0].type"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
     "input[0].content[0]"),
    ({"input": [{"type": "function_call", "name": "f", "arguments": "{}"}]},
     "input[0].call_id"),
    ({"background": True}, "background"),
    ({"truncation": "auto"}, "truncation"),
    ({"reasoning": {"effort": "low"}}, "reasoning.effort"),
    ({"include": ["message.output_text.logprobs", "reasoning.encrypted_content"]},
     "include[1]"),
    ({"tools": [TOOL], "tool_choice": {"type": "allowed_tools", "mode": "auto",
                                       "tools": [{"type": "function", "name": "g"}]}},
     "tool_choice.tools[0].name"),
])
def test_what_cannot_be_served_is_a_400_naming_it(fields: dict[str, Any], param: str) -> None:
    body = _body(**fields)
    with pytest.raises(InvalidRequest) as caught:
        body.to_engine(body.items([]))
    assert caught.value.param == param


def test_allowed_tools_narrow_the_declared_ones() -> None:
    body = _body(tools=[TOOL, {**TOOL, "name": "g"}], tool_choice={
        "type": "allowed_tools", "mode": "required", "tools": [{"type": "function", "name": "g"}]})
    request = body.to_engine(body.items([]))
    assert [t.name for t in request.tools] == ["g"] and request.tool_choice == "required"


def test_the_routes_need_a_key(tmp_path: Path) -> None:
    settings = Settings(models=[], api_keys=["sk-test"], data_dir=tmp_path)
    with TestClient(create_app(settings)) as client:
        assert client.post("/v1/responses", json={"model": "m", "input": "hi"}).status_code == 401
        assert client.get("/v1/responses/resp_1").status_code == 401
        assert client.delete("/v1/responses/resp_1").status_code == 401
        key = {"Authorization": "Bearer sk-test"}
        missing = client.get("/v1/responses/resp_1", headers=key)
        assert missing.status_code == 404
        assert missing.json()["error"] == {"message": "Response with id 'resp_1' not found.",
                                           "type": "invalid_request_error",
                                           "param": "response_id", "code": None}


def test_405_allows_every_method_of_the_path(tmp_path: Path) -> None:
    with TestClient(create_app(Settings(models=[], data_dir=tmp_path))) as client:
        reply = client.put("/v1/responses/resp_1")
        assert reply.status_code == 405 and reply.headers["allow"] == "DELETE, GET"
        assert reply.json()["error"]["type"] == "invalid_request_error"
        assert client.get("/v1/responses").headers["allow"] == "POST"
