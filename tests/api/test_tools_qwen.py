"""Tools in the model's own format, `auto` and parallel calls, and fill-in-the-middle, against
the opt-in Qwen2.5-Coder-0.5B-Instruct (`make models-qwen`); skipped when it is not installed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from openai import OpenAI

from pocketserve.catalog import Catalog
from tests.api.tool_helpers import TIME, TOOL_SETS, WEATHER, check_call
from tests.conftest import RunningServer, start_server, stop_server

QWEN = "qwen2.5-coder-0.5b-instruct"
missing = Catalog.missing_weights(Catalog().find(QWEN))
pytestmark = pytest.mark.skipif(missing is not None, reason=f"{QWEN}: {missing}")


@pytest.fixture(scope="module")
def qwen() -> Iterator[RunningServer]:
    server = start_server([QWEN])
    yield server
    stop_server(server)


@pytest.fixture(scope="module")
def client(qwen: RunningServer) -> OpenAI:
    return qwen.client()


def ask(client: OpenAI, text: str, **kwargs: Any) -> Any:
    kwargs.setdefault("tools", [WEATHER, TIME])
    kwargs.setdefault("max_tokens", 150)
    return client.chat.completions.create(
        model=QWEN, messages=[{"role": "user", "content": text}], temperature=0,
        **kwargs)


def test_auto_calls_when_a_tool_fits(client: OpenAI) -> None:
    r = ask(client, "What is the weather in Paris?")
    (call,) = r.choices[0].message.tool_calls or []
    assert r.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather"
    assert "Paris" in check_call([WEATHER], "get_weather", call.function.arguments)["city"]


def test_auto_answers_text_when_none_fits(client: OpenAI) -> None:
    r = ask(client, "Write one sentence about the sea.")
    assert r.choices[0].message.tool_calls is None
    text = r.choices[0].message.content or ""
    assert text and "<tool_call>" not in text and r.choices[0].finish_reason == "stop"


def test_auto_streamed(client: OpenAI) -> None:
    chunks = list(ask(client, "What time is it in Tokyo?", stream=True))
    calls = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert calls[0].function.name == "get_time" and calls[0].function.arguments == ""
    args = "".join(tc.function.arguments or "" for tc in calls[1:])  # type: ignore[union-attr]
    check_call([TIME], "get_time", args)
    assert not any(c.choices[0].delta.content for c in chunks if c.choices)


def test_parallel_calls_where_the_template_has_them(client: OpenAI) -> None:
    r = ask(client, "What is the weather in Paris and what is the weather in Oslo?",
            tool_choice="required", max_tokens=200)
    calls = r.choices[0].message.tool_calls or []
    assert 1 <= len(calls) <= 8 and len({c.id for c in calls}) == len(calls)
    for call in calls:
        check_call([WEATHER, TIME], call.function.name, call.function.arguments)
    single = ask(client, "What is the weather in Paris and what is the weather in Oslo?",
                 tool_choice="required", parallel_tool_calls=False)
    assert len(single.choices[0].message.tool_calls or []) == 1


def test_result_round_trip_in_the_native_format(client: OpenAI) -> None:
    first = ask(client, "What is the weather in Paris?")
    call = first.choices[0].message.tool_calls[0]
    history = [{"role": "user", "content": "What is the weather in Paris?"},
               {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
               {"role": "tool", "tool_call_id": call.id,
                "content": json.dumps({"temperature_c": 21, "sky": "sunny"})}]
    for choice in ("auto", "none"):  # 0.5B often calls again: either way, nothing malformed
        r = client.chat.completions.create(model=QWEN, temperature=0, max_tokens=60,
                                           tools=[WEATHER], tool_choice=choice,
                                           messages=history)  # type: ignore[arg-type]
        message = r.choices[0].message
        assert "<tool_call>" not in (message.content or "")
        for again in message.tool_calls or []:
            check_call([WEATHER], again.function.name, again.function.arguments)
        assert message.content or message.tool_calls
        if choice == "auto":  # `none` shows the model no tools: a shorter prompt
            assert r.usage.prompt_tokens > first.usage.prompt_tokens  # type: ignore[union-attr]
    assert message.tool_calls is None and message.content


def test_named_calls_over_tool_sets(client: OpenAI) -> None:
    for tools in TOOL_SETS.values():
        name = tools[-1]["function"]["name"]
        r = ask(client, "Help me with my day.", tools=tools,
                tool_choice={"type": "function", "function": {"name": name}}, max_tokens=300)
        (call,) = r.choices[0].message.tool_calls or []
        check_call(tools, name, call.function.arguments)


def test_fill_in_the_middle(client: OpenAI) -> None:
    r = client.completions.create(model=QWEN, prompt="def add(a, b):\n    ",
                                  suffix="\n\nprint(add(1, 2))\n", max_tokens=12,
                                  temperature=0)
    assert "return a + b" in r.choices[0].text


def test_models_say_it_takes_tools(qwen: RunningServer) -> None:
    model = httpx.get(qwen.base_url + f"/v1/models/{QWEN}").json()
    assert model["tools"] is True and model["weights_file"] == f"{QWEN}.gguf"
