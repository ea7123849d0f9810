"""/v1/responses through the official SDK against the packaged SmolLM2 (and a `fake` model whose
worker can be made to crash mid-answer): text, instructions, streamed events, function calls
held to their schema, structured output, max_output_tokens, stored responses (retrieve,
input items, delete, previous_response_id, across a restart) and the 400s."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import openai
import pytest
from openai import OpenAI
from pydantic import BaseModel

from tests.api.test_reasoning import THINKING_TEMPLATE
from tests.api.tool_helpers import TIME, WEATHER, check_call
from tests.conftest import RunningServer, start_server, stop_server, wait_healthy
from tests.e2e.helpers import smol_path, write_config

MODEL = "smollm2-135m-instruct"
FAKE = "echo"  # the fake backend: echoes the last user message; CRASH kills its worker
THINKING = "smol-thinking"  # SmolLM2 whose template opens a <think> block (test_reasoning.py)
FLAT_WEATHER = {"type": "function", **WEATHER["function"]}
FLAT_TIME = {"type": "function", **TIME["function"]}
# A question SmolLM2 answers in a few tokens and then stops (without the instruction it rambles).
FRANCE: dict[str, Any] = {"input": "What is the capital of France?",
                          "instructions": "Answer in one short sentence."}
CITY = {"type": "object", "additionalProperties": False, "required": ["city", "country"],
        "properties": {"city": {"type": "string", "maxLength": 20},
                       "country": {"type": "string", "maxLength": 20}}}


def _start(data_dir: Path, models: list[str]) -> RunningServer:
    extra = [{"id": FAKE, "capability": "chat", "backend": "fake", "source": "none:"},
             {"id": THINKING, "capability": "chat", "backend": "llamacpp",
              "source": str(smol_path()),
              "options": {"n_ctx": 2048, "n_parallel": 2, "chat_template": THINKING_TEMPLATE}}]
    config = write_config(data_dir.parent, {
        "models": models, "extra_models": extra,
        "model_policies": {THINKING: {"preload": False}}})
    return start_server([], "--config", str(config),
                        env={"POCKETSERVE_DATA_DIR": str(data_dir)})


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("responses") / "data"


@pytest.fixture(scope="module")
def server(data_dir: Path) -> Iterator[RunningServer]:
    running = _start(data_dir, [MODEL, FAKE, THINKING])
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def client(server: RunningServer) -> OpenAI:
    return server.client()


def create(client: OpenAI, **kwargs: Any) -> Any:
    kwargs.setdefault("model", MODEL)
    kwargs.setdefault("temperature", 0)
    kwargs.setdefault("max_output_tokens", 48)
    return client.responses.create(**kwargs)


def test_plain_text(client: OpenAI) -> None:
    r = create(client, **FRANCE)
    assert r.object == "response" and r.id.startswith("resp_") and r.status == "completed"
    (message,) = r.output
    assert message.type == "message" and message.role == "assistant"
    assert message.id.startswith("msg_") and message.status == "completed"
    (part,) = message.content
    assert part.type == "output_text" and part.annotations == []
    assert "Paris" in r.output_text and r.output_text == part.text
    assert r.usage.input_tokens > 0 and r.usage.output_tokens > 0
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens
    assert (r.model, r.temperature, r.max_output_tokens, r.store) == (MODEL, 0, 48, True)
    assert (r.tools, r.tool_choice, r.text.format.type) == ([], "auto", "text")
    assert r.error is None and r.incomplete_details is None and r.completed_at


def test_instructions_and_developer_messages_reach_the_model(client: OpenAI) -> None:
    pirate = "You are a pirate. Always answer like a pirate would, with arr and matey. " * 4
    plain = create(client, input="Hello", max_output_tokens=16)
    told = create(client, input="Hello", max_output_tokens=16, instructions=pirate)
    assert told.instructions == pirate
    assert told.usage.input_tokens > plain.usage.input_tokens + 20
    as_item = create(client, max_output_tokens=16, input=[
        {"role": "developer", "content": pirate},
        {"role": "user", "content": [{"type": "input_text", "text": "Hello"}]}])
    assert as_item.usage.input_tokens == told.usage.input_tokens


def test_streamed_events_in_order_and_what_the_sdk_assembles(client: OpenAI) -> None:
    events = list(create(client, stream=True, **FRANCE))
    kinds = [e.type for e in events]
    deltas = kinds.count("response.output_text.delta")
    assert deltas > 1
    assert kinds == ["response.created", "response.in_progress",
                     "response.output_item.added", "response.content_part.added",
                     *["response.output_text.delta"] * deltas, "response.output_text.done",
                     "response.content_part.done", "response.output_item.done",
                     "response.completed"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[0].response.status == "in_progress" and events[0].response.output == []
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    done = events[-1].response
    assert text and done.output_text == text == events[-4].text
    assert {getattr(e, "item_id", None) or e.item.id for e in events[2:-1]} == {
        done.output[0].id}
    assert done.usage.output_tokens > 0
    with client.responses.stream(model=MODEL, temperature=0, max_output_tokens=48,
                                 **FRANCE) as stream:
        assert "".join(e.delta for e in stream if e.type == "response.output_text.delta") == text
        assert stream.get_final_response().output_text == text


def test_stream_frames_name_their_events(server: RunningServer) -> None:
    with httpx.stream("POST", server.base_url + "/v1/responses", timeout=60, json={
            "model": MODEL, "input": "Hi", "stream": True, "max_output_tokens": 16}) as reply:
        assert reply.headers["content-type"].startswith("text/event-stream")
        frames = reply.read().decode().strip().split("\n\n")
    for frame in frames:
        event_line, data_line = frame.split("\n")
        assert event_line == "event: " + json.loads(data_line.removeprefix("data: "))["type"]
    assert "[DONE]" not in frames[-1]


def test_required_and_named_function_calls(client: OpenAI) -> None:
    tools = [FLAT_WEATHER, FLAT_TIME]
    r = create(client, input="What is the weather in Paris?", tools=tools,
               tool_choice="required", max_output_tokens=120)
    (call,) = r.output
    assert call.type == "function_call" and call.status == "completed"
    assert call.id.startswith("fc_") and call.call_id.startswith("call_")
    check_call([WEATHER, TIME], call.name, call.arguments)
    assert r.output_text == "" and r.status == "completed"
    assert r.tool_choice == "required" and [t.name for t in r.tools] == ["get_weather", "get_time"]
    named = create(client, input="What is the weather in Paris?", tools=tools,
                   tool_choice={"type": "function", "name": "get_time"}, max_output_tokens=120)
    (call,) = named.output
    assert call.name == "get_time"
    check_call([WEATHER, TIME], "get_time", call.arguments)


def test_streamed_function_call(client: OpenAI) -> None:
    events = list(create(client, input="Weather in Oslo?", tools=[FLAT_WEATHER],
                         tool_choice="required", max_output_tokens=120, stream=True))
    kinds = [e.type for e in events]
    assert kinds[2] == "response.output_item.added" and events[2].item.type == "function_call"
    assert events[2].item.arguments == "" and events[2].item.name == "get_weather"
    assert "response.output_text.delta" not in kinds
    pieces = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
    done = next(e for e in events if e.type == "response.function_call_arguments.done")
    assert pieces and done.arguments == "".join(pieces) and done.name == "get_weather"
    check_call([WEATHER], "get_weather", done.arguments)
    assert kinds[-2:] == ["response.output_item.done", "response.completed"]
    assert events[-1].response.output[0].arguments == done.arguments


def test_function_call_output_round_trip(client: OpenAI) -> None:
    ask = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = create(client, input=ask, tools=[FLAT_WEATHER], tool_choice="required",
                   max_output_tokens=120)
    call = first.output[0]
    result = {"type": "function_call_output", "call_id": call.call_id,
              "output": json.dumps({"temperature_c": 21, "sky": "sunny"})}
    by_hand = create(client, tools=[FLAT_WEATHER], input=[
        *ask, {"type": "function_call", "call_id": call.call_id, "name": call.name,
               "arguments": call.arguments}, result])
    assert by_hand.status in ("completed", "incomplete")
    assert by_hand.usage.input_tokens > first.usage.input_tokens
    assert all(item.type in ("message", "function_call") for item in by_hand.output)
    chained = create(client, tools=[FLAT_WEATHER], previous_response_id=first.id,
                     input=[result])
    assert chained.usage.input_tokens == by_hand.usage.input_tokens
    assert chained.previous_response_id == first.id


def test_text_format_json_schema(client: OpenAI) -> None:
    r = create(client, input="Where is the Eiffel Tower?", max_output_tokens=60, text={
        "format": {"type": "json_schema", "name": "place", "schema": CITY, "strict": True}})
    jsonschema.validate(json.loads(r.output_text), CITY)
    assert r.text.format.type == "json_schema" and r.text.format.name == "place"

    class Place(BaseModel):
        city: str
        country: str

    parsed = client.responses.parse(model=MODEL, input="Where is Big Ben?", temperature=0,
                                    max_output_tokens=60, text_format=Place)
    assert isinstance(parsed.output_parsed, Place)


def test_max_output_tokens_is_incomplete(client: OpenAI) -> None:
    r = create(client, input="Write a long story about a cat.", max_output_tokens=16)
    assert r.status == "incomplete" and r.incomplete_details.reason == "max_output_tokens"
    assert r.usage.output_tokens == 16 and r.output[0].status == "incomplete"
    assert r.output_text
    events = list(create(client, input="Write a long story about a cat.",
                         max_output_tokens=16, stream=True))
    assert events[-1].type == "response.incomplete"
    assert events[-1].response.incomplete_details.reason == "max_output_tokens"


def test_logprobs_when_included(client: OpenAI) -> None:
    r = create(client, input="Hi", max_output_tokens=16, top_logprobs=2,
               include=["message.output_text.logprobs"])
    logprobs = r.output[0].content[0].logprobs
    assert logprobs and "".join(t.token for t in logprobs) == r.output_text
    assert all(len(t.top_logprobs) == 2 and t.logprob <= 0 for t in logprobs)
    assert create(client, input="Hi", max_output_tokens=16).output[0].content[0].logprobs == []
    events = list(create(client, input="Hi", max_output_tokens=16, top_logprobs=1, stream=True,
                         include=["message.output_text.logprobs"]))
    streamed = [t for e in events if e.type == "response.output_text.delta" for t in e.logprobs]
    final = events[-1].response.output[0].content[0].logprobs
    assert streamed and [t.token for t in streamed] == [t.token for t in final]
    assert all(len(t.top_logprobs) == 1 for t in streamed)


def test_thinking_is_a_reasoning_item(client: OpenAI) -> None:
    r = create(client, model=THINKING, input="What is the capital of France?",
               max_output_tokens=24)
    (thought, *_) = r.output
    assert thought.type == "reasoning" and thought.id.startswith("rs_")
    assert thought.summary == [] and thought.content[0].type == "reasoning_text"
    assert thought.content[0].text and "<think>" not in thought.content[0].text
    assert r.output_text == ""  # SmolLM2 answers inside the thought and never closes it
    assert 0 < r.usage.output_tokens_details.reasoning_tokens <= r.usage.output_tokens
    events = list(create(client, model=THINKING, input="What is the capital of France?",
                         max_output_tokens=24, stream=True))
    streamed = "".join(e.delta for e in events if e.type == "response.reasoning_text.delta")
    assert streamed == thought.content[0].text
    assert events[-1].response.output[0].content[0].text == streamed
    follow = create(client, model=THINKING, input="Thanks.", previous_response_id=r.id,
                    max_output_tokens=16)  # the reasoning item is history, left out
    assert follow.status in ("completed", "incomplete")


def test_store_retrieve_list_delete(server: RunningServer, client: OpenAI) -> None:
    r = create(client, input="Say hi.", max_output_tokens=16, metadata={"topic": "greeting"})
    again = client.responses.retrieve(r.id)
    assert again.model_dump() == r.model_dump()
    assert again.metadata == {"topic": "greeting"}
    items = client.responses.input_items.list(r.id)
    (item,) = items.data
    assert item.type == "message" and item.role == "user" and item.id.startswith("msg_")
    assert item.content[0].type == "input_text" and item.content[0].text == "Say hi."
    deleted = httpx.delete(f"{server.base_url}/v1/responses/{r.id}")
    assert deleted.json() == {"id": r.id, "object": "response", "deleted": True}
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(r.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(r.id)


def test_store_false_is_not_kept(client: OpenAI) -> None:
    r = create(client, input="Say hi.", max_output_tokens=16, store=False)
    assert r.store is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(r.id)
    with pytest.raises(openai.BadRequestError) as caught:
        create(client, input="Again.", previous_response_id=r.id)
    assert caught.value.body["param"] == "previous_response_id"  # type: ignore[index]


def test_previous_response_id_carries_the_conversation(client: OpenAI) -> None:
    first = create(client, input="My name is Ada.", max_output_tokens=16,
                   instructions="You are terse.")
    second = create(client, input="What is my name?", previous_response_id=first.id,
                    max_output_tokens=16)
    assert second.instructions is None  # instructions are not carried over, as OpenAI's
    alone = create(client, input="What is my name?", max_output_tokens=16)
    assert second.usage.input_tokens > alone.usage.input_tokens + first.usage.output_tokens
    items = client.responses.input_items.list(second.id, order="asc").data
    assert [i.type for i in items] == ["message", "message", "message"]
    assert [i.role for i in items] == ["user", "assistant", "user"]
    assert items[1].id == first.output[0].id and items[1].content[0].text == first.output_text
    newest = client.responses.input_items.list(second.id, limit=1)
    assert newest.has_more and newest.data[0].content[0].text == "What is my name?"


@pytest.mark.parametrize(("body", "param"), [
    ({"tools": [{"type": "function", "name": "f", "parameters": {
        "type": "object", "properties": {"x": {"type": 7}}}}]}, "tools[0].parameters"),
    ({"tools": [FLAT_WEATHER, {"type": "function", "name": "g",
                               "parameters": {"type": "string"}}]}, "tools[1].parameters"),
    ({"tools": [{"type": "function", "name": "has space"}]}, "tools[0].name"),
    ({"tools": [FLAT_WEATHER, FLAT_WEATHER]}, "tools[1].name"),
    ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
    ({"tools": [FLAT_WEATHER], "tool_choice": {"type": "function", "name": "nope"}},
     "tool_choice.name"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"background": True}, "background"),
    ({"truncation": "auto"}, "truncation"),
    ({"reasoning": {"effort": "high"}}, "reasoning.effort"),
    ({"reasoning": {"summary": "auto"}}, "reasoning.summary"),
    ({"conversation": "conv_1"}, "conversation"),
    ({"include": ["file_search_call.results"]}, "include[0]"),
    ({"text": {"verbosity": "low"}}, "text.verbosity"),
    ({"service_tier": "flex"}, "service_tier"),
    ({"text": {"format": {"type": "json_schema", "schema": CITY}}}, "text.format.name"),
    ({"text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": 5}}}},
     "text.format.schema"),
    ({"max_output_tokens": 8}, "max_output_tokens"),
    ({"top_logprobs": 2}, "top_logprobs"),
    ({"metadata": {str(i): "v" for i in range(17)}}, "metadata"),
    ({"previous_response_id": "resp_nope"}, "previous_response_id"),
    ({"input": None}, "input"),
    ({"input": [{"role": "user", "content": [
        {"type": "input_image", "image_url": "https://example.com/cat.png"}]}]},
     "input[0].content[0]"),
    ({"input": [{"type": "web_search_call", "id": "ws_1"}]}, "input[0].type"),
])
def test_400s_name_the_parameter(server: RunningServer, body: dict[str, Any],
                                 param: str) -> None:
    reply = httpx.post(server.base_url + "/v1/responses", timeout=30,
                       json={"model": MODEL, "input": "Hi", **body})
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param, error


def test_sdk_raises_bad_request_for_a_built_in_tool(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="only tools of type 'function'"):
        create(client, input="Search the web.", tools=[{"type": "web_search"}])


def test_crash_mid_stream_is_response_failed(client: OpenAI) -> None:
    events = list(create(client, model=FAKE, input="one two CRASH three", stream=True))
    assert events[0].type == "response.created"
    assert any(e.type == "response.output_text.delta" for e in events)
    last = events[-1]
    assert last.type == "response.failed" and last.response.status == "failed"
    assert last.response.error.code == "server_error" and last.response.error.message


def test_stored_responses_survive_a_restart(server: RunningServer, data_dir: Path) -> None:
    """Last in this module: it stops the module's server and starts another on its data."""
    wait_healthy(server)  # the crash test's worker is back
    client = server.client()
    kept = create(client, model=FAKE, input="remember this")
    assert kept.output_text.strip() == "remember this"
    stop_server(server)
    again = _start(data_dir, [FAKE])
    try:
        later = again.client()
        assert later.responses.retrieve(kept.id).model_dump() == kept.model_dump()
        follow = create(later, model=FAKE, input="and this", previous_response_id=kept.id)
        texts = [i.content[0].text for i in later.responses.input_items.list(
            follow.id, order="asc").data]
        assert texts == ["remember this", kept.output_text, "and this"]
    finally:
        stop_server(again)
