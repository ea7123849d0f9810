"""Silero VAD (the model inside faster-whisper) run as a stream: window by window as audio
arrives, its recurrent state and 64-sample context kept between calls.

faster-whisper's own `SileroVADModel.__call__` judges a whole recording at once (state reset
per call); feeding its ONNX session ourselves in chunks gives the same probabilities (checked
against it in the tests) without re-running what came before. Pinned to faster-whisper 1.2.1's
v6 model: inputs `input` [n, 64 + 512], `h`, `c`; outputs probabilities, `hn`, `cn`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from pocketserve.engines.turns import WINDOW

_CONTEXT = 64


class StreamingSilero:
    """One stream's VAD: call it with windows [n, 512] in order; returns n probabilities."""

    def __init__(self, session: Any | None = None):
        if session is None:
            from faster_whisper.vad import get_vad_model

            session = get_vad_model().session  # shared read-only; the state here is ours
        self._session = session
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._context = np.zeros(_CONTEXT, dtype=np.float32)

    def __call__(self, windows: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        if windows.ndim != 2 or windows.shape[1] != WINDOW:
            raise ValueError(f"windows must have shape [n, {WINDOW}]")
        if not len(windows):
            return np.zeros(0, dtype=np.float32)
        contexts = np.concatenate([self._context[None, :], windows[:-1, -_CONTEXT:]])
        batch = np.concatenate([contexts, windows], axis=1).astype(np.float32, copy=False)
        out, self._h, self._c = self._session.run(None, {"input": batch, "h": self._h,
                                                         "c": self._c})
        self._context = windows[-1, -_CONTEXT:].copy()
        return np.asarray(out, dtype=np.float32).reshape(-1)
