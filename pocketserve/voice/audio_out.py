"""The reply's audio in the client's format, encoded in the API process as speech arrives.

The speech model sends each run of sentences as raw 24 kHz PCM (so the runs join without
gaps or repeated headers); one encoder per reply turns them into one continuous file. wav and
pcm are written by hand; the other formats go through `audio.encode` on a thread, so encoding
never holds up the event loop. A lock keeps a cancelled reply from closing the encoder while a
thread still feeds it.
"""

from __future__ import annotations

import asyncio
import threading

from pocketserve.audio.encode import StreamEncoder, open_encoder, wav_header
from pocketserve.voice.reply import PCM_RATE

WAV_HEADER_BYTES = 44


class AudioOut:
    def __init__(self, fmt: str):
        self.fmt = fmt
        self.pcm_bytes = 0
        self._header = wav_header(PCM_RATE) if fmt == "wav" else b""
        self._encoder: StreamEncoder | None = None
        self._lock = threading.Lock()
        self._closed = False

    @property
    def seconds(self) -> float:
        return self.pcm_bytes / 2 / PCM_RATE

    async def feed(self, pcm: bytes) -> bytes:
        self.pcm_bytes += len(pcm)
        if self.fmt in ("pcm", "wav"):
            out, self._header = self._header + pcm, b""
            return out
        return await asyncio.to_thread(self._locked_feed, pcm)

    async def finish(self) -> bytes:
        if self.fmt in ("pcm", "wav"):
            out, self._header = self._header, b""
            return out
        return await asyncio.to_thread(self._locked_finish)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._encoder is not None:
                self._encoder.close()

    def _locked_feed(self, pcm: bytes) -> bytes:
        with self._lock:
            if self._closed:
                return b""
            if self._encoder is None:
                self._encoder = open_encoder(self.fmt, PCM_RATE)
            return self._encoder.feed(pcm)

    def _locked_finish(self) -> bytes:
        with self._lock:
            if self._closed:
                return b""
            if self._encoder is None:  # no speech at all: a valid, empty file
                self._encoder = open_encoder(self.fmt, PCM_RATE)
            return self._encoder.finish()


def whole_wav(data: bytes) -> bytes:
    """A streamed wav (sizes "until the end") with its real sizes, for a file sent whole."""
    if len(data) < WAV_HEADER_BYTES:
        return data
    return wav_header(PCM_RATE, data_bytes=len(data) - WAV_HEADER_BYTES) + data[WAV_HEADER_BYTES:]
