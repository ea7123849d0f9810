"""The tempo change keeps pitch and sample rate; only the duration shrinks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pocketserve.audio.tempo import stretch

RATE = 22_050


def test_faster_tempo_shortens_and_keeps_pitch() -> None:
    t = np.arange(2 * RATE) / RATE
    pcm = (np.sin(2 * math.pi * 300 * t) * 10000).astype("<i2").tobytes()
    out = np.frombuffer(stretch(pcm, RATE, 2.0), "<i2").astype(np.float64)
    assert len(out) / RATE == pytest.approx(1.0, abs=0.03)
    window = out[RATE // 4: RATE // 4 + RATE // 2]
    peak_hz = np.argmax(np.abs(np.fft.rfft(window))) * RATE / len(window)
    assert peak_hz == pytest.approx(300, abs=4)


def test_tempo_one_is_untouched() -> None:
    assert stretch(b"\x01\x00\x02\x00", RATE, 1.0) == b"\x01\x00\x02\x00"
