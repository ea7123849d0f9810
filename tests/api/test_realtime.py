"""The Realtime API (`/v1/realtime`) through openai-python's own client, against a real server
with SmolLM2, Whisper tiny.en and Piper: text turns, spoken turns found by server VAD and
answered in speech, cancel, barge-in, bad events, keys and the idle timeout."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import time
import warnings
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from openai import OpenAI
from openai.resources.realtime.realtime import RealtimeConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect
from websockets.typing import Subprotocol

from tests.conftest import RunningServer, start_server, stop_server
from tests.stt_helpers import espeak, wer

KEY = "sk-realtime-test"
IDLE_S = 6
SESSIONS_PER_KEY = 3
QUESTION = "What is the capital of France?"
RATE = 24_000


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    # One thread per worker: on a small shared machine, llama.cpp's spinning threads are what
    # stalls when the cores are oversubscribed.
    running = start_server(
        ["smollm2-135m-instruct", "whisper-tiny.en", "piper-joe-medium"], "--threads", "1",
        env={"POCKETSERVE_API_KEYS": json.dumps([KEY]),
             "POCKETSERVE_REALTIME_TRANSCRIPTION_MODEL": "whisper-tiny.en",
             "POCKETSERVE_REALTIME_IDLE_TIMEOUT_S": str(IDLE_S),
             "POCKETSERVE_REALTIME_TEMPERATURE": "0",
             "POCKETSERVE_MAX_WEBSOCKET_CONNECTIONS_PER_KEY": str(SESSIONS_PER_KEY)})
    yield running
    stop_server(running)


@pytest.fixture
def conn(server: RunningServer) -> Iterator[RealtimeConnection]:
    client = OpenAI(base_url=server.base_url + "/v1", api_key=KEY, max_retries=0)
    with client.realtime.connect(model="gpt-realtime") as connection:
        yield connection


def recv(conn: RealtimeConnection, timeout: float = 60) -> Any:
    """The next server event, parsed by the SDK; fails instead of hanging."""
    # The SDK's recv() has no timeout; its websocket underneath does. (That socket was opened
    # by the SDK without `with`, so websockets warns on its direct use; not ours to change.)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        raw = conn._connection.recv(timeout=timeout, decode=False)
    return conn.parse_event(raw)


def until(conn: RealtimeConnection, kind: str, timeout: float = 300) -> list[Any]:
    """Events up to and including the first of type `kind`."""
    deadline = time.monotonic() + timeout
    events = []
    while True:
        try:
            events.append(recv(conn, max(0.1, deadline - time.monotonic())))
        except TimeoutError:
            seen = [e.type for e in events if not e.type.endswith(".delta")]
            raise AssertionError(f"no {kind} within {timeout}s; got {seen}") from None
        if events[-1].type == kind:
            return events


def of(events: list[Any], kind: str) -> list[Any]:
    return [e for e in events if e.type == kind]


def text_session(conn: RealtimeConnection) -> Any:
    created = recv(conn)
    assert created.type == "session.created"
    conn.session.update(session={"type": "realtime", "output_modalities": ["text"],
                                 "instructions": "You are a helpful assistant.",
                                 "max_output_tokens": 30,
                                 "audio": {"input": {"turn_detection": None}}})
    updated = until(conn, "session.updated")[-1]
    assert updated.session.output_modalities == ["text"]
    assert updated.session.audio.input.turn_detection is None
    return created


def say(conn: RealtimeConnection, text: str) -> None:
    conn.conversation.item.create(item={"type": "message", "role": "user",
                                        "content": [{"type": "input_text", "text": text}]})
    assert until(conn, "conversation.item.done")[-1].item.content[0].text == text


def test_text_turns_keep_the_conversation(conn: RealtimeConnection) -> None:
    created = text_session(conn)
    assert created.session.model == "smollm2-135m-instruct"  # gpt-realtime: the default
    assert created.session.audio.input.format.rate == RATE
    say(conn, QUESTION)
    conn.response.create()
    events = until(conn, "response.done")
    kinds = [e.type for e in events if not e.type.endswith(".delta")]
    assert kinds == ["response.created", "response.output_item.added",
                     "conversation.item.added", "response.content_part.added",
                     "response.output_text.done", "response.content_part.done",
                     "response.output_item.done", "conversation.item.done", "response.done"]
    text = "".join(e.delta for e in of(events, "response.output_text.delta"))
    assert "Paris" in text
    assert of(events, "response.output_text.done")[0].text == text
    done = events[-1].response
    assert done.status == "completed" and done.output[0].content[0].text == text
    assert done.usage.output_tokens > 0 and done.usage.input_tokens > 0
    first_input = done.usage.input_tokens
    say(conn, "And what is the capital of Italy?")
    conn.response.create()
    second = until(conn, "response.done")[-1].response
    # The history went to the model: both questions and the first answer.
    assert second.usage.input_tokens > first_input + done.usage.output_tokens
    assert second.status == "completed" and second.output[0].content[0].text


def _pcm24k(path: Path, lead_s: float, tail_s: float) -> bytes:
    import av

    with av.open(str(path)) as container:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
        frames = [out for frame in container.decode(audio=0)
                  for out in resampler.resample(frame)]
        frames += resampler.resample(None)
    speech = b"".join(bytes(f.planes[0])[: f.samples * 2] for f in frames)
    return bytes(int(lead_s * RATE) * 2) + speech + bytes(int(tail_s * RATE) * 2)


def append(conn: RealtimeConnection, pcm: bytes, pace: float = 4.0) -> None:
    """100 ms chunks, `pace` times faster than real time."""
    step = RATE // 10 * 2
    for i in range(0, len(pcm), step):
        conn.input_audio_buffer.append(audio=base64.b64encode(pcm[i:i + step]).decode())
        time.sleep(0.1 / pace)


@pytest.fixture(scope="module")
def question(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    wav = espeak(QUESTION, tmp_path_factory.mktemp("rt") / "q.wav")
    return _pcm24k(wav, lead_s=0.6, tail_s=1.2)


def audio_session(conn: RealtimeConnection, **vad: Any) -> None:
    assert recv(conn).type == "session.created"
    conn.session.update(session={
        "type": "realtime", "output_modalities": ["audio"],
        "instructions": "You are a helpful assistant. Answer in one short sentence.",
        "max_output_tokens": 30,
        "audio": {"input": {"format": {"type": "audio/pcm", "rate": RATE},
                            "turn_detection": {"type": "server_vad", "threshold": 0.5,
                                               "prefix_padding_ms": 300,
                                               "silence_duration_ms": 500, **vad}},
                  "output": {"voice": "alloy"}}})
    vad_seen = until(conn, "session.updated")[-1].session.audio.input.turn_detection
    assert vad_seen.type == "server_vad" and vad_seen.silence_duration_ms == 500


def test_spoken_turn_found_by_server_vad_gets_a_spoken_answer(
        conn: RealtimeConnection, question: bytes, server: RunningServer) -> None:
    audio_session(conn)
    append(conn, question)
    events = until(conn, "response.done")
    started, stopped = of(events, "input_audio_buffer.speech_started")[0], of(
        events, "input_audio_buffer.speech_stopped")[0]
    assert 200 <= started.audio_start_ms <= 700  # speech from 600 ms, less 300 ms padding
    speech_ms = (len(question) / 2 / RATE - 1.8) * 1000
    assert started.audio_start_ms + speech_ms < stopped.audio_end_ms < len(question) / 48
    assert of(events, "input_audio_buffer.committed")[0].item_id == started.item_id
    heard = of(events, "conversation.item.input_audio_transcription.completed")[0]
    assert heard.item_id == started.item_id
    assert wer(QUESTION, heard.transcript) <= 0.35, heard.transcript
    transcript = "".join(e.delta for e in of(events, "response.output_audio_transcript.delta"))
    assert transcript.strip()
    assert of(events, "response.output_audio_transcript.done")[0].transcript == transcript
    pcm = b"".join(base64.b64decode(e.delta) for e in of(events, "response.output_audio.delta"))
    assert len(pcm) % 2 == 0 and len(pcm) / 2 / RATE > 0.5
    done = events[-1].response
    assert done.status == "completed"
    assert done.usage.output_token_details.audio_tokens > 0
    assert done.output[0].content[0].transcript == transcript
    # The audio says the transcript: Whisper hears it back.
    wav = io.BytesIO()
    with wave.open(wav, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm)
    back = httpx.post(server.base_url + "/v1/audio/transcriptions", timeout=60,
                      headers={"Authorization": f"Bearer {KEY}"},
                      data={"model": "whisper-tiny.en"},
                      files={"file": ("a.wav", wav.getvalue(), "audio/wav")}).json()["text"]
    assert wer(transcript, back) <= 0.5, (transcript, back)


def test_speaking_over_the_answer_cancels_it(conn: RealtimeConnection,
                                             question: bytes) -> None:
    audio_session(conn)
    conn.session.update(session={"type": "realtime", "max_output_tokens": "inf",
                                 "instructions": "Whatever you are asked, tell a very "
                                 "long story about a dragon, with many details."})
    until(conn, "session.updated")
    append(conn, question)
    until(conn, "response.output_audio_transcript.delta")
    # What comes after the interruption is answered briefly.
    conn.session.update(session={"type": "realtime", "max_output_tokens": 20,
                                 "instructions": "Answer in one short sentence."})
    append(conn, question[int(0.5 * RATE) * 2:], pace=20.0)  # the speech comes at once
    events = until(conn, "response.done")
    assert events[-1].response.status == "cancelled"
    assert events[-1].response.status_details.reason == "turn_detected"
    assert of(events, "input_audio_buffer.speech_started")
    # The new turn is heard and answered.
    events = until(conn, "response.done")
    assert of(events, "conversation.item.input_audio_transcription.completed")
    assert events[-1].response.status == "completed"


def test_a_commit_with_server_vad_ends_the_turn_at_once(conn: RealtimeConnection,
                                                       question: bytes) -> None:
    audio_session(conn, create_response=False)
    append(conn, question[: len(question) - int(1.2 * RATE) * 2], pace=20.0)  # no silence
    until(conn, "input_audio_buffer.speech_started")
    conn.input_audio_buffer.commit()
    events = until(conn, "conversation.item.input_audio_transcription.completed")
    assert of(events, "input_audio_buffer.speech_stopped")
    assert wer(QUESTION, events[-1].transcript) <= 0.35, events[-1].transcript
    conn.input_audio_buffer.commit()  # nothing left to commit
    rest = until(conn, "error")
    assert rest[-1].error.code == "input_audio_buffer_commit_empty"
    assert not of(events + rest, "response.created")  # create_response is off


def test_manual_commit_without_vad(conn: RealtimeConnection, question: bytes) -> None:
    text_session(conn)
    append(conn, question, pace=50.0)
    conn.input_audio_buffer.commit()
    conn.response.create()  # before the transcript: the response waits for it
    events = until(conn, "response.done")
    assert not of(events, "input_audio_buffer.speech_started")
    heard = of(events, "conversation.item.input_audio_transcription.completed")[0]
    assert wer(QUESTION, heard.transcript) <= 0.35, heard.transcript
    assert "Paris" in of(events, "response.output_text.done")[0].text


def test_an_audio_item_is_transcribed_and_answered(conn: RealtimeConnection,
                                                  question: bytes) -> None:
    text_session(conn)
    audio = base64.b64encode(question).decode()
    conn.conversation.item.create(item={"type": "message", "role": "user", "content": [
        {"type": "input_audio", "audio": audio}]})
    conn.response.create()
    events = until(conn, "response.done")
    added = of(events, "conversation.item.added")[0].item
    assert added.content[0].type == "input_audio" and added.content[0].transcript is None
    heard = of(events, "conversation.item.input_audio_transcription.completed")[0]
    assert heard.item_id == added.id
    assert wer(QUESTION, heard.transcript) <= 0.35, heard.transcript
    assert "Paris" in of(events, "response.output_text.done")[0].text


def test_cancel_stops_the_answer_and_the_session_goes_on(conn: RealtimeConnection) -> None:
    text_session(conn)
    conn.session.update(session={"type": "realtime", "max_output_tokens": "inf"})
    assert until(conn, "session.updated")[-1].session.max_output_tokens == "inf"
    say(conn, "Write a very long story about a dragon who learns to bake bread.")
    conn.response.create()
    until(conn, "response.output_text.delta")
    conn.response.cancel()
    events = until(conn, "response.done")
    done = events[-1].response
    assert done.status == "cancelled" and done.status_details.reason == "client_cancelled"
    assert len(of(events, "response.output_text.delta")) < 200
    conn.response.cancel()
    assert recv(conn).error.code == "response_cancel_not_active"
    say(conn, QUESTION)
    conn.response.create()
    assert until(conn, "response.done")[-1].response.status == "completed"


def test_bad_events_get_error_events_and_the_session_goes_on(
        conn: RealtimeConnection) -> None:
    text_session(conn)
    cases: list[tuple[str, str]] = [
        ("not json", "invalid_json"),
        (json.dumps({"type": "no.such.event", "event_id": "e1"}), "invalid_value"),
        (json.dumps({"type": "input_audio_buffer.append", "audio": "@@@"}), "invalid_base64"),
        (json.dumps({"type": "input_audio_buffer.commit"}), "input_audio_buffer_commit_empty"),
        (json.dumps({"type": "session.update", "session": {
            "type": "realtime", "audio": {"input": {"format": {"type": "audio/pcmu"}}}}}),
         "unsupported_audio_format"),
        (json.dumps({"type": "conversation.item.create", "item": {"type": "message"}}),
         "missing_required_parameter"),
    ]
    for raw, code in cases:
        conn.send_raw(raw)
        event = recv(conn)
        assert event.type == "error" and event.error.code == code, (raw, event)
        assert event.error.type == "invalid_request_error"
    conn.send_raw(json.dumps({"type": "no.such.event", "event_id": "e1"}))
    assert recv(conn).error.event_id == "e1"
    say(conn, QUESTION)
    conn.response.create()
    conn.response.create()  # one at a time
    assert until(conn, "error")[-1].error.code == "conversation_already_has_active_response"
    assert until(conn, "response.done")[-1].response.status == "completed"


def test_keys_are_required_and_the_subprotocol_is_accepted(server: RunningServer) -> None:
    url = f"ws://127.0.0.1:{server.port}/v1/realtime?model=smollm2"
    with pytest.raises(InvalidStatus) as refused, connect(url, open_timeout=10):
        pass
    assert refused.value.response.status_code == 401
    wrong = OpenAI(base_url=server.base_url + "/v1", api_key="nope", max_retries=0)
    with pytest.raises(Exception, match="401"), wrong.realtime.connect(model="smollm2"):
        pass
    offered = [Subprotocol("realtime"), Subprotocol(f"openai-insecure-api-key.{KEY}")]
    with connect(url, subprotocols=offered, open_timeout=10) as ws:
        assert ws.subprotocol == "realtime"
        created = json.loads(ws.recv(timeout=10))
        assert created["type"] == "session.created"
        assert created["session"]["model"] == "smollm2-135m-instruct"


def test_sessions_per_key_are_bounded(server: RunningServer) -> None:
    url = f"ws://127.0.0.1:{server.port}/v1/realtime"
    auth = {"Authorization": f"Bearer {KEY}"}
    with contextlib.ExitStack() as stack:
        for _ in range(SESSIONS_PER_KEY):
            ws = stack.enter_context(connect(url, additional_headers=auth, open_timeout=10))
            assert json.loads(ws.recv(timeout=10))["type"] == "session.created"
        with pytest.raises(InvalidStatus) as refused, connect(url, additional_headers=auth):
            pass
        assert refused.value.response.status_code == 429
    deadline = time.monotonic() + 10
    while True:  # the slots come back as the sessions close
        try:
            with connect(url, additional_headers=auth) as ws:
                assert json.loads(ws.recv(timeout=10))["type"] == "session.created"
                break
        except InvalidStatus:
            assert time.monotonic() < deadline
            time.sleep(0.2)


def test_an_unusable_model_and_the_idle_timeout(server: RunningServer) -> None:
    base = f"ws://127.0.0.1:{server.port}/v1/realtime"
    auth = {"Authorization": f"Bearer {KEY}"}
    with connect(f"{base}?model=piper-joe-medium", additional_headers=auth) as ws:
        error = json.loads(ws.recv(timeout=10))
        assert error["type"] == "error" and error["error"]["param"] == "model"
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    with connect(base, additional_headers=auth) as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "session.created"
        started = time.monotonic()
        error = json.loads(ws.recv(timeout=IDLE_S + 10))
        assert error["error"]["code"] == "session_idle_timeout"
        assert IDLE_S - 1 <= time.monotonic() - started <= IDLE_S + 5
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000




def test_a_transcription_session_streams_transcripts_and_never_answers(
        server: RunningServer, question: bytes) -> None:
    client = OpenAI(base_url=server.base_url + "/v1", api_key=KEY, max_retries=0)
    with client.realtime.connect(model="gpt-4o-transcribe",
                                 extra_query={"intent": "transcription"}) as conn:
        created = recv(conn)
        assert created.session.type == "transcription"
        # OpenAI's transcription model names hear with the server's default.
        assert created.session.audio.input.transcription.model == "whisper-tiny.en"
        conn.session.update(session={"type": "transcription", "audio": {"input": {
            "transcription": {"model": "whisper-tiny.en", "language": "en"},
            "turn_detection": {"type": "server_vad", "silence_duration_ms": 500}}}})
        updated = until(conn, "session.updated")[-1].session
        assert updated.audio.input.transcription.model == "whisper-tiny.en"
        append(conn, question + question)  # two turns
        events = until(conn, "conversation.item.input_audio_transcription.completed")
        events += until(conn, "conversation.item.input_audio_transcription.completed")
        done = of(events, "conversation.item.input_audio_transcription.completed")
        deltas = of(events, "conversation.item.input_audio_transcription.delta")
        assert len(done) == 2 and [d.item_id for d in deltas] == [d.item_id for d in done]
        for heard in done:
            assert wer(QUESTION, heard.transcript) <= 0.35, heard.transcript
        assert "".join(d.delta for d in deltas if d.item_id == done[0].item_id) == \
            done[0].transcript
        conn.response.create()
        assert until(conn, "error")[-1].error.code == "unsupported_event"
        conn.session.update(session={"type": "transcription", "instructions": "Be brief."})
        assert until(conn, "error")[-1].error.param == "session.instructions"
        assert not of(events, "response.created")


def test_the_transcription_model_named_is_the_one_that_hears(
        conn: RealtimeConnection) -> None:
    text_session(conn)
    conn.session.update(session={"type": "realtime", "audio": {"input": {
        "transcription": {"model": "smollm2-135m-instruct"}}}})
    error = until(conn, "error")[-1].error
    assert error.param == "session.audio.input.transcription.model"
    conn.session.update(session={"type": "realtime", "audio": {"input": {
        "transcription": {"model": "whisper-tiny.en"}}}})
    model = until(conn, "session.updated")[-1].session.audio.input.transcription.model
    assert model == "whisper-tiny.en"


WEATHER = {"type": "function", "name": "get_weather", "description": "Get the weather in a city.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                          "required": ["city"]}}


def test_a_session_calls_a_function_and_answers_with_its_output(
        conn: RealtimeConnection) -> None:
    text_session(conn)
    conn.session.update(session={"type": "realtime", "tools": [WEATHER],
                                 "tool_choice": "required", "max_output_tokens": 60})
    assert until(conn, "session.updated")[-1].session.tools[0].name == "get_weather"
    say(conn, "What is the weather like in Paris?")
    conn.response.create()
    events = until(conn, "response.done")
    done = events[-1].response
    calls = [o for o in done.output if o.type == "function_call"]
    assert done.status == "completed" and calls and calls[0].name == "get_weather"
    arguments = json.loads(calls[0].arguments)
    assert isinstance(arguments, dict)
    streamed = "".join(e.delta for e in of(events, "response.function_call_arguments.delta")
                       if e.item_id == calls[0].id)
    assert streamed == calls[0].arguments
    conn.conversation.item.create(item={"type": "function_call_output",
                                        "call_id": calls[0].call_id,
                                        "output": json.dumps({"sky": "sunny", "celsius": 21})})
    until(conn, "conversation.item.done")
    conn.response.create(response={"tool_choice": "none"})
    answer = until(conn, "response.done")[-1].response
    assert answer.status == "completed"
    assert [o.type for o in answer.output] == ["message"]
    assert answer.output[0].content[0].text.strip()


def test_truncate_stops_the_answer_and_keeps_what_was_heard(conn: RealtimeConnection) -> None:
    assert recv(conn).type == "session.created"
    conn.session.update(session={"type": "realtime", "output_modalities": ["audio"],
                                 "max_output_tokens": "inf",
                                 "instructions": "Tell a very long story about a dragon.",
                                 "audio": {"input": {"turn_detection": None}}})
    until(conn, "session.updated")
    say(conn, "Tell me the story.")
    conn.response.create()
    events = until(conn, "response.output_audio.delta")
    item_id = of(events, "response.output_item.added")[0].item.id
    sent = time.perf_counter()
    conn.conversation.item.truncate(item_id=item_id, content_index=0, audio_end_ms=300)
    events += until(conn, "conversation.item.truncated")
    stopped_after = time.perf_counter() - sent
    done = of(events, "response.done")[0].response
    assert done.status == "cancelled" and stopped_after < 2.0
    conn.conversation.item.retrieve(item_id=item_id)
    kept = until(conn, "conversation.item.retrieved")[-1].item.content[0].transcript
    written = "".join(e.delta for e in of(events, "response.output_audio_transcript.delta"))
    # 300 ms of speech is a word or two; the model had written more by then.
    assert len(kept.split()) <= 3 and written.strip().startswith(kept), (kept, written)
    assert len(written.split()) > len(kept.split()), (kept, written)
