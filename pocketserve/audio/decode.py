"""Any common audio file (wav, mp3, m4a/aac, flac, ogg/opus, webm) to 16 kHz mono float32.

PyAV carries its own FFmpeg libraries, so no system ffmpeg is needed. Every way an upload can
be unusable (empty, not audio, corrupt, too long) becomes an `InvalidRequest` naming `file`,
so a bad upload is a 400 and never a 500. Decoding stops as soon as the duration limit is
passed, so a small file that expands to hours of audio costs little.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

from pocketserve.errors import InvalidRequest

SAMPLE_RATE = 16_000
_BAD_PACKETS_ALLOWED = 8  # damaged frames skipped before the whole file counts as corrupt


def decode_audio(data: bytes, max_seconds: float | None = None,
                 sample_rate: int = SAMPLE_RATE) -> npt.NDArray[np.float32]:
    """The first audio stream of `data`, mixed to mono and resampled to `sample_rate`."""
    import av  # imported here: only worker processes decode

    if not data:
        raise InvalidRequest("The uploaded file is empty.", param="file", code="empty_file")
    try:
        container = av.open(io.BytesIO(data), mode="r", metadata_errors="ignore")
    except (av.FFmpegError, ValueError, OSError) as exc:
        raise _not_audio(exc) from exc
    with container:
        if not container.streams.audio:
            raise InvalidRequest("The uploaded file has no audio stream.", param="file",
                                 code="invalid_audio")
        stream = container.streams.audio[0]
        _check_declared_duration(container, max_seconds)
        limit = None if max_seconds is None else int(max_seconds * sample_rate)
        chunks = list(_resampled(container, stream, sample_rate, limit))
    audio = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
    if audio.size == 0:
        raise InvalidRequest("The uploaded file contains no decodable audio.", param="file",
                             code="invalid_audio")
    return audio


def _resampled(container: Any, stream: Any, rate: int,
               limit: int | None) -> Iterator[npt.NDArray[np.float32]]:
    import av

    resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
    total = 0
    bad = 0
    for packet in container.demux(stream):
        try:
            frames = packet.decode()
        except av.error.InvalidDataError as exc:
            bad += 1  # FFmpeg's own players skip a damaged frame; so do we, up to a point
            if bad > _BAD_PACKETS_ALLOWED:
                raise _not_audio(exc) from exc
            continue
        except av.FFmpegError as exc:
            raise _not_audio(exc) from exc
        for frame in frames:
            for out in resampler.resample(frame):
                samples = out.to_ndarray().reshape(-1).astype(np.float32, copy=False)
                total += samples.size
                if limit is not None and total > limit:
                    raise _too_long(limit / rate)
                yield samples
    for out in resampler.resample(None):
        yield out.to_ndarray().reshape(-1).astype(np.float32, copy=False)


def _check_declared_duration(container: Any, max_seconds: float | None) -> None:
    """Refuse at once when the container says it is too long (often known from headers)."""
    if max_seconds is None or container.duration is None:
        return
    declared = container.duration / 1_000_000  # AV_TIME_BASE units
    if declared > max_seconds + 1.0:  # headers can be slightly off; decoding counts exactly
        raise _too_long(max_seconds)


def _too_long(max_seconds: float) -> InvalidRequest:
    return InvalidRequest(
        f"The audio is longer than the limit of {max_seconds:g} seconds.",
        param="file", code="audio_too_long")


def _not_audio(exc: Exception) -> InvalidRequest:
    return InvalidRequest(
        "The uploaded file could not be decoded as audio (supported: wav, mp3, m4a/aac, flac, "
        f"ogg/opus, webm): {getattr(exc, 'strerror', None) or exc}.", param="file",
        code="invalid_audio")
