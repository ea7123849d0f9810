"""Language detection without a second encoder pass, on the real whisper-base weights: the
window encoded to name the language is the one its transcription uses."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from pocketserve.catalog import Catalog, resolve_source
from pocketserve.ops.transcription import Segment, TranscriptInfo, TranscriptionRequest
from tests.stt_helpers import espeak

pytestmark = pytest.mark.skipif(Catalog.missing_weights(Catalog().find("whisper-base"))
                                is not None, reason="whisper-base packages not installed")


class _CountingModel:
    """The CTranslate2 model, with its encoder calls counted."""

    def __init__(self, model: Any):
        self.model = model
        self.encodes = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    def encode(self, *args: Any, **kwargs: Any) -> Any:
        self.encodes += 1
        return self.model.encode(*args, **kwargs)


@pytest.fixture(scope="module")
def backend() -> Any:
    from pocketserve.backends.faster_whisper import FasterWhisperBackend

    spec = Catalog().find("whisper-base")
    whisper = FasterWhisperBackend(spec, resolve_source(spec.source), threads=2)
    counting = _CountingModel(whisper.decoder._model)
    whisper.decoder._model = counting
    yield whisper, counting
    whisper.close()


def _run(backend: Any, path: Path, language: str | None) -> tuple[str, str]:
    from faster_whisper.audio import decode_audio

    events: list[Any] = []
    backend.transcribe(decode_audio(str(path)), TranscriptionRequest(audio=b"",
                       language=language), events.append, threading.Event())
    info = next(e for e in events if isinstance(e, TranscriptInfo))
    return info.language, "".join(e.text for e in events if isinstance(e, Segment)).strip()


@pytest.mark.parametrize("voice, language", [("en-us", "en"), ("fr", "fr")])
def test_detects_the_language_with_one_encoder_pass(backend: Any, tmp_path: Path,
                                                    voice: str, language: str) -> None:
    whisper, counting = backend
    text = {"en": "What is the capital of France?",
            "fr": "Bonjour, je voudrais un café et un croissant, s'il vous plaît."}[language]
    clip = espeak(text, tmp_path / "q.wav", voice=voice)
    counting.encodes = 0
    detected, transcript = _run(whisper, clip, None)
    assert (detected, counting.encodes) == (language, 1)
    counting.encodes = 0
    assert _run(whisper, clip, language) == (language, transcript)  # same words as told
    assert counting.encodes == 1
