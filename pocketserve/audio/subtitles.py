"""SubRip (srt) and WebVTT text from timed segments, as OpenAI's srt/vtt formats give them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol


class Timed(Protocol):
    @property
    def start(self) -> float: ...
    @property
    def end(self) -> float: ...
    @property
    def text(self) -> str: ...


def timestamp(seconds: float, decimal: str) -> str:
    """HH:MM:SS,mmm (srt) or HH:MM:SS.mmm (vtt); rounded to whole milliseconds."""
    millis = max(0, round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal}{millis:03d}"


def _cues(segments: Iterable[Timed]) -> list[tuple[float, float, str]]:
    """Cues with non-empty text whose times never go backwards and never have zero length.

    Players reject or hide a cue that ends before it starts; Whisper can emit such segments
    (e.g. after VAD re-timing), so each cue is clamped to start no earlier than the last.
    """
    cues: list[tuple[float, float, str]] = []
    last_start = 0.0
    for seg in segments:
        text = " ".join(seg.text.split())  # one line: a blank line would end the cue
        if not text:
            continue
        start = max(seg.start, last_start)
        end = max(seg.end, start + 0.001)
        cues.append((start, end, text))
        last_start = start
    return cues


def to_srt(segments: Iterable[Timed]) -> str:
    blocks = [f"{i}\n{timestamp(s, ',')} --> {timestamp(e, ',')}\n{t}\n"
              for i, (s, e, t) in enumerate(_cues(segments), start=1)]
    return "\n".join(blocks)


def to_vtt(segments: Iterable[Timed]) -> str:
    blocks = [f"{timestamp(s, '.')} --> {timestamp(e, '.')}\n{t}\n"
              for s, e, t in _cues(segments)]
    return "WEBVTT\n\n" + "\n".join(blocks)
