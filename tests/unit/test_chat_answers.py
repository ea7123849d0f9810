from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from pocketserve.api.chat_answers import Shaper, stream_chunks, whole_response
from pocketserve.errors import InvalidRequest
from pocketserve.ops.chat import ReasoningDelta, TextDelta, TokenLogprob, ToolCallDelta, TopLogprob
from pocketserve.ops.common import Usage


def _lp(token: str) -> TokenLogprob:
    return TokenLogprob(token, -0.5, list(token.encode()), [TopLogprob(token, -0.5, None)])


async def _source(*events: Any, fail: bool = False) -> AsyncIterator[Any]:
    for event in events:
        await asyncio.sleep(0)
        yield event
    if fail:
        raise InvalidRequest("bad", param="prompt")


def test_chat_response_joins_deltas_and_usage() -> None:
    shaper = Shaper("chat", "m", logprobs=True)
    body = asyncio.run(whole_response(shaper, [_source(
        TextDelta(0, "Hel", [_lp("Hel")]), TextDelta(0, "lo", [_lp("lo")], "stop"),
        Usage(5, 2, 1))], n=1))
    choice = body["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": "Hello", "refusal": None}
    assert choice["finish_reason"] == "stop"
    assert [t["token"] for t in choice["logprobs"]["content"]] == ["Hel", "lo"]
    assert body["usage"]["total_tokens"] == 7
    assert body["usage"]["prompt_tokens_details"] == {"cached_tokens": 1}


def test_completion_prompts_are_offset_and_usage_summed() -> None:
    shaper = Shaper("completion", "m", logprobs=False)
    sources = [_source(TextDelta(0, "a", None, "length"), TextDelta(1, "b", None, "length"),
                       Usage(3, 2)),
               _source(TextDelta(0, "c", None, "stop"), TextDelta(1, "d", None, "stop"),
                       Usage(4, 2))]
    body = asyncio.run(whole_response(shaper, sources, n=2))
    assert [(c["index"], c["text"]) for c in body["choices"]] == [
        (0, "a"), (1, "b"), (2, "c"), (3, "d")]
    assert body["usage"]["prompt_tokens"] == 7 and body["usage"]["completion_tokens"] == 4


def test_legacy_logprob_offsets_run_on_across_chunks() -> None:
    shaper = Shaper("completion", "m", logprobs=True)

    async def collect() -> list[dict[str, Any]]:
        src = _source(TextDelta(0, "ab", [_lp("ab")]), TextDelta(0, "cde", [_lp("cde")], "stop"),
                      Usage(1, 2))
        return [c async for c in stream_chunks(shaper, [src], 1, include_usage=True)]

    chunks = asyncio.run(collect())
    offsets = [c["choices"][0]["logprobs"]["text_offset"] for c in chunks if c["choices"]]
    assert offsets == [[0], [2]]
    assert chunks[-1]["usage"]["completion_tokens"] == 2 and chunks[-1]["choices"] == []


def test_chat_chunks_start_with_role() -> None:
    shaper = Shaper("chat", "m", logprobs=False)

    async def collect() -> list[dict[str, Any]]:
        src = _source(TextDelta(0, "Hi"), TextDelta(0, "!", None, "stop"), Usage(1, 2))
        return [c async for c in stream_chunks(shaper, [src], 1, include_usage=False)]

    chunks = asyncio.run(collect())
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "Hi"}
    assert chunks[1]["choices"][0]["delta"] == {"content": "!"}
    assert "usage" not in chunks[0] and len(chunks) == 2


def test_error_in_one_prompt_fails_the_request() -> None:
    shaper = Shaper("completion", "m", logprobs=False)
    with pytest.raises(InvalidRequest):
        asyncio.run(whole_response(shaper, [_source(TextDelta(0, "a")),
                                            _source(fail=True)], n=1))


def test_tool_calls_and_reasoning_take_openai_shapes() -> None:
    events = (ReasoningDelta(0, "think"), ToolCallDelta(0, 0, "", id="call_1", name="f"),
              ToolCallDelta(0, 0, '{"x":'), ToolCallDelta(0, 0, " 1}"),
              TextDelta(0, "", finish_reason="tool_calls"), Usage(3, 4))
    body = asyncio.run(whole_response(Shaper("chat", "m", logprobs=False),
                                      [_source(*events)], n=1))
    message = body["choices"][0]["message"]
    assert message["content"] is None
    assert message["reasoning_content"] == message["reasoning"] == "think"
    assert message["tool_calls"] == [{"id": "call_1", "type": "function",
                                      "function": {"name": "f", "arguments": '{"x": 1}'}}]
    assert body["choices"][0]["finish_reason"] == "tool_calls"

    async def chunks() -> list[dict[str, Any]]:
        return [c async for c in stream_chunks(Shaper("chat", "m", logprobs=False),
                                               [_source(*events)], 1, include_usage=False)]
    deltas = [c["choices"][0]["delta"] for c in asyncio.run(chunks())]
    assert deltas[0] == {"role": "assistant", "content": "", "reasoning_content": "think",
                         "reasoning": "think"}
    first, *rest = [d["tool_calls"][0] for d in deltas if "tool_calls" in d]
    assert first == {"index": 0, "id": "call_1", "type": "function",
                     "function": {"arguments": "", "name": "f"}}
    assert all("name" not in d["function"] and "id" not in d for d in rest)
    assert "".join(d["function"]["arguments"] for d in rest) == '{"x": 1}'
