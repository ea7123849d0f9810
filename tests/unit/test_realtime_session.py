"""The Realtime session without a server: a fake transport and fake models, so the event
sequences, the history sent to the chat model, sentence-by-sentence speech, cancel, beta names
and session.update's two shapes are checked exactly and quickly."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from pocketserve.errors import ModelNotFound
from pocketserve.ops.chat import CHAT, ChatRequest, TextDelta, ToolCallDelta
from pocketserve.ops.common import Usage
from pocketserve.ops.speech import SPEECH, Audio, SpeechDone, SpeechRequest, SpeechUsage
from pocketserve.realtime.config import SessionConfig
from pocketserve.realtime.errors import ClientError
from pocketserve.realtime.session import RealtimeSession


class FakeModels:
    """Chat answers `words` (or, with tools and no tool message yet, calls `call`); speech
    is 100 ms of audio per sentence."""

    def __init__(self, words: list[str], delay_s: float = 0.0,
                 call: tuple[str, list[str]] | None = None):
        self.words = words
        self.delay_s = delay_s
        self.call = call  # (function name, argument pieces)
        self.chats: list[ChatRequest] = []
        self.spoken: list[str] = []

    def stream(self, name: str, op: Any, request: Any) -> AsyncIterator[Any]:
        return self._events(op, request)

    async def _events(self, op: Any, request: Any) -> AsyncIterator[Any]:
        if op is CHAT:
            self.chats.append(request)
            answered = any(m.role == "tool" for m in request.messages)
            if self.call is not None and request.tools and not answered:
                name, pieces = self.call
                yield ToolCallDelta(0, 0, id="call_1", name=name)
                for piece in pieces:
                    yield ToolCallDelta(0, 0, arguments=piece)
                yield Usage(len(request.messages), len(pieces))
                return
            for word in self.words:
                await asyncio.sleep(self.delay_s)
                yield TextDelta(0, word)
            yield Usage(len(request.messages), len(self.words))
        elif op is SPEECH:
            assert isinstance(request, SpeechRequest) and request.response_format == "pcm"
            self.spoken.append(request.input)
            yield Audio(b"\x01\x00" * 2400)
            yield SpeechDone(0.1, SpeechUsage(3, 5, 8))

    def open(self, name: str, op: Any, request: Any) -> Any:
        raise ModelNotFound(f"The model {name!r} does not exist.")


class FakeTransport:
    def __init__(self) -> None:
        self.inbox: asyncio.Queue[str | None] = asyncio.Queue()
        self.sent: list[dict[str, Any]] = []
        self.closed: tuple[int, str] | None = None

    async def receive(self) -> str | bytes | None:
        return await self.inbox.get()

    async def send(self, text: str) -> None:
        self.sent.append(json.loads(text))

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)

    def put(self, **event: Any) -> None:
        self.inbox.put_nowait(json.dumps(event))

    async def wait_for(self, kind: str, count: int = 1) -> list[dict[str, Any]]:
        for _ in range(500):
            if len([e for e in self.sent if e["type"] == kind]) >= count:
                return self.sent
            await asyncio.sleep(0.01)
        raise AssertionError(f"no {kind}: {[e['type'] for e in self.sent]}")


def _config() -> SessionConfig:
    return SessionConfig(id="sess_1", model="chat", transcription_model="stt",
                         speech_model="tts")


async def _session(models: FakeModels, beta: bool = False) -> tuple[FakeTransport, Any]:
    transport = FakeTransport()
    session = RealtimeSession(models, transport, _config(), idle_timeout_s=None, beta=beta)
    return transport, asyncio.create_task(session.run())


def _user(transport: FakeTransport, text: str) -> None:
    transport.put(type="conversation.item.create", item={
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]})


def test_session_update_takes_the_ga_and_the_beta_shapes() -> None:
    config = _config()
    config.update({"type": "realtime", "output_modalities": ["text"], "max_output_tokens": 50,
                   "audio": {"input": {"turn_detection": {"type": "server_vad",
                                                          "silence_duration_ms": 800}},
                             "output": {"voice": {"id": "ash"}}}})
    assert config.output_modalities == ["text"] and config.max_output_tokens == 50
    assert config.turn_detection is not None
    assert config.turn_detection.silence_duration_ms == 800
    assert config.turn_detection.threshold == 0.5 and config.voice == "ash"
    config.update({"modalities": ["text", "audio"], "voice": "echo", "turn_detection": None,
                   "input_audio_format": "pcm16", "max_response_output_tokens": "inf"})
    assert config.output_modalities == ["audio"] and config.voice == "echo"
    assert config.turn_detection is None and config.max_output_tokens is None
    wire = config.wire()
    assert wire["audio"]["input"]["turn_detection"] is None
    assert wire["max_output_tokens"] == "inf"
    for bad, param in [({"type": "realtime", "output_modalities": ["text", "audio"]},
                        "session.output_modalities"),
                       ({"type": "realtime", "audio": {"input": {"turn_detection": {
                           "type": "server_vad", "threshold": 2}}}},
                        "session.audio.input.turn_detection.threshold"),
                       ({"input_audio_format": "g711_ulaw"}, "session.audio.input.format"),
                       ({"type": "realtime", "max_output_tokens": True},
                        "session.max_output_tokens")]:
        with pytest.raises(ClientError) as error:
            config.update(bad)
        assert error.value.param == param
    assert config.voice == "echo"  # a refused update changed nothing


def test_a_text_response_in_order_with_the_history() -> None:
    async def scenario() -> None:
        models = FakeModels(["Paris", " it", " is."])
        transport, task = await _session(models)
        transport.put(type="session.update", session={"type": "realtime",
                                                      "output_modalities": ["text"],
                                                      "instructions": "Be brief."})
        _user(transport, "Capital of France?")
        transport.put(type="response.create")
        await transport.wait_for("response.done")
        _user(transport, "And Italy?")
        transport.put(type="response.create")
        await transport.wait_for("response.done", 2)
        transport.inbox.put_nowait(None)
        await task
        kinds = [e["type"] for e in transport.sent]
        first = kinds[kinds.index("response.created"):kinds.index("response.done") + 1]
        assert first == [
            "response.created", "response.output_item.added", "conversation.item.added",
            "response.content_part.added", *["response.output_text.delta"] * 3,
            "response.output_text.done", "response.content_part.done",
            "response.output_item.done", "conversation.item.done", "response.done"]
        done = next(e for e in transport.sent if e["type"] == "response.done")["response"]
        assert done["output"][0]["content"][0]["text"] == "Paris it is."
        assert done["usage"]["output_tokens"] == 3
        history = [(m.role, m.content) for m in models.chats[1].messages]
        assert history == [("system", "Be brief."), ("user", "Capital of France?"),
                           ("assistant", "Paris it is."), ("user", "And Italy?")]
        assert len({e["event_id"] for e in transport.sent}) == len(transport.sent)

    asyncio.run(scenario())


def test_audio_is_spoken_sentence_by_sentence_with_beta_names() -> None:
    async def scenario() -> None:
        models = FakeModels(["Hello", " there.", " How", " are", " you?"])
        transport, task = await _session(models, beta=True)
        _user(transport, "Hi")
        transport.put(type="response.create")
        sent = await transport.wait_for("response.done")
        transport.inbox.put_nowait(None)
        await task
        assert models.spoken == ["Hello there.", "How are you?"]
        kinds = [e["type"] for e in sent]
        assert kinds.count("response.audio.delta") == 2
        assert "response.audio_transcript.delta" in kinds
        assert "conversation.item.created" in kinds and "conversation.item.added" not in kinds
        done = next(e for e in sent if e["type"] == "response.done")["response"]
        assert done["output"][0]["content"][0]["transcript"] == "Hello there. How are you?"
        assert done["usage"]["output_token_details"]["audio_tokens"] == 10

    asyncio.run(scenario())


def test_cancel_and_errors_leave_the_session_serving() -> None:
    async def scenario() -> None:
        models = FakeModels(["word"] * 200, delay_s=0.01)
        transport, task = await _session(models)
        transport.put(type="session.update", session={"type": "realtime",
                                                      "output_modalities": ["text"]})
        _user(transport, "Talk")
        transport.put(type="response.create")
        await transport.wait_for("response.output_text.delta")
        transport.put(type="response.cancel", event_id="c1")
        sent = await transport.wait_for("response.done")
        done = next(e for e in sent if e["type"] == "response.done")["response"]
        assert done["status"] == "cancelled"
        assert done["status_details"]["reason"] == "client_cancelled"
        assert 0 < len([e for e in sent if e["type"].endswith("text.delta")]) < 200
        transport.put(type="response.cancel", event_id="c2")
        transport.put(type="input_audio_buffer.append", audio="AAAAAA==", event_id="a1")
        await transport.wait_for("error", 2)
        errors = [e["error"] for e in transport.sent if e["type"] == "error"]
        assert (errors[0]["code"], errors[0]["event_id"]) == ("response_cancel_not_active", "c2")
        assert errors[1]["event_id"] == "a1" and "does not exist" in errors[1]["message"]
        transport.put(type="response.create")
        await transport.wait_for("response.done", 2)
        transport.inbox.put_nowait(None)
        await task

    asyncio.run(scenario())


def test_an_idle_session_is_closed() -> None:
    async def scenario() -> None:
        transport = FakeTransport()
        session = RealtimeSession(FakeModels([]), transport, _config(), idle_timeout_s=0.2)
        await asyncio.wait_for(session.run(), timeout=5)
        assert transport.sent[-1]["error"]["code"] == "session_idle_timeout"
        assert transport.closed == (1000, "idle timeout")

    asyncio.run(scenario())


def test_a_long_first_sentence_starts_speaking_at_a_clause() -> None:
    async def scenario() -> None:
        models = FakeModels(["The capital of France is Paris,", " a city of lights and art,",
                             " and of", " bread.", " Yes,", " it is."])
        transport, task = await _session(models)
        _user(transport, "Hi")
        transport.put(type="response.create")
        await transport.wait_for("response.done")
        transport.inbox.put_nowait(None)
        await task
        assert models.spoken == ["The capital of France is Paris, a city of lights and art,",
                                 "and of bread.", "Yes, it is."]

    asyncio.run(scenario())


WEATHER = {"type": "function", "name": "get_weather", "description": "The weather in a city.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}


def test_a_function_call_then_its_output_then_the_answer() -> None:
    async def scenario() -> None:
        models = FakeModels(["Sunny", " in", " Paris."],
                            call=("get_weather", ['{"city":', ' "Paris"}']))
        transport, task = await _session(models)
        transport.put(type="session.update", session={
            "type": "realtime", "output_modalities": ["text"], "tools": [WEATHER],
            "tool_choice": "auto"})
        updated = (await transport.wait_for("session.updated"))[-1]["session"]
        assert updated["tools"][0]["name"] == "get_weather"
        _user(transport, "Weather in Paris?")
        transport.put(type="response.create")
        sent = await transport.wait_for("response.done")
        kinds = [e["type"] for e in sent[sent.index(next(
            e for e in sent if e["type"] == "response.created")):]]
        assert kinds == ["response.created", "response.output_item.added",
                         "conversation.item.added",
                         *["response.function_call_arguments.delta"] * 2,
                         "response.function_call_arguments.done", "response.output_item.done",
                         "conversation.item.done", "response.done"]
        args_done = next(e for e in sent if e["type"] == "response.function_call_arguments.done")
        assert (args_done["name"], args_done["arguments"], args_done["call_id"]) == (
            "get_weather", '{"city": "Paris"}', "call_1")
        output = next(e for e in sent if e["type"] == "response.done")["response"]["output"]
        assert [(o["type"], o["status"]) for o in output] == [("function_call", "completed")]
        assert models.chats[0].tools[0].name == "get_weather"
        transport.put(type="conversation.item.create", item={
            "type": "function_call_output", "call_id": "call_1", "output": '{"sky": "sunny"}'})
        await transport.wait_for("conversation.item.done", 3)
        transport.put(type="response.create")
        await transport.wait_for("response.done", 2)
        transport.inbox.put_nowait(None)
        await task
        history = models.chats[1].messages
        assert [m.role for m in history] == ["system", "user", "assistant", "tool"]
        assert history[2].tool_calls[0].arguments == '{"city": "Paris"}'
        assert (history[3].tool_call_id, history[3].content) == ("call_1", '{"sky": "sunny"}')
        final = [e for e in transport.sent if e["type"] == "response.done"][-1]["response"]
        assert final["output"][0]["content"][0]["text"] == "Sunny in Paris."

    asyncio.run(scenario())


def test_tools_are_checked() -> None:
    config = _config()
    for bad, param in [({"tools": [{**WEATHER, "type": "mcp"}]}, "session.tools[0].type"),
                       ({"tools": [WEATHER, WEATHER]}, "session.tools[1].name"),
                       ({"tool_choice": "sometimes"}, "session.tool_choice")]:
        with pytest.raises(ClientError) as error:
            config.update({"type": "realtime", **bad})
        assert error.value.param == param
    config.takes_tools = False
    with pytest.raises(ClientError) as error:
        config.update({"type": "realtime", "tools": [WEATHER]})
    assert error.value.param == "session.tools" and config.tools == []

    async def scenario() -> None:
        transport, task = await _session(FakeModels(["ok"]))
        _user(transport, "Hi")
        transport.put(type="response.create", event_id="r1",
                      response={"tool_choice": {"type": "function", "name": "nope"}})
        sent = await transport.wait_for("error")
        transport.inbox.put_nowait(None)
        await task
        error = next(e for e in sent if e["type"] == "error")["error"]
        assert (error["param"], error["event_id"]) == ("response.tool_choice", "r1")

    asyncio.run(scenario())


def test_truncate_keeps_only_what_was_heard() -> None:
    async def scenario() -> None:
        models = FakeModels(["One two three four.", " Five six seven eight.", " Nine."])
        transport, task = await _session(models)
        _user(transport, "Count")
        transport.put(type="response.create")
        sent = await transport.wait_for("response.done")
        answer = next(e for e in sent if e["type"] == "response.done")["response"]["output"][0]
        # Each sentence is 100 ms of audio here: 150 ms is the first and half of the second.
        transport.put(type="conversation.item.truncate", item_id=answer["id"],
                      content_index=0, audio_end_ms=150)
        await transport.wait_for("conversation.item.truncated")
        transport.put(type="conversation.item.truncate", item_id=answer["id"],
                      content_index=0, audio_end_ms=5000, event_id="t2")
        await transport.wait_for("error")
        _user(transport, "Go on")
        transport.put(type="response.create")
        await transport.wait_for("response.done", 2)
        transport.inbox.put_nowait(None)
        await task
        error = next(e for e in transport.sent if e["type"] == "error")["error"]
        assert (error["param"], error["event_id"]) == ("audio_end_ms", "t2")
        heard = [m.content for m in models.chats[1].messages if m.role == "assistant"]
        assert heard == ["One two three four. Five six"]

    asyncio.run(scenario())


def test_truncating_the_answer_being_spoken_stops_it() -> None:
    async def scenario() -> None:
        models = FakeModels([f" Sentence {i}." for i in range(100)], delay_s=0.01)
        transport, task = await _session(models)
        _user(transport, "Talk")
        transport.put(type="response.create")
        sent = await transport.wait_for("response.output_audio.delta")
        item_id = next(e for e in sent if e["type"] == "response.output_item.added")["item"]["id"]
        transport.put(type="conversation.item.truncate", item_id=item_id, content_index=0,
                      audio_end_ms=50)
        sent = await transport.wait_for("conversation.item.truncated")
        transport.inbox.put_nowait(None)
        await task
        done = next(e for e in sent if e["type"] == "response.done")["response"]
        assert done["status"] == "cancelled"
        assert done["output"][0]["content"][0]["transcript"] == "Sentence"

    asyncio.run(scenario())


def test_a_transcription_session_hears_and_never_answers() -> None:
    def resolve(name: str) -> str:
        if name == "whisper-1":
            return "stt"
        raise ClientError(f"The model {name!r} does not exist.", param="session.audio.input."
                          "transcription.model")

    config = _config()
    config.type, config.resolve_transcription = "transcription", resolve
    wire = config.wire()
    assert wire["type"] == "transcription" and "output" not in wire["audio"]
    config.update({"type": "transcription", "audio": {"input": {"transcription": {
        "model": "whisper-1", "language": "en"}}}})
    assert (config.transcription_model, config.language) == ("stt", "en")
    for bad, param in [({"type": "transcription", "instructions": "x"}, "session.instructions"),
                       ({"type": "realtime"}, "session.type"),
                       ({"type": "transcription", "audio": {"input": {"transcription": {
                           "model": "nope"}}}}, "session.audio.input.transcription.model")]:
        with pytest.raises(ClientError) as error:
            config.update(bad)
        assert error.value.param == param
    assert config.transcription_model == "stt"

    async def scenario() -> None:
        transport = FakeTransport()
        session = RealtimeSession(FakeModels(["no"]), transport, config, idle_timeout_s=None)
        task = asyncio.create_task(session.run())
        transport.put(type="response.create", event_id="r1")
        sent = await transport.wait_for("error")
        transport.inbox.put_nowait(None)
        await task
        assert sent[0]["session"]["type"] == "transcription"
        assert sent[-1]["error"]["event_id"] == "r1"
        assert "response.created" not in [e["type"] for e in sent]

    asyncio.run(scenario())
