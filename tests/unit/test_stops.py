"""Stop strings found while the text streams: cut before the string, held back only while a
string may still be forming, and named once matched."""

from __future__ import annotations

import pytest

from pocketserve.backends.llamacpp_chunks import StopWatch
from pocketserve.backends.stops import StopScanner, first_stop, partial_tail
from pocketserve.ops.chat import TextDelta


def run(stops: list[str], pieces: list[str]) -> tuple[list[str], str | None]:
    scanner = StopScanner(stops)
    out = [scanner.feed(p) for p in pieces]
    if scanner.matched is None:
        out.append(scanner.flush())
    return out, scanner.matched


def test_text_without_stops_passes_at_once() -> None:
    assert run(["END"], ["Hello", " world"]) == (["Hello", " world", ""], None)


def test_a_stop_split_across_pieces_is_held_then_cut() -> None:
    out, matched = run(["END"], ["one E", "N", "D two"])
    assert out == ["one ", "", ""] and matched == "END"


def test_a_false_start_is_released() -> None:
    out, matched = run(["END"], ["E", "N", "ough"])
    assert "".join(out) == "ENough" and matched is None
    assert out[:2] == ["", ""]


def test_earliest_stop_wins_and_nothing_follows() -> None:
    scanner = StopScanner(["world", "lo"])
    assert scanner.feed("Hello world") == "Hel"
    assert scanner.matched == "lo"
    assert scanner.feed("more") == ""


@pytest.mark.parametrize(("text", "stops", "tail"), [
    ("abc", ["cd"], 1), ("abc", ["bcd", "c"], 2), ("abc", ["x"], 0), ("", ["ab"], 0),
    ("a", ["abc"], 1)])
def test_partial_tail(text: str, stops: list[str], tail: int) -> None:
    assert partial_tail(text, stops) == tail


def test_first_stop_prefers_the_listed_first_at_one_place() -> None:
    assert first_stop("xab", ["ab", "a"]) == (1, "ab")
    assert first_stop("xab", ["zz"]) is None


def test_watch_cuts_llama_chunks_and_names_the_stop() -> None:
    watch = StopWatch(["\n\n"])
    first = watch.choice({"index": 0, "delta": {"content": "Hi.\n"}, "finish_reason": None})
    assert first["delta"]["content"] == "Hi." and not watch.done
    second = watch.choice({"index": 0, "delta": {"content": "\nNext"}, "finish_reason": None})
    assert second["delta"]["content"] == "" and second["finish_reason"] == "stop"
    events = [TextDelta(0, "", finish_reason="stop")]
    watch.mark(events)
    assert events[0].stop_sequence == "\n\n"


def test_watch_releases_held_text_when_llama_finishes() -> None:
    watch = StopWatch(["STOP"])
    watch.choice({"index": 0, "text": "go S", "finish_reason": None})
    last = watch.choice({"index": 0, "text": "T", "finish_reason": "length"})
    assert last["text"] == "ST" and last["finish_reason"] == "length" and not watch.done


def test_watch_usage_from_timings() -> None:
    watch = StopWatch(["x"])
    watch.observe({"timings": {"cache_n": 3, "prompt_n": 7, "predicted_n": 5}})
    usage = watch.usage()
    assert (usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens) == (10, 5, 3)
