"""Every speech format encodes incrementally and decodes back to the audio that went in."""

from __future__ import annotations

import io
import math
import struct
import wave

import av
import numpy as np
import pytest

from pocketserve.audio.encode import FORMATS, OUTPUT_RATE, open_encoder, wav_header

IN_RATE = 22_050


def tone(seconds: float, rate: int = IN_RATE, hz: float = 440.0) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    return (np.sin(2 * math.pi * hz * t) * 12000).astype("<i2").tobytes()


def decode(data: bytes) -> tuple[str, int, np.ndarray]:
    """(codec, rate, mono float samples) of an encoded file, through PyAV."""
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        chunks = [f.to_ndarray().reshape(-1).astype(np.float64)
                  if f.format.name in ("flt", "fltp", "dbl", "dblp")
                  else f.to_ndarray().reshape(-1) / 32768.0
                  for f in container.decode(stream)]
        return stream.codec_context.name, stream.rate, np.concatenate(chunks)


@pytest.mark.parametrize(("fmt", "codec"), [
    ("mp3", "mp3"), ("opus", "opus"), ("aac", "aac"), ("flac", "flac"), ("wav", "pcm_s16le"),
])
def test_formats_decode_to_the_same_length_and_pitch(fmt: str, codec: str) -> None:
    encoder = open_encoder(fmt, IN_RATE)
    data = b"".join(encoder.feed(tone(1.0)) for _ in range(3)) + encoder.finish()
    name, rate, samples = decode(data)
    assert name.startswith(codec.split("_")[0]) or name == codec
    # Opus always decodes at 48 kHz; the others keep the 24 kHz they were written at.
    assert rate == (48_000 if fmt == "opus" else OUTPUT_RATE)
    assert len(samples) / rate == pytest.approx(3.0, abs=0.1)
    spectrum = np.abs(np.fft.rfft(samples[rate // 2: rate // 2 + rate]))
    assert np.argmax(spectrum) == pytest.approx(440, abs=3)  # 1 s window: 1 Hz per bin


def test_pcm_is_raw_24khz_s16le() -> None:
    encoder = open_encoder("pcm", IN_RATE)
    data = encoder.feed(tone(1.0)) + encoder.finish()
    assert len(data) % 2 == 0
    assert len(data) // 2 == pytest.approx(OUTPUT_RATE, abs=48)
    samples = np.frombuffer(data, "<i2")
    assert 11000 < np.abs(samples).max() <= 12100


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_sentence_yields_bytes_before_the_end(fmt: str) -> None:
    """What makes streaming real: bytes come out per fed chunk, not only at finish()."""
    encoder = open_encoder(fmt, IN_RATE)
    sizes = [len(encoder.feed(tone(1.5))) for _ in range(3)]
    encoder.finish()
    assert all(size > 0 for size in sizes[1:]), sizes
    assert sizes[0] > 0 or fmt == "opus", sizes


def test_streamed_wav_header_reads_until_the_end() -> None:
    encoder = open_encoder("wav", IN_RATE)
    data = encoder.feed(tone(0.5)) + encoder.finish()
    assert data[:4] == b"RIFF" and data[8:16] == b"WAVEfmt "
    assert struct.unpack_from("<I", data, 40)[0] == 0xFFFFFFFF
    with wave.open(io.BytesIO(data)) as reader:
        assert (reader.getframerate(), reader.getnchannels(), reader.getsampwidth()) == (
            OUTPUT_RATE, 1, 2)
        frames = reader.readframes(10**9)
    assert len(frames) // 2 == pytest.approx(OUTPUT_RATE / 2, abs=48)


def test_sized_wav_header() -> None:
    header = wav_header(16_000, data_bytes=320)
    assert len(header) == 44
    assert struct.unpack_from("<I", header, 4)[0] == 36 + 320


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="ogg"):
        open_encoder("ogg", IN_RATE)
