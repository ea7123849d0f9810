"""Speech to text: the request, the streamed events, and the engine the worker calls.

The worker receives the uploaded file's bytes and decodes them itself (`audio.decode`), so the
HTTP process never runs decode-heavy code and a codec crash stays inside the model's process.
A backend gets 16 kHz mono samples and reports one `TranscriptInfo`, then each `Segment` as
soon as it is decoded, which is what makes `stream=true` useful on long audio.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pocketserve.engines.base import Emit, Handler
from pocketserve.errors import InvalidRequest

if TYPE_CHECKING:  # the API process imports this module; it needs no numpy
    import numpy as np
    import numpy.typing as npt

Task = Literal["transcribe", "translate"]


@dataclass
class VadParams:
    """Voice activity detection: skip what is not speech. None fields take the library's
    defaults (OpenAI's `chunking_strategy: "auto"`)."""

    threshold: float | None = None
    min_silence_ms: int | None = None
    speech_pad_ms: int | None = None


@dataclass
class TranscriptionRequest:
    audio: bytes
    task: Task = "transcribe"
    language: str | None = None
    prompt: str | None = None
    temperature: float = 0.0  # 0: start greedy/beam and fall back to sampling on failure
    word_timestamps: bool = False
    vad: VadParams | None = None  # None: the model's default (its `vad_filter` option)
    max_seconds: float | None = None

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> TranscriptionRequest:
        fields = dict(data)
        vad = fields.pop("vad", None)
        return cls(**fields, vad=None if vad is None else VadParams(**vad))


@dataclass
class TranscriptInfo:
    language: str
    duration: float
    type: str = "info"


@dataclass
class Word:
    word: str
    start: float
    end: float
    probability: float


@dataclass
class Segment:
    id: int
    seek: int
    start: float
    end: float
    text: str
    tokens: list[int]
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float
    words: list[Word] | None = None
    type: str = "segment"


Event = TranscriptInfo | Segment
OnEvent = Callable[[Event], None]


def event_from_wire(data: dict[str, Any]) -> Event:
    fields = {k: v for k, v in data.items() if k != "type"}
    if data.get("type") == "info":
        return TranscriptInfo(**fields)
    words = fields.pop("words", None)
    return Segment(**fields, words=None if words is None else [Word(**w) for w in words])


@dataclass
class Transcript:
    """Everything one request produced, gathered for the non-streamed formats."""

    info: TranscriptInfo = field(default_factory=lambda: TranscriptInfo("", 0.0))
    segments: list[Segment] = field(default_factory=list)

    def add(self, event: Event) -> None:
        if isinstance(event, TranscriptInfo):
            self.info = event
        else:
            self.segments.append(event)

    @property
    def text(self) -> str:
        return "".join(s.text for s in self.segments).strip()


class TranscriptionBackend(Protocol):
    """What a library must do to serve speech to text.

    `transcribe` calls `on_event` with one `TranscriptInfo`, then with each `Segment` as it is
    decoded, and returns; it stops early, without error, once `cancelled` is set.
    """

    languages: Sequence[str]
    can_translate: bool

    def transcribe(self, audio: npt.NDArray[np.float32], req: TranscriptionRequest,
                   on_event: OnEvent, cancelled: threading.Event) -> None: ...

    def info(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


class TranscriptionEngine:
    """Checks what only the loaded model can judge, decodes the upload, runs the backend."""

    def __init__(self, backend: TranscriptionBackend):
        self.backend = backend

    def info(self) -> dict[str, Any]:
        return self.backend.info()

    def handlers(self) -> Mapping[str, Handler]:
        return {"transcribe": self._transcribe}

    def close(self) -> None:
        self.backend.close()

    def _transcribe(self, payload: dict[str, Any], emit: Emit,
                    cancelled: threading.Event) -> None:
        from pocketserve.audio.decode import decode_audio

        req = TranscriptionRequest.from_wire(payload)
        self.check(req)
        audio = decode_audio(req.audio, req.max_seconds)
        if not cancelled.is_set():
            self.backend.transcribe(audio, req, lambda event: emit(asdict(event)), cancelled)

    def check(self, req: TranscriptionRequest) -> None:
        if req.task == "translate" and not self.backend.can_translate:
            raise InvalidRequest("This model is English-only and cannot translate; use a "
                                 "multilingual model such as whisper-base.", param="model")
        if req.language is not None and req.language not in self.backend.languages:
            known = ", ".join(self.backend.languages[:12])
            more = "" if len(self.backend.languages) <= 12 else ", ..."
            raise InvalidRequest(f"This model does not support the language {req.language!r}; "
                                 f"it knows: {known}{more}.", param="language",
                                 code="unsupported_language")
