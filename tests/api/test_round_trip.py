"""Speech out and back in: our Piper voice, transcribed by our Whisper base, WER <= 5%."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from openai import OpenAI

from tests.conftest import RunningServer, start_server, stop_server
from tests.stt_helpers import wer

PARAGRAPH = (
    "The library opens at nine in the morning and closes at six in the evening. "
    "Visitors may borrow up to five books at a time. "
    "Please return them within three weeks, or ask the staff for more time. "
    "The reading room on the second floor is quiet and has plenty of light."
)


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    s = start_server(["piper-joe-medium", "whisper-base"])
    yield s
    stop_server(s)


@pytest.mark.parametrize("fmt", ["wav", "mp3"])
def test_piper_to_whisper_round_trip(server: RunningServer, fmt: str) -> None:
    client: OpenAI = server.client()
    audio = client.audio.speech.create(model="tts-1", voice="alloy", input=PARAGRAPH,
                                       response_format=fmt)  # type: ignore[arg-type]
    text = client.audio.transcriptions.create(
        model="whisper-1", file=(f"speech.{fmt}", audio.content), language="en")
    error = wer(PARAGRAPH, text.text)
    assert error <= 0.05, (error, text.text)
