"""Helpers for the speech-to-text tests: known speech from espeak-ng, encoded test tones, and
word error rate."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest


def espeak(text: str, path: Path, voice: str = "en-us", speed: int = 160) -> Path:
    """Speak `text` to a wav file (22,050 Hz mono) with Debian's espeak-ng."""
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is not installed: run `make install` (it installs it)")
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(path), text],
                   check=True, capture_output=True)
    return path


def tone(seconds: float, rate: int = 44_100, freq: float = 440.0,
         channels: int = 1) -> npt.NDArray[np.float32]:
    t = np.arange(int(seconds * rate)) / rate
    mono = (0.4 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.tile(mono, (channels, 1))


# container format, codec, sample rate the codec accepts
FORMATS: dict[str, tuple[str, str, int]] = {
    "wav": ("wav", "pcm_s16le", 44_100),
    "mp3": ("mp3", "mp3", 44_100),
    "m4a": ("ipod", "aac", 44_100),
    "flac": ("flac", "flac", 44_100),
    "ogg": ("ogg", "libopus", 48_000),
    "webm": ("webm", "libopus", 48_000),
}


def encode(samples: npt.NDArray[np.float32], rate: int, kind: str) -> bytes:
    """Encode planar float samples ([channels, n]) into one of FORMATS with PyAV."""
    import av

    container_format, codec, codec_rate = FORMATS[kind]
    if codec_rate != rate:
        raise ValueError(f"{kind} wants {codec_rate} Hz")
    buf = io.BytesIO()
    layout = "mono" if samples.shape[0] == 1 else "stereo"
    with av.open(buf, mode="w", format=container_format) as out:
        stream = out.add_stream(codec, rate=rate, layout=layout)  # type: ignore[call-overload]
        frame_size = 1024
        for start in range(0, samples.shape[1], frame_size):
            chunk = np.ascontiguousarray(samples[:, start:start + frame_size])
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
            frame.sample_rate = rate
            frame.pts = start
            frame.time_base = Fraction(1, rate)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower().replace("-", " "))


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate: word-level edit distance over the reference's length."""
    ref, hyp = words(reference), words(hypothesis)
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, start=1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, start=1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1] / max(len(ref), 1)
