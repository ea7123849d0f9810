"""The remote backend without a remote: requests and answers translated exactly, and the retry
rule against httpx's mock transport (which counts the tries)."""

from __future__ import annotations

import json
import threading
from typing import Any

import httpx
import pytest

from pocketserve.backends import remote_wire as wire
from pocketserve.backends.remote import RemoteClient, RemoteEngine, RemoteOptions
from pocketserve.config import ModelSpec
from pocketserve.engines.base import Call
from pocketserve.errors import EngineFailure, InvalidRequest, RetryLater
from pocketserve.ops.chat import (
    ChatMessage,
    ChatRequest,
    ImagePart,
    SamplingParams,
    TextDelta,
    TextPart,
    Tool,
    ToolCall,
    ToolCallDelta,
)
from pocketserve.ops.common import Usage
from pocketserve.ops.embeddings import Embeddings, EmbedRequest
from pocketserve.ops.transcription import Segment, TranscriptInfo


def test_a_chat_request_becomes_openais_body() -> None:
    req = ChatRequest(
        messages=[ChatMessage(role="user", content=[
            TextPart("What is this?"), ImagePart(data=b"\x89PNG", media_type="image/png")]),
            ChatMessage(role="assistant", tool_calls=[ToolCall("c1", "look", "{}")]),
            ChatMessage(role="tool", content="a cat", tool_call_id="c1")],
        sampling=SamplingParams(max_tokens=5, temperature=0.0, top_k=3, stop=["\n"], n=2,
                                json_object=True),
        tools=[Tool(name="look", parameters={"type": "object"})], tool_choice="look")
    body = wire.chat_body(req, "big")
    assert body["model"] == "big" and body["stream"] is True
    assert body["messages"][0]["content"][1] == {
        "type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw==",
                                           "detail": "auto"}}
    assert body["messages"][1]["tool_calls"][0]["function"] == {"name": "look",
                                                                "arguments": "{}"}
    assert body["messages"][2]["tool_call_id"] == "c1"
    assert (body["max_tokens"], body["temperature"], body["top_k"], body["stop"],
            body["n"]) == (5, 0.0, 3, ["\n"], 2)
    assert "top_p" not in body and "min_p" not in body  # unset: the remote's defaults
    assert body["response_format"] == {"type": "json_object"}
    assert body["tool_choice"] == {"type": "function", "function": {"name": "look"}}


def test_streamed_chunks_become_events() -> None:
    lines = iter([
        'data: {"choices":[{"index":0,"delta":{"role":"assistant","content":"Hi"}}]}', "",
        'data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"c1",'
        '"function":{"name":"f","arguments":"{\\"a\\""}}]}}]}',
        'data: {"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}',
        'data: {"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3,'
        '"prompt_tokens_details":{"cached_tokens":2}}}',
        "data: [DONE]", 'data: {"never": "read"}'])
    events = [e for chunk in wire.sse_data(lines) for e in wire.chat_events(chunk)]
    assert events == [TextDelta(0, "Hi"), ToolCallDelta(0, 0, '{"a"', "c1", "f"),
                      TextDelta(0, "", None, "tool_calls"), Usage(7, 3, 2)]
    with pytest.raises(InvalidRequest) as error:
        list(wire.sse_data(iter(['data: {"error": {"message": "bad", "param": "top_k"}}'])))
    assert error.value.param == "top_k"


def test_a_verbose_transcript_keeps_segments_and_words() -> None:
    answer = {"language": "english", "duration": 3.0, "text": "Hello there. Bye.",
              "segments": [{"id": 0, "start": 0.0, "end": 1.5, "text": " Hello there."},
                           {"id": 1, "start": 1.5, "end": 3.0, "text": " Bye."}],
              "words": [{"word": "Hello", "start": 0.1, "end": 0.5},
                        {"word": "there", "start": 0.6, "end": 1.0},
                        {"word": "Bye", "start": 1.7, "end": 2.0}]}
    info, first, second = wire.transcript_events(answer)
    assert info == TranscriptInfo(language="english", duration=3.0)
    assert isinstance(first, Segment) and isinstance(second, Segment)
    assert [w.word for w in first.words or []] == ["Hello", "there"]
    assert [w.word for w in second.words or []] == ["Bye"]
    plain = wire.transcript_events({"text": "Only text."})
    assert [type(e) for e in plain] == [TranscriptInfo, Segment]
    assert plain[1].text == "Only text." and plain[1].words is None


