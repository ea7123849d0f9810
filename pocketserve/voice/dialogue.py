"""One turn of a spoken dialogue: the user's audio heard, answered by the chat model with the
session's history, and the answer spoken as it is written.

The stages overlap as in /v1/realtime (they share `SpokenReply`): the transcript is complete
before the chat model starts (it needs the question), but speech starts with the reply's first
sentence. A turn holds its session's lock, so two requests on one session take turns instead of
answering the same history twice; it is remembered only once it has finished, so a failed or
abandoned turn leaves the session as it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from functools import partial
from typing import Any

from pocketserve.engines.transcription import Transcript
from pocketserve.errors import InvalidRequest
from pocketserve.ops.chat import ChatMessage, ChatRequest, SamplingParams
from pocketserve.ops.transcription import TRANSCRIBE, TranscriptionRequest
from pocketserve.voice.audio_out import AudioOut
from pocketserve.voice.reply import Models, Speaking, SpokenReply
from pocketserve.voice.sessions import DialogueStore, Session, Turn


@dataclass
class TurnRequest:
    transcription: TranscriptionRequest
    transcription_model: str
    chat_model: str
    speaking: Speaking
    response_format: str
    instructions: str
    max_tokens: int
    temperature: float | None = None


@dataclass
class Heard:
    session_id: str
    transcript: str


@dataclass
class ReplyDelta:
    text: str


@dataclass
class AudioChunk:
    data: bytes  # the next bytes of one file in the turn's response_format


@dataclass
class TurnDone:
    session_id: str
    transcript: str
    reply: str
    timings: dict[str, float | None]  # milliseconds
    usage: dict[str, float]
    turns: int
    dropped_turns: int


TurnEvent = Heard | ReplyDelta | AudioChunk | TurnDone


async def dialogue_turn(models: Models, store: DialogueStore, session: Session,
                        req: TurnRequest) -> AsyncIterator[TurnEvent]:
    """The turn's events in order: Heard, then ReplyDelta and AudioChunk as they come, then
    TurnDone once the turn is in the session. Errors are the domain's (InvalidRequest names
    `file` when no speech is heard)."""
    async with session.lock:
        started = time.perf_counter()
        transcript, seconds = await _transcribe(models, req)
        heard = time.perf_counter()
        if not transcript:
            raise InvalidRequest("No speech was heard in the audio.", param="file",
                                 code="no_speech")
        yield Heard(session.id, transcript)
        audio = AudioOut(req.response_format)
        out: asyncio.Queue[TurnEvent | None] = asyncio.Queue()
        reply = SpokenReply(models, partial(_put_text, out), partial(_put_audio, out, audio))
        messages = [ChatMessage(role="system", content=req.instructions), *session.messages(),
                    ChatMessage(role="user", content=transcript)]
        request = ChatRequest(messages=messages, sampling=SamplingParams(
            max_tokens=req.max_tokens, temperature=req.temperature))
        try:
            async for event in _drain(reply.run(req.chat_model, request, req.speaking), out):
                yield event
            if tail := await audio.finish():
                yield AudioChunk(tail)
        finally:
            audio.close()
        store.commit(session, Turn(transcript, reply.text))
        ended = time.perf_counter()
        yield TurnDone(session.id, transcript, reply.text,
                       _timings(started, heard, ended, reply),
                       {"input_audio_seconds": round(seconds, 3),
                        "prompt_tokens": reply.usage.prompt_tokens,
                        "completion_tokens": reply.usage.completion_tokens,
                        "output_audio_seconds": round(audio.seconds, 3)},
                       len(session.turns), session.dropped_turns)


async def _transcribe(models: Models, req: TurnRequest) -> tuple[str, float]:
    transcript = Transcript()
    async for event in models.stream(req.transcription_model, TRANSCRIBE, req.transcription):
        transcript.add(event)
    return transcript.text, transcript.info.duration


async def _put_text(out: asyncio.Queue[TurnEvent | None], delta: str) -> None:
    out.put_nowait(ReplyDelta(delta))


async def _put_audio(out: asyncio.Queue[TurnEvent | None], audio: AudioOut, pcm: bytes) -> None:
    if data := await audio.feed(pcm):
        out.put_nowait(AudioChunk(data))


async def _drain(work: Coroutine[Any, Any, None],
                 out: asyncio.Queue[TurnEvent | None]) -> AsyncIterator[TurnEvent]:
    """What `work` (run as a task) puts in `out`, as it comes; its error at the end. Closing
    this early cancels the work."""

    async def run() -> None:
        try:
            await work
        finally:
            out.put_nowait(None)

    task = asyncio.create_task(run())
    try:
        while (event := await out.get()) is not None:
            yield event
        await task
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _timings(started: float, heard: float, ended: float,
             reply: SpokenReply) -> dict[str, float | None]:
    t = reply.times

    def ms(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else round((b - a) * 1000, 1)

    return {"transcribe_ms": ms(started, heard),
            "reply_first_token_ms": ms(t.started, t.first_token),
            "reply_ms": ms(t.started, t.chat_done),
            "speech_ms": ms(t.speech_started, t.speech_done),
            "first_audio_ms": ms(started, t.first_audio),
            "total_ms": ms(started, ended)}
