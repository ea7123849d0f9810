"""Stop strings found by us rather than by llama.cpp: its OpenAI-shaped stream says that a
choice stopped, but not which string stopped it, and Anthropic's answer must name it.

A `StopScanner` watches one choice's text as it streams. It passes on at once what can no
longer be part of a stop string, holds back a tail that may still become one (shorter than the
longest stop string), and at the first stop string cuts the text before it: the string itself
is never output, as with llama.cpp's own stop strings.
"""

from __future__ import annotations

from collections.abc import Sequence


class StopScanner:
    def __init__(self, stops: Sequence[str]):
        self.stops = [s for s in stops if s]
        self.held = ""
        self.matched: str | None = None

    def feed(self, text: str) -> str:
        """The text safe to pass on now; once a stop string appeared, what preceded it, and
        after that nothing."""
        if self.matched is not None:
            return ""
        text = self.held + text
        found = first_stop(text, self.stops)
        if found is not None:
            at, self.matched = found
            self.held = ""
            return text[:at]
        keep = partial_tail(text, self.stops)
        self.held = text[len(text) - keep:]
        return text[:len(text) - keep]

    def flush(self) -> str:
        """What is held back, when the text ends without a stop string."""
        held, self.held = self.held, ""
        return held


def first_stop(text: str, stops: Sequence[str]) -> tuple[int, str] | None:
    """Where the earliest stop string starts in `text`, and which (the first listed, where
    two start at the same place)."""
    best: tuple[int, str] | None = None
    for stop in stops:
        at = text.find(stop)
        if at >= 0 and (best is None or at < best[0]):
            best = (at, stop)
    return best


def partial_tail(text: str, stops: Sequence[str]) -> int:
    """How many characters at the end of `text` are the start of some stop string: the
    longest tail that starts with a stop string's first character and begins that string."""
    longest = 0
    for stop in stops:
        tail = text[len(text) - min(len(stop) - 1, len(text)):]
        at = tail.find(stop[0])
        while at >= 0 and len(tail) - at > longest:
            if stop.startswith(tail[at:]):
                longest = len(tail) - at
                break
            at = tail.find(stop[0], at + 1)
    return longest
