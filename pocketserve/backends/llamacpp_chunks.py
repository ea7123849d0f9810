"""llama.cpp's streamed OpenAI-shaped chunks as the seam's chat events."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from pocketserve.backends.chat_stream import ChoiceParser
from pocketserve.backends.stops import StopScanner
from pocketserve.ops.chat import (
    MAX_NAMED_STOP_CHARS,
    ChatEvent,
    ReasoningDelta,
    SamplingParams,
    TextDelta,
    TokenLogprob,
    TopLogprob,
)
from pocketserve.ops.common import Usage


class ChoiceParsers:
    """A ChoiceParser per choice index, fed from llama.cpp's streamed choices."""

    def __init__(self, *, reasoning: bool, tools: Collection[str] = (),
                 in_thought: bool = False):
        self.reasoning, self.tools, self.in_thought = reasoning, tools, in_thought
        self._by_index: dict[int, ChoiceParser] = {}

    def events(self, choice: dict[str, Any]) -> list[ChatEvent]:
        index = int(choice.get("index", 0))
        parser = self._by_index.get(index)
        if parser is None:
            parser = self._by_index[index] = ChoiceParser(
                index, reasoning=self.reasoning, tools=self.tools, in_thought=self.in_thought)
        delta = choice.get("delta") or {}
        text = (delta.get("content") if "delta" in choice else choice.get("text")) or ""
        out: list[ChatEvent] = []
        if delta.get("reasoning_content"):  # llama.cpp split the thought out itself
            out.append(ReasoningDelta(index, str(delta["reasoning_content"])))
        out += parser.feed(text, _logprobs(choice))
        finish = choice.get("finish_reason")
        if finish is not None:
            out += parser.finish("length" if finish == "length" else "stop")
        return out


class UsageSum:
    """llama.cpp reports usage once per choice; OpenAI counts the prompt once, output summed."""

    def __init__(self) -> None:
        self.prompt = 0
        self.completion = 0
        self.cached = 0

    def add(self, usage: dict[str, Any]) -> None:
        self.prompt = max(self.prompt, int(usage.get("prompt_tokens", 0)))
        self.completion += int(usage.get("completion_tokens", 0))
        details = usage.get("prompt_tokens_details") or {}
        self.cached = max(self.cached, int(details.get("cached_tokens", 0)))

    def total(self) -> Usage:
        return Usage(self.prompt, self.completion, self.cached)


def plain_events(choice: dict[str, Any]) -> list[ChatEvent]:
    """One choice's chunk as at most one TextDelta, when nothing needs splitting."""
    if "delta" in choice:
        text = (choice["delta"] or {}).get("content") or ""
    else:
        text = choice.get("text") or ""
    finish = choice.get("finish_reason")
    logprobs = _logprobs(choice)
    if not text and finish is None and logprobs is None:
        return []
    return [TextDelta(index=int(choice.get("index", 0)), text=text, logprobs=logprobs,
                      finish_reason="length" if finish == "length" else finish and "stop")]


def _logprobs(choice: dict[str, Any]) -> list[TokenLogprob] | None:
    raw = (choice.get("logprobs") or {}).get("content")
    return None if raw is None else [
        TokenLogprob(
            token=lp["token"], logprob=float(lp["logprob"]), bytes=lp.get("bytes"),
            top=[TopLogprob(t["token"], float(t["logprob"]), t.get("bytes"))
                 for t in lp.get("top_logprobs", ())],
        )
        for lp in raw
    ]


def own_stops(s: SamplingParams) -> list[str]:
    """The stop strings watched here (StopWatch) rather than by llama.cpp, which does not say
    which one matched: all of them, where one sequence is decoded and no logprobs are asked
    for (a held-back piece of text would part from its logprobs), and none is long."""
    watched = s.n == 1 and not s.logprobs and all(len(t) <= MAX_NAMED_STOP_CHARS
                                                   for t in s.stop)
    return s.stop if watched else []


class StopWatch:
    """The request's stop strings over llama.cpp's streamed choices, found here (see stops.py)
    so the choice's last delta can name the one that matched. One choice only (n = 1): once a
    string matches, the whole request is stopped.

    llama.cpp's usage comes in its last chunk, which a stopped request never gets; with
    `timings_per_token` every chunk carries its token counts, and the last seen are the usage.
    """

    def __init__(self, stops: list[str]):
        self.scanner = StopScanner(stops)
        self.timings: dict[str, Any] = {}

    @property
    def done(self) -> bool:
        return self.scanner.matched is not None

    def choice(self, choice: dict[str, Any]) -> dict[str, Any]:
        """The choice with its text cut by the stop strings; the one a string ended gets
        finish_reason "stop", and text held back is released when llama.cpp finishes."""
        chat = "delta" in choice
        text = ((choice["delta"] or {}).get("content") if chat else choice.get("text")) or ""
        finish = choice.get("finish_reason")
        out = self.scanner.feed(text)
        if self.done:
            finish = "stop"
        elif finish is not None:
            out += self.scanner.flush()
        cut = {**choice, "finish_reason": finish}
        if chat:
            cut["delta"] = {**(choice["delta"] or {}), "content": out}
        else:
            cut["text"] = out
        return cut

    def mark(self, events: list[ChatEvent]) -> None:
        """Name the matched stop string on the choice's finishing delta."""
        if self.done:
            for event in events:
                if isinstance(event, TextDelta) and event.finish_reason is not None:
                    event.stop_sequence = self.scanner.matched

    def observe(self, chunk: dict[str, Any]) -> None:
        if isinstance(chunk.get("timings"), dict):
            self.timings = chunk["timings"]

    def usage(self) -> Usage:
        """Tokens so far: the prompt (evaluated plus reused from the cache) and generated."""
        cached = int(self.timings.get("cache_n", 0))
        prompt = int(self.timings.get("prompt_n", 0)) + cached
        return Usage(prompt, int(self.timings.get("predicted_n", 0)), cached)
