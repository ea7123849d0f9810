"""srt and vtt output: the exact layout players parse, and times that never go backwards."""

from __future__ import annotations

from dataclasses import dataclass

from pocketserve.audio.subtitles import timestamp, to_srt, to_vtt


@dataclass
class Cue:
    start: float
    end: float
    text: str


def test_timestamps() -> None:
    assert timestamp(0, ",") == "00:00:00,000"
    assert timestamp(3661.2345, ".") == "01:01:01.234"
    assert timestamp(59.9996, ",") == "00:01:00,000"
    assert timestamp(-0.5, ",") == "00:00:00,000"


def test_srt_layout() -> None:
    srt = to_srt([Cue(0.0, 2.5, " Hello there."), Cue(2.5, 4.0, " General Kenobi.")])
    assert srt == ("1\n00:00:00,000 --> 00:00:02,500\nHello there.\n\n"
                   "2\n00:00:02,500 --> 00:00:04,000\nGeneral Kenobi.\n")


def test_vtt_layout() -> None:
    vtt = to_vtt([Cue(0.0, 1.0, " One."), Cue(1.5, 2.0, "Two.")])
    assert vtt == ("WEBVTT\n\n00:00:00.000 --> 00:00:01.000\nOne.\n\n"
                   "00:00:01.500 --> 00:00:02.000\nTwo.\n")


def test_cues_are_cleaned() -> None:
    """Empty segments are dropped, line breaks flattened, times clamped to move forward."""
    srt = to_srt([Cue(5.0, 6.0, "First"), Cue(1.0, 0.5, "Back\n\nwards"), Cue(7, 8, "  ")])
    assert srt == ("1\n00:00:05,000 --> 00:00:06,000\nFirst\n\n"
                   "2\n00:00:05,000 --> 00:00:05,001\nBack wards\n")
