"""Tool calling on /v1/chat/completions through the official SDK, against SmolLM2 (its template
knows no tools: it gets the generic format). Required and named calls are grammar-enforced, so
even this 135M model always answers a valid call."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

from tests.api.tool_helpers import (
    CALENDAR,
    EMAIL,
    PROMPTS,
    SEARCH,
    TIME,
    TOOL_SETS,
    WEATHER,
    check_call,
)
from tests.conftest import RunningServer

MODEL = "smollm2-135m-instruct"
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
ALL = TOOL_SETS["assistant"]


def create(client: OpenAI, **kwargs: Any) -> Any:
    kwargs.setdefault("max_tokens", 120)
    return client.chat.completions.create(model=MODEL, **kwargs)


def test_required_call_is_valid_and_in_openai_shape(client: OpenAI) -> None:
    r = create(client, messages=ASK, tools=[WEATHER, TIME], tool_choice="required",
               temperature=0)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    (call,) = choice.message.tool_calls or []
    assert call.type == "function" and call.id.startswith("call_") and len(call.id) == 29
    assert call.function.name in ("get_weather", "get_time")
    check_call([WEATHER, TIME], call.function.name, call.function.arguments)
    assert r.usage is not None and r.usage.completion_tokens > 0


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_required_calls_match_their_schemas_over_prompts_and_seeds(client: OpenAI,
                                                                   seed: int) -> None:
    for prompt in PROMPTS[seed::10]:
        r = create(client, messages=[{"role": "user", "content": prompt}], tools=ALL,
                   tool_choice="required", temperature=1.0, seed=seed, max_tokens=300)
        calls = r.choices[0].message.tool_calls or []
        assert r.choices[0].finish_reason == "tool_calls", prompt
        assert len(calls) == 1, "a template without tools gets one call per answer"
        check_call(ALL, calls[0].function.name, calls[0].function.arguments)


@pytest.mark.parametrize("tool", [WEATHER, SEARCH, EMAIL, CALENDAR],
                         ids=lambda t: t["function"]["name"])
def test_named_function_is_the_one_called(client: OpenAI, tool: dict[str, Any]) -> None:
    name = tool["function"]["name"]
    for seed in (5, 6):
        r = create(client, messages=[{"role": "user", "content": PROMPTS[seed]}], tools=ALL,
                   tool_choice={"type": "function", "function": {"name": name}},
                   temperature=0.9, seed=seed, max_tokens=300)
        (call,) = r.choices[0].message.tool_calls or []
        assert call.function.name == name
        check_call(ALL, name, call.function.arguments)


@pytest.mark.parametrize("choice", ["required", {"type": "function",
                                                 "function": {"name": "create_event"}}])
def test_streamed_call_deltas(client: OpenAI, choice: Any) -> None:
    stream = create(client, messages=[{"role": "user", "content": "Plan lunch on 2025-05-05"}],
                    tools=ALL, tool_choice=choice, temperature=0, stream=True, max_tokens=300,
                    stream_options={"include_usage": True})
    chunks = list(stream)
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    calls = [tc for d in deltas for tc in (d.tool_calls or [])]
    first, *rest = calls
    assert (first.index, first.type) == (0, "function")
    assert first.id and first.id.startswith("call_")
    assert first.function is not None and first.function.name and first.function.arguments == ""
    assert rest and all(tc.id is None and tc.type is None and tc.index == 0 for tc in rest)
    assert all(tc.function is not None and tc.function.name is None for tc in rest)
    assert not any(d.content for d in deltas), "no markup or text beside a required call"
    arguments = "".join(tc.function.arguments or "" for tc in rest)  # type: ignore[union-attr]
    check_call(ALL, first.function.name, arguments)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "tool_calls" and not any(finishes[:-1])
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_stream_and_whole_answer_agree(client: OpenAI) -> None:
    kwargs: dict[str, Any] = {"messages": ASK, "tools": [WEATHER], "tool_choice": "required",
                              "temperature": 0}
    whole = create(client, **kwargs).choices[0].message.tool_calls[0]
    parts = [tc for c in create(client, stream=True, **kwargs) if c.choices
             for tc in (c.choices[0].delta.tool_calls or [])]
    assert parts[0].function.name == whole.function.name
    assert "".join(p.function.arguments or "" for p in parts) == whole.function.arguments


def test_none_and_auto_answer_text_without_markup(client: OpenAI) -> None:
    for choice in ("none", "auto"):
        for stream in (False, True):
            kwargs: dict[str, Any] = {"messages": [{"role": "user", "content": "Tell me a joke."}],
                                      "tools": ALL, "tool_choice": choice, "seed": 3}
            if stream:
                chunks = list(create(client, stream=True, **kwargs))
                text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
                calls = [tc for c in chunks if c.choices
                         for tc in c.choices[0].delta.tool_calls or []]
            else:
                message = create(client, **kwargs).choices[0].message
                text, calls = message.content or "", message.tool_calls or []
            assert "<tool_call>" not in text and "</tool_call>" not in text
            if choice == "none":
                assert text and not calls
            for call in calls:  # auto may call, but only validly
                if call.function and call.function.name:
                    check_call(ALL, call.function.name, call.function.arguments or "{}")


def test_tool_history_round_trip(client: OpenAI) -> None:
    first = create(client, messages=ASK, tools=[WEATHER], tool_choice="required", temperature=0)
    call = first.choices[0].message.tool_calls[0]
    history = [*ASK, {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
               {"role": "tool", "tool_call_id": call.id,
                "content": json.dumps({"temperature_c": 21, "sky": "sunny"})}]
    r = create(client, messages=history, tools=[WEATHER], temperature=0, max_tokens=40)
    assert r.choices[0].finish_reason in ("stop", "length", "tool_calls")
    prompt_with_result = r.usage.prompt_tokens  # type: ignore[union-attr]
    assert prompt_with_result > first.usage.prompt_tokens  # type: ignore[union-attr]
    # Sloppy but common: an id of null, arguments as an object, no tools on the follow-up.
    sloppy = [*ASK, {"role": "assistant", "content": None, "tool_calls": [
        {"id": None, "type": "function",
         "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "tool_call_id": None, "content": "21 C, sunny"}]
    r = create(client, messages=sloppy, temperature=0, max_tokens=20)  # type: ignore[arg-type]
    text = r.choices[0].message.content or ""
    assert r.choices[0].message.tool_calls is None and "<tool_call>" not in text


def post(server: RunningServer, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(server.base_url + "/v1/chat/completions",
                      json={"model": MODEL, "messages": ASK, "max_tokens": 5, **body})


@pytest.mark.parametrize(("body", "param"), [
    ({"tools": [{"type": "function", "function": {
        "name": "f", "parameters": {"type": "object", "properties": {"x": {"type": 7}}}}}]},
     "tools[0].function.parameters"),
    ({"tools": [WEATHER, {"type": "function", "function": {
        "name": "g", "parameters": {"type": "string"}}}]}, "tools[1].function.parameters"),
    ({"tools": [{"type": "function", "function": {"name": "has space"}}]},
     "tools[0].function.name"),
    ({"tools": [WEATHER, WEATHER]}, "tools[1].function.name"),
    ({"tools": [{"type": "retrieval", "function": {"name": "f"}}]}, "tools[0].type"),
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
     "tool_choice.function.name"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"tools": [WEATHER], "tool_choice": "sometimes"}, "tool_choice"),
])
def test_bad_tools_are_400s_naming_the_field(chat_server: RunningServer,
                                              body: dict[str, Any], param: str) -> None:
    r = post(chat_server, body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param


def test_sdk_raises_bad_request_for_an_undeclared_choice(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="not declared"):
        create(client, messages=ASK, tools=[WEATHER],
               tool_choice={"type": "function", "function": {"name": "get_time"}})


def test_models_say_which_take_tools(chat_server: RunningServer) -> None:
    model = httpx.get(chat_server.base_url + f"/v1/models/{MODEL}").json()
    assert model["tools"] is True


def test_suffix_needs_fim_tokens(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model=MODEL, prompt="def add(a, b):\n", suffix="\n",
                                  max_tokens=5)
    error = caught.value.body
    assert isinstance(error, dict) and error["param"] == "suffix"
    assert "fill-in-the-middle" in error["message"]
