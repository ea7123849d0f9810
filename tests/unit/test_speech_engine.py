"""The speech engine on the espeak-ng backend, in-process: events, errors, cancel, voices."""

from __future__ import annotations

import io
import threading
from pathlib import Path
from typing import Any

import av
import pytest

from pocketserve.backends.espeak import build_engine
from pocketserve.config import ModelSpec
from pocketserve.engines.speech import OPENAI_VOICES, SpeechEngine
from pocketserve.errors import InvalidRequest
from pocketserve.ops.speech import SPEECH
from tests.engine_helpers import run_op

SPEC = ModelSpec(id="espeak-ng", capability="speech", backend="espeak",
                 source="program:espeak-ng")


@pytest.fixture(scope="module")
def engine() -> SpeechEngine:
    return build_engine(SPEC, Path("/usr/bin/espeak-ng"), 1)


def speak(engine: SpeechEngine, cancel_after: int | None = None,
          **payload: Any) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    cancelled = threading.Event()

    def emit(event: dict[str, Any]) -> None:
        events.append(event)
        if cancel_after is not None and len(events) >= cancel_after:
            cancelled.set()

    run_op(engine, SPEECH, {"voice": "alloy", **payload}, cancelled, emit, as_dicts=True)
    return events


def test_one_audio_event_per_sentence_then_done(engine: SpeechEngine) -> None:
    events = speak(engine, input="One. Two. Three. Four.", response_format="wav")
    audio = [e for e in events if e["type"] == "audio"]
    assert len(audio) >= 4
    done = events[-1]
    assert done["type"] == "done"
    assert 1.0 < done["duration_s"] < 6.0
    usage = done["usage"]
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert usage["output_tokens"] == round(done["duration_s"] * 50)
    with av.open(io.BytesIO(b"".join(e["audio"] for e in audio))) as wav:
        stream = wav.streams.audio[0]
        samples = sum(f.samples for f in wav.decode(stream))
    assert samples / stream.rate == pytest.approx(done["duration_s"], abs=0.05)


def test_cancel_stops_between_sentences(engine: SpeechEngine) -> None:
    text = " ".join(f"Sentence number {i}." for i in range(20))
    events = speak(engine, cancel_after=1, input=text, response_format="pcm")
    assert len(events) == 1
    assert events[0]["type"] == "audio"


def test_speed_changes_duration(engine: SpeechEngine) -> None:
    def seconds(speed: float) -> float:
        text = "The quick brown fox jumps over the lazy dog."
        return float(speak(engine, input=text, speed=speed, response_format="pcm")[-1]
                     ["duration_s"])

    assert seconds(2.0) < 0.7 * seconds(1.0)


def test_voices_openai_names_first_then_languages(engine: SpeechEngine) -> None:
    ids = [v["id"] for v in engine.info()["voices"]]
    assert tuple(ids[:len(OPENAI_VOICES)]) == OPENAI_VOICES
    assert {"de", "fr-fr", "en-us"} <= set(ids)
    assert engine.resolve_voice("nova") == "en-us+f3"
    assert engine.resolve_voice("fr") == "fr"  # answered by fr-fr
    assert engine.resolve_voice("de+m3") == "de+m3"


@pytest.mark.parametrize(("payload", "param"), [
    ({"input": "Hi.", "voice": "nobody"}, "voice"),
    ({"input": "Hi.", "voice": "de+nosuchvariant"}, "voice"),
    ({"input": "Hi.", "response_format": "ogg"}, "response_format"),
    ({"input": "Hi.", "speed": 5.0}, "speed"),
    ({"input": "..."}, "input"),
    ({"input": "a" * 4097}, "input"),
])
def test_bad_requests_name_the_parameter(engine: SpeechEngine, payload: dict[str, Any],
                                          param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        speak(engine, **payload)
    assert caught.value.param == param


def test_other_languages_speak(engine: SpeechEngine) -> None:
    events = speak(engine, input="Guten Tag. Wie geht es Ihnen?", voice="de",
                   response_format="pcm")
    assert events[-1]["duration_s"] > 1.0
