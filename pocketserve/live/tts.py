"""`/ws/tts`: text in (whole or in token-sized pieces, as an LLM writes it), audio out as
each sentence is complete.

Text is held until a sentence in it has ended and more text has followed (the cut the Realtime
answers use), or a `flush`/`end` says to speak the rest; each run of sentences cut that way is
one `SPEECH` request of the speech model, spoken in order by one speaker task. Its audio goes
out as binary frames (or base64 `audio` events), then an `audio.done` event: in `pcm` the
frames of all units make one stream; in a container format each unit is a complete file.
Closing the socket cancels the unit being spoken in the worker and drops the rest.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, replace
from typing import Any, Protocol

from pocketserve.audio.encode import FORMATS, OUTPUT_RATE
from pocketserve.engines.sentences import MAX_SENTENCE_CHARS, split_sentences
from pocketserve.engines.speech import MAX_INPUT_CHARS
from pocketserve.errors import PocketserveError
from pocketserve.live import options
from pocketserve.live.session import Bounds, LiveSession, Transport
from pocketserve.ops.speech import SPEECH, Audio, SpeechDone, SpeechEvent, SpeechRequest
from pocketserve.ops.wire import Op
from pocketserve.realtime.errors import ClientError
from pocketserve.voice.reply import last_end

log = logging.getLogger("pocketserve.live")


class Speakers(Protocol):
    """What the session needs of the registry."""

    def stream(self, name: str, op: Op[SpeechRequest, SpeechEvent],
               request: SpeechRequest) -> AsyncIterator[SpeechEvent]: ...


@dataclass(frozen=True)
class TtsConfig:
    model: str
    voice: str
    response_format: str = "pcm"
    speed: float = 1.0
    instructions: str | None = None
    framing: str = "binary"  # or "json": audio as base64 `audio` events

    def updated(self, data: dict[str, Any], resolve: Callable[[str], str]) -> TtsConfig:
        options.known(data, tuple(asdict(self)))
        changes: dict[str, Any] = {}
        for name, value in data.items():
            if name == "model":
                changes[name] = resolve(options.text(value, name))
            elif name == "voice":
                changes[name] = options.text(value, name)
            elif name == "response_format":
                changes[name] = options.text(value, name, FORMATS)
            elif name == "framing":
                changes[name] = options.text(value, name, ("binary", "json"))
            elif name == "speed":
                changes[name] = options.number(value, name, float, 0.25, 4.0)
            else:
                changes[name] = None if value is None else options.text(value, name)
        return replace(self, **changes)

    def wire(self) -> dict[str, Any]:
        return {**asdict(self), "sample_rate": OUTPUT_RATE}


@dataclass
class _Unit:
    text: str
    config: TtsConfig


@dataclass
class _Mark:
    event: dict[str, Any]  # sent once everything before it is spoken
    last: bool = False  # `end`: the session is finished after it


class TtsSession(LiveSession):
    def __init__(self, models: Speakers, transport: Transport, config: TtsConfig,
                 bounds: Bounds, resolve: Callable[[str], str], max_pending_chars: int):
        super().__init__(transport, bounds)
        self.models = models
        self.config = config
        self.resolve = resolve
        self.max_pending_chars = max_pending_chars
        self.unsaid = ""
        self.ending = False
        self._pending_chars = 0  # cut and waiting to be spoken, or being spoken
        self._queue: asyncio.Queue[_Unit | _Mark] = asyncio.Queue()
        self._speaker: asyncio.Task[None] | None = None
        self.handlers = {"config": self._configure, "text": self._text,
                         "flush": self._flush, "end": self._end}

    async def run(self) -> None:
        self._speaker = asyncio.create_task(self._speak())
        self.send({"type": "session.created", "config": self.config.wire()})
        await super().run()

    def busy(self) -> bool:
        return self._pending_chars > 0 or not self._queue.empty()

    async def stop(self) -> None:
        if self._speaker is not None:
            self._speaker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._speaker

    async def _configure(self, event: dict[str, Any]) -> None:
        self._check_not_ending("config")
        fields = {k: v for k, v in event.items() if k not in ("type", "event_id")}
        config = self.config.updated(fields, self.resolve)
        self._say(self.unsaid)  # text sent before the change keeps the settings it came under
        self.unsaid = ""
        self.config = config
        self.send({"type": "session.updated", "config": self.config.wire()})

    async def _text(self, event: dict[str, Any]) -> None:
        self._check_not_ending("text")
        text = event.get("text")
        if not isinstance(text, str):
            raise ClientError("A text event needs 'text', a string.",
                              code="missing_required_parameter", param="text")
        if self._pending_chars + len(self.unsaid) + len(text) > self.max_pending_chars:
            raise ClientError(f"More than {self.max_pending_chars} characters would wait to "
                              "be spoken; send more once audio has come back.",
                              code="buffer_full", param="text")
        self.unsaid += text
        while cut := last_end(self.unsaid) or _long_cut(self.unsaid):
            self._say(self.unsaid[:cut])
            self.unsaid = self.unsaid[cut:]

    async def _flush(self, event: dict[str, Any]) -> None:
        self._check_not_ending("flush")
        self._say(self.unsaid)
        self.unsaid = ""
        self._queue.put_nowait(_Mark({"type": "flushed"}))

    async def _end(self, event: dict[str, Any]) -> None:
        self._check_not_ending("end")
        self.ending = True
        self._say(self.unsaid)
        self.unsaid = ""
        self._queue.put_nowait(_Mark({"type": "done"}, last=True))

    def _check_not_ending(self, what: str) -> None:
        if self.ending:
            raise ClientError(f"No '{what}' after 'end': the session is finishing.",
                              code="session_ending", param="type")

    def _say(self, text: str) -> None:
        """Queue `text` to be spoken: one unit, or several where one request could not hold
        it; nothing where there is nothing to say (only punctuation or space)."""
        sentences = split_sentences(text)
        if len(text) <= MAX_INPUT_CHARS:
            units = [text.strip()] if sentences else []
        else:
            units = [""]
            for sentence in sentences:
                if len(units[-1]) + len(sentence) >= MAX_INPUT_CHARS:
                    units.append("")
                units[-1] = f"{units[-1]} {sentence}".strip()
        for unit in units:
            self._pending_chars += len(unit)
            self._queue.put_nowait(_Unit(unit, self.config))

    async def _speak(self) -> None:
        while True:
            item = await self._queue.get()
            if isinstance(item, _Mark):
                self.send(item.event)
                if item.last:
                    self.finish()
                    return
                continue
            try:
                await self._synthesize(item)
            except PocketserveError as exc:
                self.error(exc)
            except Exception:  # a bug here must not stop the speaker
                log.exception("live speech failed")
                self.error(PocketserveError("The server had an error while speaking."))
            finally:
                self._pending_chars -= len(item.text)

    async def _synthesize(self, unit: _Unit) -> None:
        c = unit.config
        request = SpeechRequest(input=unit.text, voice=c.voice, response_format=c.response_format,
                                speed=c.speed, instructions=c.instructions)
        events = self.models.stream(c.model, SPEECH, request)
        async with contextlib.aclosing(events):  # type: ignore[type-var]
            async for event in events:
                if isinstance(event, Audio) and event.audio:
                    if c.framing == "json":
                        self.send({"type": "audio", "audio": base64.b64encode(event.audio)
                                   .decode()})
                    else:
                        self.send_bytes(event.audio)
                elif isinstance(event, SpeechDone):
                    self.send({"type": "audio.done", "text": unit.text,
                               "format": c.response_format,
                               "duration_s": round(event.duration_s, 3)})


def _long_cut(text: str) -> int:
    """Where to cut text that has gone on too long without a sentence end: its last space."""
    if len(text) <= MAX_SENTENCE_CHARS:
        return 0
    return text.rfind(" ", 0, MAX_SENTENCE_CHARS) + 1 or MAX_SENTENCE_CHARS
