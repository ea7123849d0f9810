"""Speech to text: the request, the streamed events, and the engine the worker calls.

The worker receives the uploaded file's bytes and decodes them itself (`audio.decode`), so the
HTTP process never runs decode-heavy code and a codec crash stays inside the model's process.
A backend gets 16 kHz mono samples and reports one `TranscriptInfo`, then each `Segment` as
soon as it is decoded, which is what makes `stream=true` useful on long audio.
"""

from __future__ import annotations

import io
import threading
import wave
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, cast

from pocketserve.engines.base import Call, Emit, Served, Warmup, serve
from pocketserve.errors import InvalidRequest
from pocketserve.ops.transcription import (
    LISTEN,
    TRANSCRIBE,
    ListenRequest,
    Segment,
    TranscriptEvent,
    TranscriptInfo,
    TranscriptionRequest,
)

if TYPE_CHECKING:  # the API process imports this module; it needs no numpy
    import numpy as np
    import numpy.typing as npt

OnEvent = Callable[[TranscriptEvent], None]


@dataclass
class Transcript:
    """Everything one request produced, gathered for the non-streamed formats."""

    info: TranscriptInfo = field(default_factory=lambda: TranscriptInfo("", 0.0))
    segments: list[Segment] = field(default_factory=list)

    def add(self, event: TranscriptEvent) -> None:
        if isinstance(event, TranscriptInfo):
            self.info = event
        elif isinstance(event, Segment):
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

    def operations(self) -> Sequence[Served[Any, Any]]:
        served: list[Served[Any, Any]] = [serve(TRANSCRIBE, self._transcribe)]
        if hasattr(self.backend, "speech_probabilities"):  # a VAD: live audio too
            served.append(serve(LISTEN, self._listen))
        return served

    def warmups(self) -> Sequence[Warmup[Any]]:
        # One fixed temperature: on silence, the default fallback would retry at every one.
        return [Warmup(TRANSCRIBE, TranscriptionRequest(audio=silent_wav(), temperature=0.2))]

    def close(self) -> None:
        self.backend.close()

    def _transcribe(self, req: TranscriptionRequest, emit: Emit, call: Call) -> None:
        from pocketserve.audio.decode import decode_audio

        self.check(req)
        audio = decode_audio(req.audio, req.max_seconds)
        if not call.cancelled.is_set():
            self.backend.transcribe(audio, req, emit, call.cancelled)

    def _listen(self, req: ListenRequest, emit: Emit, call: Call) -> None:
        from pocketserve.engines.listen import ListenBackend, listen

        if req.language is not None and req.language not in self.backend.languages:
            raise InvalidRequest(f"This model does not support the language {req.language!r}.",
                                 param="language", code="unsupported_language")
        listen(cast(ListenBackend, self.backend), req, emit, call)

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


def silent_wav(seconds: float = 1.0, rate: int = 16_000) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(b"\0\0" * int(seconds * rate))
    return out.getvalue()
