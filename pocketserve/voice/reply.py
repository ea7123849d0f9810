"""A spoken reply: the chat model's text as it is written and, while it goes on, each run of
complete sentences spoken by the speech model.

/v1/realtime (audio mode) and /v1/dialogue both answer this way; only how they send the text
and the audio differs, so both hand callbacks to one `SpokenReply`. Speech is asked for raw
24 kHz PCM, one `SPEECH` request per run of sentences, so the first audio leaves after the first
sentence instead of after the whole answer. Closing (cancelling) the run closes both streams,
which stops both workers at their next step.

What was said is kept in `spoken` as it goes: [text handed to speech, ms of audio made of it,
whether all of it is made], so a client that stops playback (realtime's truncate) can be told
which words were heard. Tool calls the model makes go to `on_call`.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from pocketserve.engines.sentences import last_sentence_end
from pocketserve.errors import InvalidRequest
from pocketserve.ops.chat import CHAT, ChatRequest, TextDelta, ToolCallDelta
from pocketserve.ops.common import Usage
from pocketserve.ops.speech import SPEECH, Audio, SpeechDone, SpeechRequest
from pocketserve.ops.wire import Op
from pocketserve.serving.worker import OpStream

Req = TypeVar("Req")
Ev = TypeVar("Ev")
OnText = Callable[[str], Awaitable[None]]
OnAudio = Callable[[bytes], Awaitable[None]]
OnCall = Callable[[ToolCallDelta], Awaitable[None]]
PCM_RATE = 24_000  # what SPEECH sends for response_format "pcm"
DEFAULT_INSTRUCTIONS = ("You are a helpful, friendly voice assistant. Answer in one or two "
                        "short sentences.")
# Before the first audio, a clause is enough once it is this long: the first words then leave
# before a long first sentence is complete.
_CLAUSE = re.compile(r"[,;:](?=\s)")
FIRST_CLAUSE_CHARS = 40


class Models(Protocol):
    """What a voice pipeline needs of the registry."""

    def stream(self, name: str, op: Op[Req, Ev], request: Req) -> AsyncIterator[Ev]: ...

    def open(self, name: str, op: Op[Req, Ev],
             request: Req) -> AbstractAsyncContextManager[OpStream[Ev]]: ...


@dataclass
class Speaking:
    """Which model speaks the reply, and how."""

    model: str
    voice: str
    speed: float = 1.0


@dataclass
class ReplyTimes:
    """perf_counter() readings of the run; None where it did not happen (yet)."""

    started: float = 0.0
    first_token: float | None = None
    chat_done: float | None = None
    speech_started: float | None = None
    first_audio: float | None = None
    speech_done: float | None = None


class SpokenReply:
    """One reply; `usage`, `audio_tokens`, `text` and `times` fill in as it runs (and keep
    what was done when it is cancelled)."""

    def __init__(self, models: Models, on_text: OnText, on_audio: OnAudio | None = None,
                 on_call: OnCall | None = None, spoken: list[list[Any]] | None = None):
        self.models = models
        self.on_text = on_text
        self.on_audio = on_audio
        self.on_call = on_call
        self.spoken: list[list[Any]] = [] if spoken is None else spoken
        self.text = ""
        self.usage = Usage(0)
        self.audio_tokens = 0
        self.times = ReplyTimes()

    async def run(self, chat_model: str, request: ChatRequest,
                  speaking: Speaking | None = None) -> None:
        """Stream the chat answer; with `speaking` (and `on_audio`), speak it too."""
        self.times.started = time.perf_counter()
        sentences: asyncio.Queue[str | None] = asyncio.Queue()
        speaker = (asyncio.create_task(self._speak(sentences, speaking))
                   if speaking is not None and self.on_audio is not None else None)
        unsaid = ""
        try:
            async for event in self.models.stream(chat_model, CHAT, request):
                if isinstance(event, Usage):
                    self.usage = event
                elif isinstance(event, ToolCallDelta) and event.index == 0:
                    if self.on_call is None:
                        raise InvalidRequest("This reply cannot call tools.", param="tools")
                    await self.on_call(event)
                elif isinstance(event, TextDelta) and event.index == 0 and event.text:
                    if self.times.first_token is None:
                        self.times.first_token = time.perf_counter()
                    self.text += event.text
                    await self.on_text(event.text)
                    unsaid += event.text
                    first = unsaid == self.text  # nothing handed over yet
                    if speaker is not None and (cut := last_end(unsaid, first)):
                        sentences.put_nowait(unsaid[:cut])
                        unsaid = unsaid[cut:]
            self.times.chat_done = time.perf_counter()
            if speaker is not None:
                sentences.put_nowait(unsaid)
                sentences.put_nowait(None)
                await speaker
        finally:
            if speaker is not None and not speaker.done():
                speaker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await speaker

    async def _speak(self, sentences: asyncio.Queue[str | None], speaking: Speaking) -> None:
        assert self.on_audio is not None
        try:
            while (text := await sentences.get()) is not None:
                said: list[Any] = [text, 0.0, False]
                self.spoken.append(said)
                if not text.strip():
                    said[2] = True
                    continue
                if self.times.speech_started is None:
                    self.times.speech_started = time.perf_counter()
                request = SpeechRequest(input=text.strip(), voice=speaking.voice,
                                        response_format="pcm", speed=speaking.speed)
                try:
                    async for event in self.models.stream(speaking.model, SPEECH, request):
                        if isinstance(event, Audio) and event.audio:
                            if self.times.first_audio is None:
                                self.times.first_audio = time.perf_counter()
                            said[1] += len(event.audio) / 2 / PCM_RATE * 1000
                            await self.on_audio(event.audio)
                        elif isinstance(event, SpeechDone):
                            self.audio_tokens += event.usage.output_tokens
                            said[2] = True
                except InvalidRequest as exc:
                    if exc.param != "input":  # text with nothing to say ("..."): skip it
                        raise
                    said[2] = True
        finally:
            if self.times.speech_started is not None:
                self.times.speech_done = time.perf_counter()


def last_end(text: str, first: bool = False) -> int:
    """Where the last complete sentence of `text` still being written ends (0: none yet; the
    rules of engines/sentences.py); for the `first` words of an answer, a long enough clause
    will do."""
    end = last_sentence_end(text)
    if not end and first:
        for match in _CLAUSE.finditer(text):
            if match.end() >= FIRST_CLAUSE_CHARS:
                return match.end()
    return end
