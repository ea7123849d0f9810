"""`/ws/stt`: PCM16 audio in, `speech_started`, `partial`, `speech_stopped` and `final` out.

One `LISTEN` stream of the transcription model hears the audio from the first frame until a
`commit` (or `end`); with VAD the worker finds the utterances in it and a `final` follows each
one, without VAD the commit ends the one utterance. A committed stream finishes on its own
while the next audio already opens a new one. Times are from the start of the session's audio.
An open stream holds one of the model's admission slots; closing the socket cancels it in the
worker, which frees the slot.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import asdict, dataclass, replace
from typing import Any, Protocol

from pocketserve.errors import EngineFailure, InvalidRequest, PocketserveError
from pocketserve.live import options
from pocketserve.live.session import Bounds, LiveSession, Transport
from pocketserve.ops.transcription import (
    LISTEN,
    AudioFrame,
    ListenEvent,
    ListenRequest,
    Partial,
    Segment,
    SpeechStarted,
    SpeechStopped,
    TranscriptInfo,
    TurnDetection,
)
from pocketserve.ops.wire import Op
from pocketserve.realtime.errors import ClientError
from pocketserve.serving.worker import OpStream

log = logging.getLogger("pocketserve.live")
FORMATS = ("pcm16", "s16le", "pcm_s16le")
# Files sent where raw PCM belongs: the first bytes of common containers.
_CONTAINERS = {b"RIFF": "a WAV file", b"ID3": "an MP3 file", b"\xff\xfb": "an MP3 file",
               b"OggS": "an Ogg file", b"fLaC": "a FLAC file", b"\x1aE\xdf\xa3": "a WebM file"}


class Listeners(Protocol):
    """What the session needs of the registry."""

    def open(self, name: str, op: Op[ListenRequest, ListenEvent],
             request: ListenRequest) -> AbstractAsyncContextManager[OpStream[ListenEvent]]: ...


@dataclass(frozen=True)
class SttConfig:
    model: str
    language: str | None = None
    prompt: str | None = None
    sample_rate: int = 16_000
    format: str = "pcm16"
    vad: bool = True
    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500
    partial_interval_ms: int = 1000  # 0: no partials

    def request(self) -> ListenRequest:
        vad = TurnDetection(threshold=self.threshold, prefix_padding_ms=self.prefix_padding_ms,
                            silence_duration_ms=self.silence_duration_ms)
        return ListenRequest(sample_rate=self.sample_rate, language=self.language,
                             prompt=self.prompt, turn_detection=vad if self.vad else None,
                             partial_interval_ms=self.partial_interval_ms or None)

    def updated(self, data: dict[str, Any], resolve: Callable[[str], str]) -> SttConfig:
        """This config with `data`'s options (strings allowed, as from a query string)."""
        options.known(data, tuple(asdict(self)))
        changes: dict[str, Any] = {}
        for name, value in data.items():
            if name == "model":
                changes[name] = resolve(options.text(value, name))
            elif name in ("language", "prompt"):
                changes[name] = None if value is None else options.text(value, name)
            elif name == "format":
                changes[name] = options.text(value, name, FORMATS)
            elif name == "vad":
                changes[name] = options.switch("false" if value in ("none", None) else
                                               "true" if value == "server_vad" else value, name)
            elif name == "sample_rate":
                changes[name] = options.number(value, name, int, 8_000, 96_000)
            elif name == "threshold":
                changes[name] = options.number(value, name, float, 0.0, 1.0)
            elif name == "partial_interval_ms":
                changes[name] = options.number(value, name, int, 0, 60_000)
                if 0 < changes[name] < 200:
                    raise ClientError("partial_interval_ms must be 0 (off) or at least 200.",
                                      param=name)
            else:
                changes[name] = options.number(value, name, int, 0, 10_000)
        return replace(self, **changes)


@dataclass
class _Stream:
    offset_s: float  # where this stream began in the session's audio
    stream: OpStream[ListenEvent] | None = None
    task: asyncio.Task[None] | None = None
    language: str | None = None
    unheard: int = 0  # utterances started and not yet transcribed
    committed: bool = False  # its input has ended
    finished: bool = False  # its events have ended (a failure can end them at once)


