"""Sentence splitting decides where speech pauses and how soon the first audio leaves."""

# ruff: noqa: RUF001  (IPA and CJK punctuation are the point of these tests)

from __future__ import annotations

import pytest

from pocketserve.engines.sentences import last_sentence_end, quick_start, split_sentences


@pytest.mark.parametrize(("text", "expected"), [
    ("Hello, world. How are you? I'm fine!", ["Hello, world.", "How are you?", "I'm fine!"]),
    ("Dr. Smith paid $3.50 for e.g. coffee. Then he left.",
     ["Dr. Smith paid $3.50 for e.g. coffee.", "Then he left."]),
    ("J. R. R. Tolkien wrote books. I said no. Fine.",
     ["J. R. R. Tolkien wrote books.", "I said no.", "Fine."]),
    ('She said, "Go now." Then she left.', ['She said, "Go now."', "Then she left."]),
    ("Wait... what?! Really.", ["Wait... what?!", "Really."]),
    ("Version 3.5 is out. Sums like 1,000.50 stay whole.",
     ["Version 3.5 is out.", "Sums like 1,000.50 stay whole."]),
    ("你好。我很好！谢谢？", ["你好。", "我很好！", "谢谢？"]),
])
def test_sentences(text: str, expected: list[str]) -> None:
    assert split_sentences(text) == expected


def test_paragraphs_headings_and_list_items_are_separate() -> None:
    text = "Title Here\nThe body starts here.\n\nThe list:\n- one\n- two"
    assert split_sentences(text) == ["Title Here", "The body starts here.", "The list:",
                                     "- one", "- two"]


def test_hard_wrapped_prose_is_one_sentence() -> None:
    text = "Hard wrapped text that goes on\nand on across lines without\nstopping anywhere"
    assert split_sentences(text) == [
        "Hard wrapped text that goes on and on across lines without stopping anywhere"]


def test_long_sentences_are_cut_at_clauses_then_words() -> None:
    clause = "word " * 30 + "end, "
    parts = split_sentences(clause * 6, max_chars=300)
    assert all(len(p) <= 300 for p in parts)
    assert len(parts) >= 3
    assert all(p.endswith(",") for p in parts[:-1])
    assert " ".join(parts).split() == (clause * 6).split()
    unbroken = split_sentences("x" * 700, max_chars=300)
    assert [len(p) for p in unbroken] == [300, 300, 100]


@pytest.mark.parametrize("text", ["", "   ", "...", "\n\n", "?!"])
def test_nothing_to_speak(text: str) -> None:
    assert split_sentences(text) == []


def test_quick_start_cuts_only_a_long_first_sentence() -> None:
    comma = "The library opens at nine in the morning, and it closes at six in the evening."
    assert quick_start([comma, "Second."]) == [
        "The library opens at nine in the morning,",
        "and it closes at six in the evening.", "Second."]
    conjunction = "The library opens at nine in the morning and closes at six in the evening."
    assert quick_start([conjunction]) == [
        "The library opens at nine in the morning", "and closes at six in the evening."]
    assert quick_start(["Short, first.", comma]) == ["Short, first.", comma]
    no_cut = "word " * 30
    assert quick_start([no_cut]) == [no_cut]


@pytest.mark.parametrize("text, end", [
    ("Hello there. How", len("Hello there.")),
    ("Hello there.", 0),  # the next words may still say it was no end
    ("Ask Dr. Smith", 0),
    ("It costs 3.5 euros. Then", len("It costs 3.5 euros.")),
    ("First line\nsecond", len("First line\n")),
    ("Really?! Yes. No", len("Really?! Yes.")),
])
def test_last_sentence_end_of_text_still_being_written(text: str, end: int) -> None:
    assert last_sentence_end(text) == end
