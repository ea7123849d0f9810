"""The input audio buffer: PCM from `input_audio_buffer.append` streamed into a `LISTEN`
operation of the transcription model, and what it reports turned into turns and items.

One `LISTEN` stream (a listener) takes the audio from the first append until a commit or a
clear: with server VAD the worker finds the turns in it; without, a commit ends the stream and
the worker transcribes what was sent. A committed stream keeps reading its last transcript
while the next append already opens a new one. Times the worker reports are from the start of
its stream; the listener adds where that stream began in the session's audio.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from pocketserve.errors import EngineFailure, PocketserveError
from pocketserve.ops.transcription import (
    LISTEN,
    AudioFrame,
    ListenEvent,
    ListenRequest,
    Segment,
    SpeechStarted,
    SpeechStopped,
)
from pocketserve.realtime.config import SessionConfig
from pocketserve.realtime.conversation import Conversation, Item, new_id
from pocketserve.realtime.errors import ClientError
from pocketserve.realtime.response import Models, Send, error_event
from pocketserve.serving.worker import OpStream

log = logging.getLogger("pocketserve.realtime")
INPUT_RATE = 24_000
MIN_COMMIT_MS = 100  # as OpenAI: a commit of less audio is refused


@dataclass
class _Listener:
    offset_ms: float
    vad: bool
    stream: OpStream[ListenEvent] | None = None
    task: asyncio.Task[None] | None = None
    speaking: Item | None = None
    pending: deque[Item] = field(default_factory=deque)


class AudioInput:
    def __init__(self, models: Models, send: Send, conversation: Conversation,
                 on_speech: Callable[[], Awaitable[None]],
                 on_turn: Callable[[Item], Awaitable[None]]):
        self.models = models
        self.send = send
        self.conversation = conversation
        self.on_speech = on_speech  # speech started: barge in on an answer
        self.on_turn = on_turn  # a VAD turn is transcribed: maybe answer it
        self.appended_ms = 0.0
        self.buffered_ms = 0.0
        self._listener: _Listener | None = None
        self._finishing: set[asyncio.Task[None]] = set()

    async def append(self, pcm: bytes, config: SessionConfig) -> None:
        listener = self._listener or await self._open(config)
        assert listener.stream is not None
        listener.stream.send(AudioFrame(pcm))
        ms = len(pcm) / 2 / INPUT_RATE * 1000
        self.appended_ms += ms
        self.buffered_ms += ms

    async def commit(self) -> None:
        listener = self._listener
        if listener is None or (self.buffered_ms < MIN_COMMIT_MS and not listener.vad):
            raise ClientError(f"Error committing input audio buffer: buffer too small. Expected "
                              f"at least {MIN_COMMIT_MS}ms of audio, but buffer only has "
                              f"{self.buffered_ms:.2f}ms of audio.",
                              code="input_audio_buffer_commit_empty")
        if listener.vad and listener.speaking is None:
            await self.clear()
            raise ClientError("Error committing input audio buffer: no speech was detected in "
                              "it since the last turn.", code="input_audio_buffer_commit_empty")
        if not listener.vad:
            item = self._user_item()
            await self._committed(item)
            listener.pending.append(item)
        self._detach().end_input()

    async def clear(self) -> None:
        """Drop what was appended and not committed (the listener is cancelled)."""
        listener, self._listener = self._listener, None
        self.buffered_ms = 0.0
        if listener is not None and listener.task is not None:
            listener.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener.task

    async def close(self) -> None:
        await self.clear()
        for task in list(self._finishing):
            task.cancel()
        await asyncio.gather(*self._finishing, return_exceptions=True)

    async def transcribe(self, item: Item, pcm: bytes, config: SessionConfig) -> None:
        """The audio of a created item, heard by a listener of its own (no VAD)."""
        listener = _Listener(offset_ms=0.0, vad=False)
        listener.pending.append(item)
        request = ListenRequest(sample_rate=INPUT_RATE, language=config.language,
                                prompt=config.prompt)
        ready: asyncio.Future[OpStream[ListenEvent]] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(
            self._listen(listener, config.transcription_model, request, ready))
        self._finishing.add(task)
        task.add_done_callback(self._finishing.discard)
        stream = await ready
        stream.send(AudioFrame(pcm))
        stream.end_input()

    def _detach(self) -> OpStream[ListenEvent]:
        listener, self._listener = self._listener, None
        assert listener is not None and listener.stream is not None and listener.task
        self.buffered_ms = 0.0
        self._finishing.add(listener.task)
        listener.task.add_done_callback(self._finishing.discard)
        return listener.stream

    async def _open(self, config: SessionConfig) -> _Listener:
        vad = config.turn_detection
        request = ListenRequest(sample_rate=INPUT_RATE, language=config.language,
                                prompt=config.prompt,
                                turn_detection=None if vad is None else vad.to_engine())
        listener = _Listener(offset_ms=self.appended_ms, vad=vad is not None)
        ready: asyncio.Future[OpStream[ListenEvent]] = asyncio.get_running_loop().create_future()
        listener.task = asyncio.create_task(
            self._listen(listener, config.transcription_model, request, ready))
        listener.stream = await ready
        self._listener = listener
        return listener

    async def _listen(self, listener: _Listener, model: str, request: ListenRequest,
                      ready: asyncio.Future[OpStream[ListenEvent]]) -> None:
        try:
            async with self.models.open(model, LISTEN, request) as stream:
                ready.set_result(stream)
                async for event in stream.events():
                    await self._on_event(listener, event)
        except Exception as exc:
            error = exc if isinstance(exc, PocketserveError) else EngineFailure(
                f"Live transcription failed: {exc!r}")
            if not ready.done():
                ready.set_exception(error)
                return
            log.error("live transcription failed: %s", error.message)
            await self.send(error_event(error.message, error.kind,
                                        error.code or "transcription_failed", error.param))
        finally:
            if self._listener is listener:
                self._listener = None
            await self._fail_pending(listener)

    async def _on_event(self, listener: _Listener, event: ListenEvent) -> None:
        offset = listener.offset_ms
        if isinstance(event, SpeechStarted):
            listener.speaking = self._user_item()
            await self.send({"type": "input_audio_buffer.speech_started",
                             "audio_start_ms": round(offset + event.audio_start_ms),
                             "item_id": listener.speaking.id})
            await self.on_speech()
        elif isinstance(event, SpeechStopped):
            item = listener.speaking or self._user_item()
            listener.speaking = None
            await self.send({"type": "input_audio_buffer.speech_stopped",
                             "audio_end_ms": round(offset + event.audio_end_ms),
                             "item_id": item.id})
            if self._listener is listener:
                self.buffered_ms = 0.0
            await self._committed(item)
            listener.pending.append(item)
        elif isinstance(event, Segment) and listener.pending:
            item = listener.pending.popleft()
            await self._transcribed(item, event.text, event.end - event.start)
            if listener.vad:
                await self.on_turn(item)

    def _user_item(self) -> Item:
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        return Item(id=new_id("item"), role="user", kind="input_audio", transcript=future)

    async def _committed(self, item: Item) -> None:
        previous = self.conversation.add(item)
        await self.send({"type": "input_audio_buffer.committed", "item_id": item.id,
                         "previous_item_id": previous})
        await self.send({"type": "conversation.item.added", "item": item.wire(),
                         "previous_item_id": previous})

    async def _transcribed(self, item: Item, text: str, seconds: float) -> None:
        item.text = text
        if item.transcript is not None and not item.transcript.done():
            item.transcript.set_result(text)
        if text:  # Whisper gives the turn's text at once: one delta, then the whole
            await self.send({"type": "conversation.item.input_audio_transcription.delta",
                             "item_id": item.id, "content_index": 0, "delta": text})
        await self.send({"type": "conversation.item.input_audio_transcription.completed",
                         "item_id": item.id, "content_index": 0, "transcript": text,
                         "usage": {"type": "duration", "seconds": round(seconds, 3)}})
        await self.send({"type": "conversation.item.done", "item": item.wire(),
                         "previous_item_id": self._previous(item)})

    async def _fail_pending(self, listener: _Listener) -> None:
        while listener.pending:
            item = listener.pending.popleft()
            item.text = ""
            if item.transcript is not None and not item.transcript.done():
                item.transcript.set_result("")
            with contextlib.suppress(Exception):
                await self.send({"type": "conversation.item.input_audio_transcription.failed",
                                 "item_id": item.id, "content_index": 0,
                                 "error": {"type": "transcription_error",
                                           "code": "transcription_failed",
                                           "message": "The audio was not transcribed.",
                                           "param": None}})

    def _previous(self, item: Item) -> str | None:
        items = self.conversation.items
        for i, candidate in enumerate(items):
            if candidate is item:
                return items[i - 1].id if i else None
        return None