class SttSession(LiveSession):
    def __init__(self, models: Listeners, transport: Transport, config: SttConfig,
                 bounds: Bounds, resolve: Callable[[str], str]):
        super().__init__(transport, bounds)
        self.models = models
        self.config = config
        self.resolve = resolve  # a model name -> the served transcription model's id
        self.sent_s = 0.0  # audio sent so far, in seconds
        self.ending = False
        self._open: _Stream | None = None
        self._finishing: set[asyncio.Task[None]] = set()
        self._closing: asyncio.Task[None] | None = None
        # Why the model refused this config's audio (an unsupported language): later audio is
        # refused with it, without a new stream each frame, until the next config or commit.
        self._refused: InvalidRequest | None = None
        self.handlers = {"config": self._configure, "audio": self._audio_event,
                         "commit": self._commit, "end": self._end}

    async def run(self) -> None:
        self.send({"type": "session.created", "config": asdict(self.config)})
        await super().run()

    def busy(self) -> bool:
        """Transcripts still to come: the client may well wait for them in silence."""
        return bool(self._finishing) or self.ending or bool(self._open and self._open.unheard)

    async def stop(self) -> None:
        tasks = [*self._finishing, *([self._open.task] if self._open and self._open.task
                                     else []), *([self._closing] if self._closing else [])]
        self._open = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def on_binary(self, data: bytes) -> None:
        await self._append(data)

    async def _configure(self, event: dict[str, Any]) -> None:
        self._check_not_ending("config")
        if self._open is not None:
            raise ClientError("The configuration cannot change while audio is being heard; "
                              "send 'commit' first.", code="config_after_audio", param="type")
        fields = {k: v for k, v in event.items() if k not in ("type", "event_id")}
        self.config = self.config.updated(fields, self.resolve)
        self._refused = None
        self.send({"type": "session.updated", "config": asdict(self.config)})

    async def _audio_event(self, event: dict[str, Any]) -> None:
        audio = event.get("audio")
        if not isinstance(audio, str):
            raise ClientError("An audio event needs 'audio': base64 of PCM16 samples.",
                              code="missing_required_parameter", param="audio")
        try:
            pcm = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError):
            raise ClientError("'audio' is not valid base64.", code="invalid_audio",
                              param="audio") from None
        await self._append(pcm)

    async def _append(self, pcm: bytes) -> None:
        self._check_not_ending("audio")
        if self._refused is not None:
            raise self._refused
        _check_pcm(pcm)
        if not pcm:
            return
        current = self._open or await self._start()
        assert current.stream is not None
        current.stream.send(AudioFrame(pcm))
        self.sent_s += len(pcm) / 2 / self.config.sample_rate

    async def _commit(self, event: dict[str, Any]) -> None:
        self._check_not_ending("commit")
        self._refused = None
        if self._open is None:
            raise ClientError("There is no audio to commit.",
                              code="input_audio_buffer_commit_empty")
        self._detach()

    async def _end(self, event: dict[str, Any]) -> None:
        self._check_not_ending("end")
        self.ending = True
        if self._open is not None:
            self._detach()
        self._closing = asyncio.create_task(self._done(list(self._finishing)))

    async def _done(self, streams: list[asyncio.Task[None]]) -> None:
        """After `end`: once the last transcripts are out, `done` and close."""
        await asyncio.gather(*streams, return_exceptions=True)
        self.send({"type": "done"})
        self.finish()

    def _check_not_ending(self, what: str) -> None:
        if self.ending:
            raise ClientError(f"No '{what}' after 'end': the session is finishing.",
                              code="session_ending", param="type")

    def _detach(self) -> None:
        current, self._open = self._open, None
        assert current is not None and current.stream is not None and current.task is not None
        current.stream.end_input()
        current.committed = True
        self._finishing.add(current.task)
        current.task.add_done_callback(self._finishing.discard)

    async def _start(self) -> _Stream:
        current = _Stream(offset_s=self.sent_s, language=self.config.language)
        ready: asyncio.Future[OpStream[ListenEvent]] = asyncio.get_running_loop().create_future()
        current.task = asyncio.create_task(self._listen(current, self.config, ready))
        current.stream = await ready  # raises what opening raised (an unknown model, 429)
        if not current.finished:
            self._open = current
        return current

    async def _listen(self, current: _Stream, config: SttConfig,
                      ready: asyncio.Future[OpStream[ListenEvent]]) -> None:
        try:
            async with self.models.open(config.model, LISTEN, config.request()) as stream:
                ready.set_result(stream)
                async for event in stream.events():
                    self._on_event(current, event)
            if current.committed:
                self.send({"type": "committed", "audio_end_ms": round(self.sent_s * 1000)})
        except Exception as exc:
            error = exc if isinstance(exc, PocketserveError) else EngineFailure(
                f"Live transcription failed: {exc!r}")
            if not ready.done():
                ready.set_exception(error)
                return
            log.warning("live transcription failed: %s", error.message)
            if isinstance(error, InvalidRequest) and not current.committed:
                self._refused = error
            self.error(error)
        finally:
            current.finished = True
            if self._open is current:
                self._open = None

    def _on_event(self, current: _Stream, event: ListenEvent) -> None:
        at = current.offset_s
        if isinstance(event, SpeechStarted):
            current.unheard += 1
            self.send({"type": "speech_started",
                       "audio_start_ms": round(at * 1000 + event.audio_start_ms)})
        elif isinstance(event, SpeechStopped):
            self.send({"type": "speech_stopped",
                       "audio_end_ms": round(at * 1000 + event.audio_end_ms)})
        elif isinstance(event, Partial):
            self.send({"type": "partial", "text": event.text, "start": round(at + event.start,
                                                                             3)})
        elif isinstance(event, TranscriptInfo):
            current.language = event.language or current.language
        elif isinstance(event, Segment):
            current.unheard = max(0, current.unheard - 1)
            self.send({"type": "final", "text": event.text, "start": round(at + event.start, 3),
                       "end": round(at + event.end, 3), "language": current.language})


def _check_pcm(pcm: bytes) -> None:
    for magic, kind in _CONTAINERS.items():
        if pcm.startswith(magic):
            raise ClientError(f"This looks like {kind}; send raw PCM16 mono little-endian "
                              "samples at the configured sample_rate.", code="invalid_audio",
                              param="audio")
    if len(pcm) % 2:
        raise ClientError(f"A frame of PCM16 must hold whole 2-byte samples; this one has "
                          f"{len(pcm)} bytes.", code="invalid_audio", param="audio")
