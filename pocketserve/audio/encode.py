"""Encode a stream of 16-bit mono PCM into OpenAI's speech formats, chunk by chunk.

Every format leaves at 24 kHz mono, as OpenAI's do. For `pcm` (raw, no header) that rate is a
contract clients rely on, so we resample there, and the other formats follow for one rule.
PyAV (FFmpeg's libraries inside the wheel, no system ffmpeg) encodes mp3, ogg/opus, aac (ADTS)
and flac incrementally; wav and pcm are written by hand. A streamed wav cannot know its
length, so its RIFF and data sizes are 0xFFFFFFFF ("until the end"), as streaming servers do.
"""

from __future__ import annotations

import struct
from typing import Any, Literal, Protocol, cast, get_args

AudioFormat = Literal["mp3", "opus", "aac", "flac", "wav", "pcm"]
FORMATS: tuple[str, ...] = get_args(AudioFormat)
OUTPUT_RATE = 24_000

MEDIA_TYPES: dict[str, str] = {
    "mp3": "audio/mpeg", "opus": "audio/ogg", "aac": "audio/aac", "flac": "audio/flac",
    "wav": "audio/wav", "pcm": "audio/pcm",
}

# format -> (container, codec, bit rate or 0 for lossless, container options)
_AV_FORMATS: dict[str, tuple[str, str, int, dict[str, str]]] = {
    "mp3": ("mp3", "libmp3lame", 64_000, {}),
    # Ogg holds packets until a page is full (1 s by default); 100 ms pages keep it streaming.
    "opus": ("ogg", "libopus", 32_000, {"page_duration": "100000"}),
    "aac": ("adts", "aac", 64_000, {}),
    "flac": ("flac", "flac", 0, {}),
}


class StreamEncoder(Protocol):
    """Takes PCM as it is synthesized and returns whatever encoded bytes are ready."""

    def feed(self, pcm: bytes) -> bytes: ...

    def finish(self) -> bytes: ...

    def close(self) -> None: ...


def open_encoder(fmt: str, input_rate: int, output_rate: int = OUTPUT_RATE) -> StreamEncoder:
    """An encoder for `fmt` fed with s16le mono PCM at `input_rate`."""
    if fmt in ("wav", "pcm"):
        return _RawEncoder(input_rate, output_rate, header=fmt == "wav")
    if fmt in _AV_FORMATS:
        return _AvEncoder(fmt, input_rate, output_rate)
    raise ValueError(f"unknown audio format {fmt!r}")


def wav_header(rate: int, channels: int = 1, data_bytes: int = 0xFFFFFFFF) -> bytes:
    """A 44-byte PCM s16le WAV header; the default sizes mean "read until the end"."""
    riff = 0xFFFFFFFF if data_bytes == 0xFFFFFFFF else 36 + data_bytes
    block = channels * 2
    return (b"RIFF" + struct.pack("<I", riff) + b"WAVEfmt "
            + struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * block, block, 16)
            + b"data" + struct.pack("<I", data_bytes))


class _Resampler:
    """libswresample through PyAV; keeps its filter state between chunks (no clicks)."""

    def __init__(self, input_rate: int, output_rate: int, sample_format: str):
        import av

        self.input_rate = input_rate
        self._resampler = av.AudioResampler(format=sample_format, layout="mono",
                                            rate=output_rate)

    def frames(self, pcm: bytes | None) -> list[Any]:
        if pcm is None:
            return list(self._resampler.resample(None))
        import av
        import numpy as np

        samples = np.frombuffer(pcm, dtype="<i2").reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = self.input_rate
        return list(self._resampler.resample(frame))


class _RawEncoder:
    def __init__(self, input_rate: int, output_rate: int, header: bool):
        self._resampler = _Resampler(input_rate, output_rate, "s16")
        self._pending_header = wav_header(output_rate) if header else b""

    def feed(self, pcm: bytes) -> bytes:
        return self._take(self._resampler.frames(pcm))

    def finish(self) -> bytes:
        return self._take(self._resampler.frames(None))

    def _take(self, frames: list[Any]) -> bytes:
        out = self._pending_header + b"".join(bytes(f.planes[0])[: f.samples * 2]
                                              for f in frames)
        self._pending_header = b""
        return out

    def close(self) -> None:
        return None


class _Sink:
    """A write-only file for the muxer; we take what it wrote after each chunk."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: Any) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        out = b"".join(self._parts)
        self._parts.clear()
        return out


class _AvEncoder:
    def __init__(self, fmt: str, input_rate: int, output_rate: int):
        import av

        container, codec, bit_rate, options = _AV_FORMATS[fmt]
        self._sink = _Sink()
        self._out: Any = cast(Any, av.open(self._sink, "w", format=container, buffer_size=4096,
                                           options={"flush_packets": "1", **options}))
        self._stream: Any = cast(Any, self._out.add_stream(codec, rate=output_rate))
        self._stream.layout = "mono"
        if bit_rate:
            self._stream.bit_rate = bit_rate
        sample_format = self._stream.codec_context.format.name
        self._resampler = _Resampler(input_rate, output_rate, sample_format)
        self._closed = False

    def feed(self, pcm: bytes) -> bytes:
        self._encode(self._resampler.frames(pcm))
        return self._sink.take()

    def finish(self) -> bytes:
        self._encode(self._resampler.frames(None))
        for packet in self._stream.encode(None):
            self._out.mux(packet)
        self.close()
        return self._sink.take()

    def _encode(self, frames: list[Any]) -> None:
        for frame in frames:
            for packet in self._stream.encode(frame):
                self._out.mux(packet)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._out.close()
