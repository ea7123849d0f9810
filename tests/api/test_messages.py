"""Anthropic's Messages API through the official `anthropic` SDK, against the packaged SmolLM2
(its template knows no tools: it gets the generic format, and forced calls are held to their
schemas by a grammar). One server, with an API key and model aliases, serves every test here."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import jsonschema
import pytest

from tests.conftest import RunningServer, start_server, stop_server

MODEL = "smollm2-135m-instruct"
KEY = "sk-messages-test"
ALIASES = {"claude-3-5-haiku-latest": "smollm2", "gpt-4o-mini": MODEL}
FRANCE = [{"role": "user", "content": "What is the capital of France?"}]
SYSTEM = "You are a concise assistant."
LONGER = SYSTEM + " Answer in one short sentence, in plain English."
GREEDY = {"temperature": 0}
WEATHER: dict[str, Any] = {
    "name": "get_weather", "description": "Get the current weather in a city.",
    "input_schema": {"type": "object", "properties": {
        "city": {"type": "string", "description": "City name, e.g. Paris"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city"]}}
TIME: dict[str, Any] = {
    "name": "get_time", "description": "The current time in a time zone.",
    "input_schema": {"type": "object", "properties": {"timezone": {"type": "string"}},
                     "required": ["timezone"]}}
TOOLS = [WEATHER, TIME]
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    running = start_server([MODEL], env={"POCKETSERVE_API_KEYS": json.dumps([KEY]),
                                         "POCKETSERVE_MODEL_ALIASES": json.dumps(ALIASES)})
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def client(server: RunningServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.base_url, api_key=KEY, max_retries=0)


def create(client: anthropic.Anthropic, **kwargs: Any) -> Any:
    kwargs.setdefault("model", MODEL)
    kwargs.setdefault("max_tokens", 30)
    kwargs.setdefault("messages", FRANCE)
    kwargs.setdefault("extra_body", GREEDY)
    return client.messages.create(**kwargs)


def text_of(message: Any) -> str:
    return "".join(b.text for b in message.content if b.type == "text")


def count(client: anthropic.Anthropic, **kwargs: Any) -> int:
    kwargs.setdefault("model", MODEL)
    kwargs.setdefault("messages", FRANCE)
    return int(client.messages.count_tokens(**kwargs).input_tokens)


def prompt_tokens(message: Any) -> int:
    """Every prompt token of a call: Anthropic counts those read from the cache apart."""
    return int(message.usage.input_tokens + (message.usage.cache_read_input_tokens or 0))


def test_text_answer_in_anthropic_shape(client: anthropic.Anthropic) -> None:
    m = create(client, system=SYSTEM)
    assert m.type == "message" and m.role == "assistant" and m.id.startswith("msg_")
    assert m.model == MODEL
    assert [b.type for b in m.content] == ["text"] and "Paris" in text_of(m)
    assert m.stop_reason == "end_turn" and m.stop_sequence is None
    assert m.usage.input_tokens > 0 and 0 < m.usage.output_tokens <= 30


def test_system_as_string_or_blocks_is_the_same_prompt(client: anthropic.Anthropic) -> None:
    plain = create(client, system=SYSTEM)
    blocks = create(client, system=[{"type": "text", "text": SYSTEM}])
    assert text_of(plain) == text_of(blocks)
    assert prompt_tokens(plain) == prompt_tokens(blocks) < prompt_tokens(
        create(client, system=LONGER))
    parts = create(client, messages=[{"role": "user", "content": [
        {"type": "text", "text": FRANCE[0]["content"]}]}])
    assert text_of(parts) == text_of(create(client))


def test_stream_events_and_final_message(client: anthropic.Anthropic) -> None:
    whole = create(client, system=SYSTEM)
    with client.messages.stream(model=MODEL, max_tokens=30, messages=FRANCE, system=SYSTEM,
                                extra_body=GREEDY) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert final.model_dump(exclude={"id"}) == whole.model_dump(exclude={"id"}) | {
        "usage": final.usage.model_dump()}  # the cache may differ between the two calls
    assert prompt_tokens(final) == prompt_tokens(whole)
    assert final.usage.output_tokens == whole.usage.output_tokens
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    raw = [e.type for e in create(client, system=SYSTEM, stream=True)]
    assert raw[0] == "message_start" and raw[1] == "content_block_start"
    assert raw[2:-3] == ["content_block_delta"] * (len(raw) - 5)
    assert raw[-3:] == ["content_block_stop", "message_delta", "message_stop"]


def test_raw_sse_names_each_event(server: RunningServer) -> None:
    reply = httpx.post(server.base_url + "/v1/messages", headers={"x-api-key": KEY}, json={
        "model": MODEL, "max_tokens": 3, "messages": FRANCE, "stream": True}, timeout=60)
    frames = [f for f in reply.text.split("\n\n") if f]
    assert reply.headers["content-type"].startswith("text/event-stream")
    for frame in frames:
        event, data = frame.split("\n")
        assert event.startswith("event: ") and data.startswith("data: ")
        assert json.loads(data[len("data: "):])["type"] == event[len("event: "):]
    assert frames[1].startswith("event: ping")


@pytest.mark.parametrize("stops", [["Paris"], ["Zebra", "Paris", "zzz"]])
def test_stop_sequence_is_named_and_never_emitted(client: anthropic.Anthropic,
                                                  stops: list[str]) -> None:
    free = text_of(create(client, system=SYSTEM))
    m = create(client, system=SYSTEM, stop_sequences=stops)
    assert (m.stop_reason, m.stop_sequence) == ("stop_sequence", "Paris")
    assert "Paris" not in text_of(m) and free.startswith(text_of(m))
    assert 0 < m.usage.output_tokens < 30
    assert prompt_tokens(m) == count(client, system=SYSTEM)
    with client.messages.stream(model=MODEL, max_tokens=30, messages=FRANCE, system=SYSTEM,
                                stop_sequences=stops, extra_body=GREEDY) as stream:
        final = stream.get_final_message()
    assert (final.stop_reason, final.stop_sequence) == ("stop_sequence", "Paris")
    assert text_of(final) == text_of(m)


def test_max_tokens(client: anthropic.Anthropic) -> None:
    m = create(client, max_tokens=3, messages=[{"role": "user", "content": "Tell me a story."}])
    assert m.stop_reason == "max_tokens" and m.usage.output_tokens == 3


def test_sampling_parameters_are_used(client: anthropic.Anthropic) -> None:
    story = [{"role": "user", "content": "Write a poem about the sea."}]
    greedy = {text_of(create(client, messages=story, extra_body={"top_k": 1})) for _ in "ab"}
    assert len(greedy) == 1, "top_k 1 is greedy"
    hot = {text_of(create(client, messages=story, extra_body={"temperature": 1.0,
                                                              "top_p": 1.0}))
           for _ in range(4)}
    assert len(hot) > 1, "temperature 1 samples"


def tool_uses(message: Any) -> list[Any]:
    return [b for b in message.content if b.type == "tool_use"]


def check_input(block: Any) -> None:
    tool = next(t for t in TOOLS if t["name"] == block.name)
    jsonschema.validate(block.input, tool["input_schema"])


@pytest.mark.parametrize("prompt", ["What is the weather in Paris?", "What time is it in Tokyo?",
                                    "Tell me a joke.", "Is it raining in Oslo right now?"])
def test_tool_choice_any_gives_a_valid_call(client: anthropic.Anthropic, prompt: str) -> None:
    m = create(client, messages=[{"role": "user", "content": prompt}], tools=TOOLS,
               tool_choice={"type": "any", "disable_parallel_tool_use": True}, max_tokens=200,
               extra_body={"temperature": 0.8})
    (call,) = tool_uses(m)
    assert m.stop_reason == "tool_use"
    assert call.id.startswith("toolu_") and len(call.id) == len("toolu_") + 24
    check_input(call)
    assert "<tool_call>" not in text_of(m)


@pytest.mark.parametrize("seed", [1, 2])
def test_named_tool_is_the_one_called(client: anthropic.Anthropic, seed: int) -> None:
    m = create(client, messages=ASK, tools=TOOLS, tool_choice={"type": "tool", "name": "get_time"},
               max_tokens=200, extra_body={"temperature": 0.9, "top_k": 40 + seed})
    (call,) = tool_uses(m)
    assert call.name == "get_time"
    # Sampled at 0.9 (and Anthropic's API has no seed), a 135M model now and then writes one
    # string until max_tokens: the call is then cut, as any server's would be.
    if m.stop_reason == "tool_use":
        check_input(call)
    else:
        assert m.stop_reason == "max_tokens" and m.usage.output_tokens == 200


def test_streamed_tool_use_matches_the_whole_answer(client: anthropic.Anthropic) -> None:
    kwargs: dict[str, Any] = {"messages": ASK, "tools": TOOLS, "max_tokens": 200,
                              "tool_choice": {"type": "tool", "name": "get_weather"}}
    whole = create(client, **kwargs)
    with client.messages.stream(model=MODEL, extra_body=GREEDY, **kwargs) as stream:
        kinds = [(e.type, getattr(getattr(e, "delta", None), "type", None)) for e in stream]
        final = stream.get_final_message()
    (call,) = tool_uses(final)
    assert (call.name, call.input) == (tool_uses(whole)[0].name, tool_uses(whole)[0].input)
    assert final.stop_reason == "tool_use" and ("content_block_delta", "input_json_delta") in kinds
    check_input(call)


def test_tool_result_round_trip(client: anthropic.Anthropic) -> None:
    first = create(client, messages=ASK, tools=TOOLS, max_tokens=200,
                   tool_choice={"type": "tool", "name": "get_weather"})
    (call,) = tool_uses(first)
    history = [*ASK, {"role": "assistant", "content": first.content},
               {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id,
                                             "content": "21 C and sunny"}]}]
    answer = create(client, messages=history, tools=TOOLS, tool_choice={"type": "none"},
                    max_tokens=40)
    assert text_of(answer) and not tool_uses(answer)
    assert "<tool_call>" not in text_of(answer)  # held out by the grammar of `none`
    assert prompt_tokens(answer) > count(client, messages=history[:2]) > count(client,
                                                                               messages=ASK)
    assert prompt_tokens(answer) == count(client, messages=history, tools=TOOLS,
                                          tool_choice={"type": "none"})
    error = [*history[:2], {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": call.id, "is_error": True,
         "content": [{"type": "text", "text": "service down"}]}]}]
    assert count(client, messages=error) > count(client, messages=[
        *history[:2], {"role": "user", "content": [{"type": "tool_result",
                                                    "tool_use_id": call.id,
                                                    "content": "service down"}]}])


def test_count_tokens_is_the_prompt_the_call_reads(client: anthropic.Anthropic) -> None:
    plain = count(client)  # SmolLM2's template has a default system prompt of its own
    with_system = count(client, system=SYSTEM)
    with_tools = count(client, tools=TOOLS)
    assert with_system < count(client, system=LONGER) and plain < with_tools
    assert count(client, system=SYSTEM, tools=TOOLS) > with_system
    assert count(client, tools=TOOLS, tool_choice={"type": "none"}) == plain
    assert prompt_tokens(create(client, max_tokens=2)) == plain
    assert prompt_tokens(create(client, max_tokens=2, system=SYSTEM)) == with_system
    forced = create(client, tools=TOOLS, tool_choice={"type": "any"}, max_tokens=60)
    assert prompt_tokens(forced) == with_tools == count(client, tools=TOOLS,
                                                        tool_choice={"type": "any"})


def test_x_api_key_is_required(server: RunningServer) -> None:
    anonymous = anthropic.Anthropic(base_url=server.base_url, api_key="wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as caught:
        anonymous.messages.create(model=MODEL, max_tokens=5, messages=FRANCE)
    assert caught.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    bare = httpx.post(server.base_url + "/v1/messages/count_tokens",
                      json={"model": MODEL, "messages": FRANCE})
    assert bare.status_code == 401 and bare.json()["type"] == "error"
    bearer = anthropic.Anthropic(base_url=server.base_url, auth_token=KEY, max_retries=0)
    assert bearer.messages.count_tokens(model=MODEL, messages=FRANCE).input_tokens > 0


def test_aliases_reach_the_model(client: anthropic.Anthropic, server: RunningServer) -> None:
    m = create(client, model="claude-3-5-haiku-latest", system=SYSTEM)
    assert m.model == MODEL and text_of(m) == text_of(create(client, system=SYSTEM))
    chat = httpx.post(server.base_url + "/v1/chat/completions", headers={"x-api-key": KEY},
                      json={"model": "gpt-4o-mini", "messages": FRANCE, "max_tokens": 2})
    assert chat.status_code == 200 and chat.json()["model"] == MODEL
    listed = httpx.get(server.base_url + "/v1/models", headers={"x-api-key": KEY}).json()
    assert [m["id"] for m in listed["data"]] == [MODEL]
    assert set(ALIASES) <= set(listed["data"][0]["aliases"])
    with pytest.raises(anthropic.NotFoundError) as caught:
        create(client, model="claude-opus-4")
    assert caught.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]


BAD: list[tuple[str, dict[str, Any], str]] = [
    ("image", {"messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                     "data": "iVBORw0KGgo="}}]}]}, "messages[0].content[0]"),
    ("thinking budget", {"thinking": {"type": "enabled", "budget_tokens": 2048}},
     "thinking.type"),
    ("server tool", {"tools": [{"type": "web_search_20250305", "name": "web_search"}]},
     "tools[0].type"),
    ("any without tools", {"tool_choice": {"type": "any"}}, "tool_choice"),
    ("undeclared tool", {"tools": TOOLS, "tool_choice": {"type": "tool", "name": "nope"}},
     "tool_choice.name"),
    ("bad schema", {"tools": [{"name": "f", "input_schema": {"type": "object", "properties": {
        "x": {"type": 7}}}}]}, "tools[0].input_schema"),
    ("temperature", {"extra_body": {"temperature": 1.5}}, "temperature"),
    ("temperature boolean", {"extra_body": {"temperature": True}}, "temperature"),
    ("max_tokens string", {"extra_body": {"max_tokens": "64"}}, "max_tokens"),
    ("mcp", {"extra_body": {"mcp_servers": [{"type": "url", "url": "https://example.com",
                                             "name": "x"}]}}, "mcp_servers"),
    ("container", {"container": "c"}, "container"),
]


@pytest.mark.parametrize(("name", "fields", "param"), BAD, ids=[b[0] for b in BAD])
def test_bad_requests_are_400s_in_anthropic_envelope(client: anthropic.Anthropic, name: str,
                                                     fields: dict[str, Any], param: str) -> None:
    for stream in (False, True):
        with pytest.raises(anthropic.BadRequestError) as caught:
            create(client, stream=stream, **fields)
        body: Any = caught.value.body
        assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
        assert body["error"]["message"].startswith(param), body


def test_missing_max_tokens_names_it(server: RunningServer) -> None:
    reply = httpx.post(server.base_url + "/v1/messages", headers={"x-api-key": KEY},
                       json={"model": MODEL, "messages": FRANCE})
    assert reply.status_code == 400
    assert reply.json()["error"] == {"type": "invalid_request_error",
                                     "message": "max_tokens: Field required."}


def test_failure_mid_stream_is_an_error_event(client: anthropic.Anthropic) -> None:
    long = [{"role": "user", "content": "Count from 1 to 500, one number per line."}]
    with pytest.raises(anthropic.APIStatusError) as caught:
        for _ in create(client, messages=long, max_tokens=3000, stream=True,
                        extra_headers={"X-Request-Timeout": "0.6"}):
            pass
    assert caught.value.body["error"]["type"] == "timeout_error"  # type: ignore[index]
