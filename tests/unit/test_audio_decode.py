"""Decoding uploads: every promised container, resampling, and every bad upload as a 400."""

from __future__ import annotations

import numpy as np
import pytest

from pocketserve.audio.decode import SAMPLE_RATE, decode_audio
from pocketserve.errors import InvalidRequest
from tests.stt_helpers import FORMATS, encode, tone


def _dominant_hz(audio: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(audio))
    return float(np.argmax(spectrum) * SAMPLE_RATE / audio.size)


@pytest.mark.parametrize("kind", sorted(FORMATS))
def test_each_container_decodes_to_16k_mono(kind: str) -> None:
    rate = FORMATS[kind][2]
    data = encode(tone(2.0, rate, freq=440.0, channels=2), rate, kind)
    audio = decode_audio(data)
    assert audio.dtype == np.float32 and audio.ndim == 1
    # Lossy codecs add encoder padding, so allow a little extra.
    assert 1.95 * SAMPLE_RATE <= audio.size <= 2.15 * SAMPLE_RATE
    assert abs(_dominant_hz(audio) - 440.0) < 5.0
    assert 0.2 < float(np.max(np.abs(audio))) < 0.6  # stereo mixed down, not summed


def test_resamples_from_any_rate() -> None:
    data = encode(tone(1.0, 44_100, freq=1000.0), 44_100, "wav")
    audio = decode_audio(data)
    assert audio.size == SAMPLE_RATE
    assert abs(_dominant_hz(audio) - 1000.0) < 5.0


@pytest.mark.parametrize("data, code", [
    (b"", "empty_file"),
    (b"hello, this is a text file and not audio at all\n" * 20, "invalid_audio"),
    (np.random.default_rng(0).bytes(4096), "invalid_audio"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 200, "invalid_audio"),
])
def test_bad_uploads_are_invalid_requests(data: bytes, code: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        decode_audio(data)
    assert info.value.param == "file" and info.value.code == code


def test_too_long_names_the_limit() -> None:
    data = encode(tone(6.0, 44_100), 44_100, "flac")
    with pytest.raises(InvalidRequest) as info:
        decode_audio(data, max_seconds=5)
    assert info.value.code == "audio_too_long" and "5 seconds" in info.value.message
    assert decode_audio(data, max_seconds=7).size == 6 * SAMPLE_RATE


def test_too_long_without_declared_duration_stops_while_decoding() -> None:
    """A raw stream (mp3 without a header giving its length) is counted as it decodes."""
    data = encode(tone(4.0, 44_100), 44_100, "mp3")
    with pytest.raises(InvalidRequest) as info:
        decode_audio(data[len(data) // 8:], max_seconds=1)  # headerless tail of the stream
    assert info.value.code == "audio_too_long"
