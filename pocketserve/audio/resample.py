"""Live s16le PCM to 16 kHz float32, chunk by chunk, for the VAD and Whisper.

libswresample through PyAV keeps its filter state between chunks, so a stream cut into any
pieces resamples as one (no clicks at the seams).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

TARGET_RATE = 16_000


class PcmTo16k:
    def __init__(self, input_rate: int):
        import av

        self.input_rate = input_rate
        self._resampler: Any = None if input_rate == TARGET_RATE else av.AudioResampler(
            format="flt", layout="mono", rate=TARGET_RATE)

    def feed(self, pcm: bytes) -> npt.NDArray[np.float32]:
        samples = np.frombuffer(pcm, dtype="<i2")
        if self._resampler is None:
            return samples.astype(np.float32) / 32768.0
        if not len(samples):
            return np.zeros(0, dtype=np.float32)
        import av

        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self.input_rate
        return self._take(self._resampler.resample(frame))

    def finish(self) -> npt.NDArray[np.float32]:
        if self._resampler is None:
            return np.zeros(0, dtype=np.float32)
        return self._take(self._resampler.resample(None))

    @staticmethod
    def _take(frames: list[Any]) -> npt.NDArray[np.float32]:
        if not frames:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate([f.to_ndarray().reshape(-1) for f in frames]).astype(
            np.float32, copy=False)
