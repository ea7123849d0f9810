"""How tool requests become a prompt and a grammar, and how the API reads them (no model)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pocketserve.api.protocol.chat import ChatCompletionRequest
from pocketserve.backends.llamacpp_chunks import ChoiceParsers
from pocketserve.backends.tool_calls import (
    MAX_CALLS,
    arguments_schema,
    call_schema,
    grammar,
    native_format,
    template_messages,
)
from pocketserve.errors import InvalidRequest
from pocketserve.ops.chat import (
    ChatMessage,
    ReasoningDelta,
    TextDelta,
    Tool,
    ToolCall,
    ToolCallDelta,
)

WEATHER = Tool("get_weather", "Weather in a city",
               {"type": "object", "properties": {"city": {"type": "string"}},
                "required": ["city"]})
CLOCK = Tool("get_time")
HISTORY = [
    ChatMessage(role="system", content="Be brief."),
    ChatMessage(role="user", content="Weather in Paris and Oslo?"),
    ChatMessage(role="assistant", tool_calls=[ToolCall("c1", "get_weather", '{"city": "Paris"}'),
                                              ToolCall("c2", "get_weather", '{"city": "Oslo"}')]),
    ChatMessage(role="tool", tool_call_id="c1", content="21 C"),
    ChatMessage(role="tool", tool_call_id="c2", content="3 C"),
]


def text(m: ChatMessage) -> str:
    return m.text()


def test_generic_prompt_teaches_the_format_and_writes_history_as_text() -> None:
    out = template_messages(HISTORY, [WEATHER], native=False, text=text)
    assert [m["role"] for m in out] == ["system", "user", "assistant", "user"]
    assert out[0]["content"].startswith("Be brief.\n\n# Tools")
    assert json.dumps({"type": "function", "function": {
        "name": "get_weather", "parameters": WEATHER.parameters,
        "description": "Weather in a city"}}) in out[0]["content"]
    assert out[2]["content"] == (
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n'
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>')
    assert out[3]["content"] == ("<tool_response>\n21 C\n</tool_response>\n"
                                 "<tool_response>\n3 C\n</tool_response>")
    assert all(set(m) == {"role", "content"} for m in out)


def test_native_prompt_keeps_openai_shapes_for_the_template() -> None:
    out = template_messages(HISTORY, [WEATHER], native=True, text=text)
    assert out[2]["tool_calls"][1] == {"id": "c2", "type": "function", "function": {
        "name": "get_weather", "arguments": '{"city": "Oslo"}'}}
    assert out[3] == {"role": "tool", "content": "21 C", "tool_call_id": "c1"}


def test_native_means_the_template_writes_hermes_calls() -> None:
    assert native_format("... <tool_call> ...", {"supports_tools": True})
    assert not native_format("{{ tools }}", {"supports_tools": True})  # another format
    assert not native_format("<tool_call>", {"supports_tools": False})


def test_grammars_per_choice() -> None:
    required = grammar([WEATHER, CLOCK], "required", parallel=True)
    assert f"{{0,{MAX_CALLS - 1}}}" in required and "TEXT" not in required
    assert "fn0: %json" in required and "fn1: %json" in required
    named = grammar([WEATHER, CLOCK], "get_time", parallel=True)
    assert "fn1" not in named and "{0," not in named and '"const": "get_time"' in named
    auto = grammar([WEATHER], "auto", parallel=False)
    assert "start: (TEXT? | head calls_rest | loose)" in auto and "BARE0 args0" in auto
    none = grammar([WEATHER], "none", parallel=True)
    assert "<tool_call>\\n" not in none and "~/(?s:.*<tool_call>.*)/" in none
    thinking = grammar([WEATHER], "required", parallel=False, in_thought=True)
    assert thinking.splitlines()[1] == "start: thought BLANK? (calls)"
    with_json = grammar([WEATHER], "auto", parallel=False, answer_schema={"type": "object"})
    assert "start: (answer | calls)" in with_json


def test_forcing_an_undeclared_function_is_refused() -> None:
    with pytest.raises(InvalidRequest) as caught:
        grammar([WEATHER], "nope", parallel=False)
    assert caught.value.param == "tool_choice"


def test_call_schema_closes_objects_and_hoists_definitions() -> None:
    tool = Tool("book", parameters={
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object", "properties": {"when": {"$ref": "#/$defs/slot"},
                                         "extra": {"type": "object",
                                                   "additionalProperties": True}},
        "$defs": {"slot": {"type": "object", "properties": {"day": {"type": "string"}}}}})
    schema = call_schema(tool)
    assert schema["$defs"]["slot"]["additionalProperties"] is False  # where the $ref points
    arguments = schema["properties"]["arguments"]
    assert arguments["additionalProperties"] is False and "$schema" not in arguments
    assert arguments["properties"]["extra"]["additionalProperties"] is True  # asked for
    assert arguments_schema(CLOCK) == {"type": "object", "properties": {},
                                       "additionalProperties": False}


def request(**body: Any) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], **body})


def test_api_defaults_and_lenient_history() -> None:
    tool = {"type": "function", "function": {"name": "f", "strict": True}}
    assert request().to_engine().tool_choice == "none"
    engine = request(tools=[tool]).to_engine(split_reasoning=False)
    assert (engine.tool_choice, engine.parallel_tool_calls, engine.split_reasoning) == (
        "auto", True, False)
    assert engine.tools == [Tool("f", None, {}, True)]
    named = request(tools=[tool], parallel_tool_calls=False,
                    tool_choice={"type": "function", "function": {"name": "f"}}).to_engine()
    assert (named.tool_choice, named.parallel_tool_calls) == ("f", False)
    sloppy = request(messages=[
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": None, "type": "function", "function": {"name": "f", "arguments": {"a": 1}}}]},
        {"role": "tool", "tool_call_id": None, "content": [{"type": "text", "text": "ok"}]}])
    first, second = sloppy.to_engine().messages
    assert first.tool_calls == [ToolCall("call_0_0", "f", '{"a": 1}')] and first.content == ""
    assert (second.role, second.content, second.tool_call_id) == ("tool", "ok", None)


def test_chunks_from_llama_cpp_become_events() -> None:
    parsers = ChoiceParsers(reasoning=True, tools=["f"])
    events = [e for chunk in (
        {"index": 0, "delta": {"reasoning_content": "hmm"}},
        {"index": 0, "delta": {"content": '<tool_call>\n{"name": "f", "arguments": {}}'}},
        {"index": 0, "delta": {"content": "\n</tool_call>"}, "finish_reason": "stop"},
    ) for e in parsers.events(chunk)]
    assert events[0] == ReasoningDelta(0, "hmm")
    assert isinstance(events[1], ToolCallDelta) and events[1].name == "f"
    assert events[-1] == TextDelta(0, "", None, "tool_calls")
