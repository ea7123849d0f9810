"""Turn detection on live audio: where an utterance starts and stops, from VAD probabilities.

Plain Python over numpy, with the voice-activity model passed in as a function, so the rules
are tested on synthetic audio without any model. Audio is 16 kHz mono float32, judged in
windows of 512 samples (32 ms, Silero's window). Speech starts on the first window whose
probability reaches `threshold`; it stops once the probability has stayed below
`threshold - 0.15` (faster-whisper's hysteresis) for `silence_duration_ms`. The utterance
carries `prefix_padding_ms` of the audio before its start, and the silence that ended it. A turn
longer than `max_turn_s` is cut there, so one that never pauses cannot grow without bound.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pocketserve.ops.transcription import TurnDetection

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    Samples = npt.NDArray[np.float32]

RATE = 16_000
WINDOW = 512
SpeechProbabilities = Callable[["Samples"], "Samples"]
"""Windows of shape [n, WINDOW] in order -> one speech probability each; keeps its own state
between calls, as a streaming VAD does."""


@dataclass
class Started:
    start_ms: int


@dataclass
class Stopped:
    start_ms: int
    end_ms: int
    audio: Samples
    voiced: int  # windows at or above the threshold in the turn


Turn = Started | Stopped


class TurnDetector:
    def __init__(self, params: TurnDetection, probabilities: SpeechProbabilities,
                 max_turn_s: float | None = None):
        self.params = params
        self._max_windows = None if max_turn_s is None else max(1, int(max_turn_s * RATE
                                                                        // WINDOW))
        self._probabilities = probabilities
        self._neg_threshold = max(params.threshold - 0.15, 0.01)
        import numpy as np

        self._np = np
        self._pending: Samples = np.zeros(0, dtype=np.float32)
        self._prefix: deque[Samples] = deque(maxlen=-(-params.prefix_padding_ms * RATE
                                                      // (1000 * WINDOW)))
        self._speech: list[Samples] | None = None
        self._start_ms = 0
        self._silence_ms = 0.0
        self._voiced = 0
        self._seen = 0  # samples judged so far

    @property
    def speaking(self) -> bool:
        return self._speech is not None

    @property
    def silence_ms(self) -> float:
        """How long the turn in progress has been silent (0 when none is)."""
        return self._silence_ms if self._speech is not None else 0.0

    @property
    def voiced(self) -> int:
        """Windows at or above the threshold in the turn in progress: unchanged between two
        moments means no speech came between them."""
        return self._voiced

    @property
    def start_ms(self) -> int:
        """Where the utterance going on (or the last one) started."""
        return self._start_ms

    def heard(self) -> Samples | None:
        """The utterance going on so far (None between utterances): what a partial hears."""
        return None if self._speech is None else self._np.concatenate(self._speech)

    def heard_samples(self) -> int:
        return 0 if self._speech is None else len(self._speech) * WINDOW

    def feed(self, samples: Samples) -> list[Turn]:
        """More audio; the turns it completed or began, in order."""
        np = self._np
        pending = np.concatenate([self._pending, samples.astype(np.float32, copy=False)])
        whole = len(pending) // WINDOW * WINDOW
        self._pending = pending[whole:]
        if not whole:
            return []
        windows = pending[:whole].reshape(-1, WINDOW)
        turns: list[Turn] = []
        for window, p in zip(windows, self._probabilities(windows), strict=True):
            turn = self._step(window, float(p))
            if turn is not None:
                turns.append(turn)
        return turns

    def finish(self) -> list[Turn]:
        """The input ended: an utterance still going on stops here."""
        if self._speech is None:
            return []
        self._speech.append(self._pending)
        self._seen += len(self._pending)
        self._pending = self._pending[:0]
        return [self._stop()]

    def _step(self, window: Samples, p: float) -> Turn | None:
        start = self._seen
        self._seen += WINDOW
        if self._speech is None:
            if p < self.params.threshold:
                self._prefix.append(window)
                return None
            prefix = list(self._prefix)
            self._prefix.clear()
            self._speech = [*prefix, window]
            self._start_ms = (start - WINDOW * len(prefix)) * 1000 // RATE
            self._silence_ms = 0.0
            self._voiced = 1
            return Started(self._start_ms)
        self._speech.append(window)
        if self._max_windows is not None and len(self._speech) >= self._max_windows:
            return self._stop()  # too long to hold: cut here; speech goes on as a new turn
        if p >= self.params.threshold:
            self._silence_ms = 0.0
            self._voiced += 1
        elif p < self._neg_threshold:
            self._silence_ms += WINDOW * 1000 / RATE
            if self._silence_ms >= self.params.silence_duration_ms:
                return self._stop()
        return None

    def _stop(self) -> Stopped:
        assert self._speech is not None
        audio = self._np.concatenate(self._speech)
        self._speech = None
        return Stopped(self._start_ms, self._seen * 1000 // RATE, audio, self._voiced)
