"""Anthropic's Messages requests as engine requests, and engine events as its answers, with no
model: blocks, tools, refusals by name, the streamed events against the whole message, and the
envelope errors take on /v1/messages routes (middleware ones included)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from pocketserve.api.app import create_app
from pocketserve.api.message_answers import MessageShaper, message_events, whole_message
from pocketserve.api.protocol.messages import CountTokensRequest, MessagesRequest
from pocketserve.config import Settings
from pocketserve.errors import InvalidRequest
from pocketserve.ops.chat import ReasoningDelta, TextDelta, ToolCallDelta
from pocketserve.ops.common import Usage

WEATHER = {"name": "get_weather", "description": "Weather in a city.",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                            "required": ["city"]}}


def request(**fields: Any) -> MessagesRequest:
    body = {"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "Hi"}]}
    return MessagesRequest.model_validate({**body, **fields})


def test_system_blocks_and_history_become_chat_messages() -> None:
    engine = request(system=[{"type": "text", "text": "Be brief."},
                             {"type": "text", "text": "Be kind."}], messages=[
        {"role": "user", "content": [{"type": "text", "text": "Weather?"}]},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "x"},
            {"type": "text", "text": "Let me look."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
             "input": {"city": "Oslo"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "is_error": True,
             "content": [{"type": "text", "text": "no network"}]},
            {"type": "text", "text": "Try again?"}]}],
        tools=[WEATHER]).to_engine()
    shape = [(m.role, m.content, [(c.id, c.name, json.loads(c.arguments))
                                  for c in m.tool_calls], m.tool_call_id)
             for m in engine.messages]
    assert shape == [
        ("system", "Be brief.\nBe kind.", [], None), ("user", "Weather?", [], None),
        ("assistant", "Let me look.", [("toolu_1", "get_weather", {"city": "Oslo"})], None),
        ("tool", "Error: no network", [], "toolu_1"), ("user", "Try again?", [], None)]
    assert [t.name for t in engine.tools] == ["get_weather"]
    assert engine.tool_choice == "auto" and engine.parallel_tool_calls


@pytest.mark.parametrize(("choice", "engine", "parallel"), [
    ({"type": "any"}, "required", True), ({"type": "none"}, "none", True),
    ({"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
     "get_weather", False), ({"type": "auto", "disable_parallel_tool_use": True}, "auto", False)])
def test_tool_choice(choice: dict[str, Any], engine: str, parallel: bool) -> None:
    converted = request(tools=[WEATHER], tool_choice=choice).to_engine()
    assert (converted.tool_choice, converted.parallel_tool_calls) == (engine, parallel)


def test_sampling_and_stop_sequences_reach_the_engine() -> None:
    s = request(temperature=0.5, top_p=0.9, top_k=20, stop_sequences=["END", "\n\n"],
                output_config={"format": {"type": "json_schema",
                                          "schema": {"type": "object"}}}).to_engine().sampling
    assert (s.max_tokens, s.temperature, s.top_p, s.top_k) == (8, 0.5, 0.9, 20)
    assert s.stop == ["END", "\n\n"] and s.json_schema == {"type": "object"}


@pytest.mark.parametrize(("fields", "param"), [
    ({"messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                     "data": "AA=="}}]}]}, "messages[0].content[0]"),
    ({"messages": [{"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "t", "content": [{"type": "image"}]}]}]},
     "messages[0].content[0].content[0]"),
    ({"messages": [{"role": "user", "content": [{"type": "tool_use", "id": "t", "name": "f",
                                                 "input": {}}]}]}, "messages[0].content[0].type"),
    ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools[0].type"),
    ({"tools": [{"name": "f"}]}, "tools[0].input_schema"),
    ({"tools": [WEATHER, WEATHER]}, "tools[1].name"),
    ({"tool_choice": {"type": "any"}}, "tool_choice"),
    ({"tools": [WEATHER], "tool_choice": {"type": "tool", "name": "nope"}}, "tool_choice.name"),
    ({"tools": [WEATHER], "tool_choice": {"type": "tool"}}, "tool_choice.name"),
    ({"thinking": {"type": "enabled", "budget_tokens": 2048}}, "thinking.type"),
    ({"mcp_servers": [{"type": "url", "url": "https://x", "name": "x"}]}, "mcp_servers"),
    ({"container": "c1"}, "container"),
    ({"speed": "fast"}, "speed"),
    ({"output_config": {"effort": "high"}}, "output_config.effort"),
])
def test_what_cannot_be_honoured_is_refused_by_name(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        request(**fields).to_engine()
    assert caught.value.param == param


def test_hints_are_accepted() -> None:
    engine = request(cache_control={"type": "ephemeral"}, metadata={"user_id": "u1"},
                     service_tier="standard_only", speed="standard", system=[
                         {"type": "text", "text": "S", "cache_control": {"type": "ephemeral"}}],
                     thinking={"type": "adaptive"}).to_engine()
    assert engine.messages[0].content == "S"


def test_count_tokens_renders_with_the_same_tools() -> None:
    tokenize = CountTokensRequest.model_validate({
        "model": "m", "messages": [{"role": "user", "content": "Hi"}], "tools": [WEATHER],
        "tool_choice": {"type": "tool", "name": "get_weather"}}).to_engine()
    assert tokenize.tool_choice == "get_weather" and tokenize.tools[0].name == "get_weather"
    assert tokenize.messages is not None and tokenize.messages[0].content == "Hi"


# -- answers ---------------------------------------------------------------------------------

EVENTS: list[Any] = [
    ReasoningDelta(0, "Thinking."), TextDelta(0, "Sure"), TextDelta(0, "."),
    ToolCallDelta(0, 0, "", "call_" + "a" * 24, "get_weather"),
    ToolCallDelta(0, 0, '{"city": '), ToolCallDelta(0, 0, '"Oslo"}'),
    TextDelta(0, "", finish_reason="tool_calls"), Usage(20, 9, 4)]


async def _source(events: list[Any]) -> AsyncIterator[Any]:
    for event in events:
        yield event


def test_whole_message() -> None:
    body = asyncio.run(whole_message(MessageShaper("m"), _source(EVENTS)))
    assert body["id"].startswith("msg_") and body["type"] == "message"
    assert body["content"] == [
        {"type": "thinking", "thinking": "Thinking.", "signature": ""},
        {"type": "text", "text": "Sure."},
        {"type": "tool_use", "id": "toolu_" + "a" * 24, "name": "get_weather",
         "input": {"city": "Oslo"}}]
    assert body["stop_reason"] == "tool_use" and body["stop_sequence"] is None
    assert body["usage"] == {"input_tokens": 16, "output_tokens": 9,
                             "cache_creation_input_tokens": 0, "cache_read_input_tokens": 4}


async def _collect(shaper: MessageShaper, events: list[Any]) -> list[dict[str, Any]]:
    return [e async for e in message_events(shaper, _source(events))]


def test_stream_events_assemble_into_the_whole_message() -> None:
    streamed = asyncio.run(_collect(MessageShaper("m"), EVENTS))
    kinds = [e["type"] for e in streamed]
    assert kinds[:2] == ["message_start", "ping"] and kinds[-2:] == ["message_delta",
                                                                     "message_stop"]
    message = streamed[0]["message"]
    for event in streamed:  # what the SDK does with them
        if event["type"] == "content_block_start":
            message["content"].append(event["content_block"])
        elif event["type"] == "content_block_delta":
            block, delta = message["content"][event["index"]], event["delta"]
            if delta["type"] == "input_json_delta":
                block["_json"] = block.get("_json", "") + delta["partial_json"]
                block["input"] = json.loads(block["_json"]) if block["_json"].endswith(
                    "}") else block["input"]
            else:
                key = "text" if delta["type"] == "text_delta" else "thinking"
                block[key] += delta[key]
        elif event["type"] == "message_delta":
            message.update(event["delta"])
            message["usage"] = event["usage"]
    for block in message["content"]:
        block.pop("_json", None)
    whole = asyncio.run(whole_message(MessageShaper("m", id=message["id"]), _source(EVENTS)))
    assert message == whole
    starts = [e["index"] for e in streamed if e["type"] == "content_block_start"]
    stops = [e["index"] for e in streamed if e["type"] == "content_block_stop"]
    assert starts == stops == [0, 1, 2]


def test_stop_sequence_and_hidden_thinking() -> None:
    events = [ReasoningDelta(0, "hm"), TextDelta(0, "A"),
              TextDelta(0, "", finish_reason="stop", stop_sequence="END"), Usage(3, 2)]
    body = asyncio.run(whole_message(MessageShaper("m", thinking="hidden"), _source(events)))
    assert body["content"] == [{"type": "text", "text": "A"}]
    assert (body["stop_reason"], body["stop_sequence"]) == ("stop_sequence", "END")
    omitted = asyncio.run(whole_message(MessageShaper("m", thinking="omitted"), _source(events)))
    assert omitted["content"][0] == {"type": "thinking", "thinking": "", "signature": ""}


@pytest.mark.parametrize(("finish", "reason"), [("stop", "end_turn"), ("length", "max_tokens")])
def test_stop_reasons(finish: str, reason: str) -> None:
    events = [TextDelta(0, "x", finish_reason=finish), Usage(1, 1)]  # type: ignore[arg-type]
    assert asyncio.run(whole_message(MessageShaper("m"), _source(events)))[
        "stop_reason"] == reason


# -- errors in Anthropic's envelope, by path -------------------------------------------------


@pytest.fixture()
def client() -> Iterator[TestClient]:
    settings = Settings(models=[], api_keys=["sk-test"], max_body_bytes=2048)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def _anthropic_error(reply: Any, status: int, kind: str) -> str:
    assert reply.status_code == status, reply.text
    body = reply.json()
    assert set(body) == {"type", "error", "request_id"} and body["type"] == "error"
    assert body["error"]["type"] == kind and body["request_id"] == reply.headers["x-request-id"]
    return str(body["error"]["message"])


def test_errors_on_messages_routes_use_anthropic_envelope(client: TestClient) -> None:
    key = {"x-api-key": "sk-test"}
    hi = {"model": "nope", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    _anthropic_error(client.post("/v1/messages", json=hi), 401, "authentication_error")
    _anthropic_error(client.post("/v1/messages/count_tokens", json=hi), 401,
                     "authentication_error")
    assert "nope" in _anthropic_error(client.post("/v1/messages", json=hi, headers=key), 404,
                                      "not_found_error")
    missing = _anthropic_error(client.post("/v1/messages", headers=key, json={
        "model": "m", "messages": hi["messages"]}), 400, "invalid_request_error")
    assert "max_tokens" in missing
    _anthropic_error(client.post("/v1/messages", headers=key, content=b"{"), 400,
                     "invalid_request_error")
    _anthropic_error(client.post("/v1/messages", headers=key, json={
        **hi, "system": "x" * 4000}), 413, "request_too_large")
    _anthropic_error(client.get("/v1/messages", headers=key), 405, "invalid_request_error")
    # Bearer keys still work, and other routes keep OpenAI's envelope.
    bearer = client.post("/v1/messages", json=hi, headers={"Authorization": "Bearer sk-test"})
    assert bearer.status_code == 404
    assert client.post("/v1/chat/completions", json=hi).json()["error"]["code"] == (
        "invalid_api_key")
