"""Requests and events cross the worker socket typed: what one side encodes, the other decodes
to an equal value, and a malformed message fails naming the field."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from pocketserve.ops import chat, embeddings, speech, transcription
from pocketserve.ops.common import Usage
from pocketserve.ops.wire import Data, FrameReader, FromWorker, Op, encode, frame, raw

EVENTS: list[tuple[Op[Any, Any], Any]] = [
    (chat.CHAT, chat.TextDelta(index=0, text="Hello")),
    (chat.CHAT, chat.TextDelta(index=2, text="", finish_reason="length")),
    (chat.CHAT, chat.TextDelta(index=1, text=" world", logprobs=[chat.TokenLogprob(
        token=" world", logprob=-0.25, bytes=[32, 119], top=[
            chat.TopLogprob(token=" world", logprob=-0.25, bytes=None),
            chat.TopLogprob(token=" there", logprob=-1.5, bytes=[32, 116])])])),
    (chat.CHAT, chat.ToolCallDelta(index=0, call_index=1, arguments='{"a"', id="call_1",
                                   name="lookup")),
    (chat.CHAT, chat.ReasoningDelta(index=0, text="hmm")),
    (chat.CHAT, Usage(prompt_tokens=12, completion_tokens=7, cached_tokens=3)),
    (embeddings.EMBED, embeddings.Embeddings([b"\0\0\x80?"], 3)),
    (speech.SPEECH, speech.Audio(b"ID3")),
    (transcription.LISTEN, transcription.Partial("hel", 0.5)),
]


@pytest.mark.parametrize(("op", "event"), EVENTS)
def test_events_round_trip_in_frames(op: Op[Any, Any], event: Any) -> None:
    reader = FrameReader(FromWorker)
    data = frame(Data(7, raw(event)))
    got = [*reader.feed(data[:3]), *reader.feed(data[3:])]  # split anywhere: still one frame
    assert len(got) == 1 and isinstance(got[0], Data) and got[0].id == 7
    assert op.decode_event(got[0].data) == event


def test_a_request_with_images_and_tools_round_trips() -> None:
    req = chat.ChatRequest(
        messages=[chat.ChatMessage(role="user", content=[
            chat.TextPart("what is this?"), chat.ImagePart(b"\x89PNG", "image/png")]),
            chat.ChatMessage(role="assistant", content="", tool_calls=[
                chat.ToolCall("c1", "look", "{}")]),
            chat.ChatMessage(role="tool", content="a cat", tool_call_id="c1")],
        tools=[chat.Tool("look", parameters={"type": "object"})], tool_choice="required")
    assert chat.CHAT.decode_request(encode(req)) == req


def test_a_malformed_request_names_the_field() -> None:
    bad = encode({"messages": [{"role": "user", "content": 5}]})
    with pytest.raises(msgspec.ValidationError, match=r"messages\[0\]\.content"):
        chat.CHAT.decode_request(bad)


def test_streamed_input_is_declared_only_where_it_exists() -> None:
    assert transcription.LISTEN.streams_input
    assert not chat.CHAT.streams_input
    frame_ = transcription.AudioFrame(b"\0\0" * 4)
    assert transcription.LISTEN.decode_input(encode(frame_)) == frame_
    with pytest.raises(TypeError):
        chat.CHAT.decode_input(encode(frame_))
