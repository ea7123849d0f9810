"""The multipart form as OpenAI's SDK and plain clients send it, and each response format."""

from __future__ import annotations

import json

import pytest
from fastapi.exceptions import RequestValidationError
from starlette.datastructures import FormData, Headers, UploadFile

from pocketserve.api.protocol.transcription import read_form, transcript_response
from pocketserve.engines.transcription import Transcript
from pocketserve.errors import InvalidRequest, PayloadTooLarge
from pocketserve.ops.transcription import (
    TRANSCRIBE,
    Segment,
    TranscriptInfo,
    TranscriptionRequest,
    VadParams,
    Word,
)
from pocketserve.ops.wire import encode


def event_from_wire(data: object) -> object:
    return TRANSCRIBE.decode_event(encode(data))


def _form(*fields: tuple[str, str], data: bytes = b"RIFF....") -> FormData:
    import io

    upload = UploadFile(io.BytesIO(data), size=len(data), filename="a.wav",
                        headers=Headers({"content-type": "audio/wav"}))
    return FormData([("file", upload), *fields])


async def _read(*fields: tuple[str, str], task: str = "transcribe",
                max_bytes: int = 1000) -> tuple[TranscriptionRequest, bool]:
    form, audio = await read_form(_form(*fields), task, max_bytes)  # type: ignore[arg-type]
    return form.to_engine(audio, task, 60.0), form.stream  # type: ignore[arg-type]


def run(coro):  # type: ignore[no-untyped-def]
    import asyncio

    return asyncio.run(coro)


def test_sdk_brackets_and_plain_names_reach_the_same_fields() -> None:
    req, stream = run(_read(("model", "whisper-1"), ("response_format", "verbose_json"),
                            ("timestamp_granularities[]", "word"),
                            ("timestamp_granularities", "segment"), ("stream", "true"),
                            ("language", "EN"), ("temperature", "0.3"), ("prompt", "Hi.")))
    assert req.word_timestamps and stream
    assert (req.language, req.temperature, req.prompt, req.audio) == ("en", 0.3, "Hi.",
                                                                      b"RIFF....")


def test_language_by_name_and_unknown_language() -> None:
    req, _ = run(_read(("model", "m"), ("language", "Spanish")))
    assert req.language == "es"
    with pytest.raises(RequestValidationError) as info:
        run(_read(("model", "m"), ("language", "klingon")))
    assert info.value.errors()[0]["loc"] == ("language",)


def test_chunking_strategy_maps_to_vad() -> None:
    req, _ = run(_read(("model", "m")))
    assert req.vad is None
    req, _ = run(_read(("model", "m"), ("chunking_strategy", "auto")))
    assert req.vad == VadParams()
    req, _ = run(_read(("model", "m"), ("chunking_strategy[type]", "server_vad"),
                       ("chunking_strategy[threshold]", "0.3"),
                       ("chunking_strategy[silence_duration_ms]", "500")))
    assert req.vad == VadParams(threshold=0.3, min_silence_ms=500)
    raw = json.dumps({"type": "server_vad", "prefix_padding_ms": 100})
    req, _ = run(_read(("model", "m"), ("chunking_strategy", raw)))
    assert req.vad == VadParams(speech_pad_ms=100)
    with pytest.raises(RequestValidationError) as info:
        run(_read(("model", "m"), ("chunking_strategy", '{"type": "server_vad", '
                                                         '"threshold": 3}')))
    assert info.value.errors()[0]["loc"][:2] == ("chunking_strategy", "threshold")


def test_translation_ignores_transcription_only_fields() -> None:
    req, stream = run(_read(("model", "m"), ("language", "xx"), ("stream", "true"),
                            task="translate"))
    assert req.task == "translate" and req.language is None and not stream


def test_bad_forms() -> None:
    with pytest.raises(InvalidRequest) as info:
        run(read_form(FormData([("model", "m")]), "transcribe", 1000))
    assert info.value.param == "file"
    with pytest.raises(InvalidRequest) as info:
        run(read_form(FormData([("model", "m"), ("file", "text")]), "transcribe", 1000))
    assert info.value.param == "file"
    with pytest.raises(PayloadTooLarge) as big:
        run(_read(("model", "m"), max_bytes=4))
    assert big.value.status == 413 and big.value.param == "file"
    with pytest.raises(InvalidRequest) as info:
        run(_read(("model", "m"), ("timestamp_granularities[]", "word")))
    assert info.value.param == "timestamp_granularities"
    for field, value in [("temperature", "1.5"), ("response_format", "mp3"), ("model", "")]:
        with pytest.raises(RequestValidationError) as err:
            run(_read(("model", "m"), (field, value)))
        assert err.value.errors()[0]["loc"] == (field,)


def _transcript() -> Transcript:
    t = Transcript()
    t.add(TRANSCRIBE.decode_event(encode({"type": "info", "language": "de", "duration": 4.2})))
    words = [Word(" Guten", 0.0, 0.4, 0.9), Word(" Tag.", 0.4, 0.9, 0.8)]
    for seg in (Segment(0, 0, 0.0, 1.0, " Guten Tag.", [1, 2], 0.0, -0.2, 1.1, 0.01, words),
                Segment(1, 0, 1.2, 4.0, " Wie geht's?", [3], 0.0, -0.3, 1.0, 0.02, [])):
        t.add(TRANSCRIBE.decode_event(encode(seg)))
    return t


def _body(fmt: str, task: str = "transcribe", *fields: tuple[str, str]) -> str:
    form, _ = run(read_form(_form(("model", "m"), ("response_format", fmt), *fields), task,
                            1000))  # type: ignore[arg-type]
    return bytes(transcript_response(_transcript(), form, task).body).decode()  # type: ignore[arg-type]


def test_response_formats() -> None:
    assert json.loads(_body("json")) == {"text": "Guten Tag. Wie geht's?",
                                         "usage": {"type": "duration", "seconds": 5}}
    assert json.loads(_body("json", "translate")) == {"text": "Guten Tag. Wie geht's?"}
    assert _body("text") == "Guten Tag. Wie geht's?\n"
    assert _body("srt").startswith("1\n00:00:00,000 --> 00:00:01,000\nGuten Tag.\n\n2\n")
    assert _body("vtt").startswith("WEBVTT\n\n00:00:00.000 --> 00:00:01.000\nGuten Tag.\n")
    verbose = json.loads(_body("verbose_json", "transcribe",
                               ("timestamp_granularities[]", "word")))
    assert verbose["language"] == "german" and verbose["duration"] == 4.2
    assert "segments" not in verbose
    assert verbose["words"] == [{"word": "Guten", "start": 0.0, "end": 0.4},
                                {"word": "Tag.", "start": 0.4, "end": 0.9}]
    verbose = json.loads(_body("verbose_json", "translate"))
    assert verbose["language"] == "english" and verbose["task"] == "translate"
    assert [s["id"] for s in verbose["segments"]] == [0, 1] and "usage" not in verbose
    assert set(verbose["segments"][0]) == {"id", "seek", "start", "end", "text", "tokens",
                                           "temperature", "avg_logprob", "compression_ratio",
                                           "no_speech_prob"}


def test_info_event_round_trip() -> None:
    assert event_from_wire({"type": "info", "language": "en", "duration": 1.5}) == \
        TranscriptInfo("en", 1.5)