@pytest.mark.parametrize("status, body, kind, param", [
    (400, {"error": {"message": "no", "param": "temperature"}}, InvalidRequest, "temperature"),
    (429, {"error": {"message": "slow down"}}, RetryLater, None),
    (401, {"error": {"message": "bad key"}}, EngineFailure, None),
    (500, "not json", EngineFailure, None),
])
def test_remote_errors_become_ours(status: int, body: Any, kind: type, param: str | None
                                   ) -> None:
    error = wire.error_from(status, body)
    assert type(error) is kind and error.param == param


def _client(handler: Any, retries: int = 2) -> RemoteClient:
    options = RemoteOptions(base_url="http://remote/v1", remote_model="m", api_key="k",
                            retries=retries, backoff_s=0.001)
    return RemoteClient(options, transport=httpx.MockTransport(handler))


def test_connection_errors_and_5xx_are_tried_again_then_fail_clearly() -> None:
    tries: list[str] = []

    def flaky(request: httpx.Request) -> httpx.Response:
        tries.append(request.headers["authorization"])
        if len(tries) == 1:
            raise httpx.ConnectError("refused")
        if len(tries) == 2:
            return httpx.Response(503, json={"error": {"message": "warming up"}})
        return httpx.Response(200, json={"data": [
            {"index": 1, "embedding": [0.5, 1.0]}, {"index": 0, "embedding": [1.0, 0.0]}],
            "usage": {"prompt_tokens": 4}})

    engine = RemoteEngine("embeddings", _client(flaky))
    events: list[Any] = []
    engine._embed(EmbedRequest(texts=["a", "b"]), events.append, Call())
    assert tries == ["Bearer k"] * 3
    vectors = events[0]
    assert isinstance(vectors, Embeddings) and vectors.prompt_tokens == 4
    import numpy as np

    assert np.frombuffer(vectors.embeddings[1], "<f4").tolist() == [0.5, 1.0]  # by index
    down = _client(lambda r: httpx.Response(502, text="bad gateway"), retries=1)
    with pytest.raises(EngineFailure, match="502"):
        down.post("/embeddings", threading.Event(), json={})


def test_a_stream_is_tried_again_only_before_its_first_chunk() -> None:
    tries = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal tries
        tries += 1
        if tries == 1:
            return httpx.Response(500, json={"error": {"message": "oops"}})
        body = json.loads(request.content)
        assert body["stream"] is True and body["model"] == "m"
        chunk = {"choices": [{"index": 0, "delta": {"content": "ok"}, "finish_reason": "stop"}]}
        return httpx.Response(200, content=f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n")

    engine = RemoteEngine("chat", _client(handler))
    events: list[Any] = []
    engine._chat(ChatRequest(messages=[ChatMessage(role="user", content="hi")]),
                 events.append, Call())
    assert tries == 2 and events == [TextDelta(0, "ok", None, "stop")]

    def broken_midway(request: httpx.Request) -> httpx.Response:
        def body() -> Any:
            yield b'data: {"choices":[{"index":0,"delta":{"content":"par"}}]}\n\n'
            raise httpx.ReadError("gone")
        return httpx.Response(200, content=body())

    attempts = _client(broken_midway)
    with pytest.raises(EngineFailure, match="ReadError"):
        RemoteEngine("chat", attempts)._chat(
            ChatRequest(messages=[ChatMessage(role="user", content="hi")]), events.append,
            Call())


def test_options_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    def spec(**options: Any) -> ModelSpec:
        return ModelSpec(id="big", capability="chat", backend="remote", source="none:",
                         options=options)

    with pytest.raises(ValueError, match="base_url"):
        RemoteOptions.parse(spec())
    with pytest.raises(ValueError, match="unknown option"):
        RemoteOptions.parse(spec(base_url="http://x/v1", retry=3))
    with pytest.raises(ValueError, match="BIG_KEY"):
        RemoteOptions.parse(spec(base_url="http://x/v1", api_key_env="BIG_KEY"))
    monkeypatch.setenv("BIG_KEY", "sk-1")
    parsed = RemoteOptions.parse(spec(base_url="http://x/v1/", api_key_env="BIG_KEY"))
    assert (parsed.base_url, parsed.api_key, parsed.remote_model) == ("http://x/v1", "sk-1",
                                                                      "big")
