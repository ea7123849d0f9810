"""Phonemes in the form Piper voices were trained on: IPA with stress, clause punctuation."""

# ruff: noqa: RUF001  (IPA and CJK punctuation are the point of these tests)

from __future__ import annotations

import unicodedata

import pytest

from pocketserve.backends.espeak_ipa import EspeakPhonemizer, split_clauses


def test_clauses_keep_their_punctuation() -> None:
    assert split_clauses('Well, she said: "Dr. Smith is here; e.g. now?"') == [
        ("Well,", ","), ("she said:", ":"), ('"Dr. Smith is here;', ";"),
        ('e.g. now?"', "?"),
    ]
    assert split_clauses("No mark at the end") == [("No mark at the end", "")]
    assert split_clauses("Wait...") == [("Wait...", ".")]
    assert split_clauses(", , .") == []


@pytest.fixture(scope="module")
def phonemizer() -> EspeakPhonemizer:
    return EspeakPhonemizer("en-us")


def test_phonemes_have_stress_and_clause_marks(phonemizer: EspeakPhonemizer) -> None:
    ipa = unicodedata.normalize("NFC", phonemizer.phonemize("Hello, world; how are you?"))
    assert ipa == "həlˈoʊ, wˈɜːld; hˈaʊ ɑːɹ juː?"


def test_phonemes_are_decomposed(phonemizer: EspeakPhonemizer) -> None:
    ipa = phonemizer.phonemize("The café is nice.")
    assert ipa == unicodedata.normalize("NFD", ipa)


def test_a_clause_espeak_cuts_further_still_maps(phonemizer: EspeakPhonemizer) -> None:
    """espeak-ng ends a clause after "Dr."; the pieces are joined back into our clause."""
    ipa = unicodedata.normalize("NFC", phonemizer.phonemize("Dr. Smith paid, then left."))
    assert ipa.startswith("dˈɑːktɚ smˈɪθ pˈeɪd, ")
    assert ipa.endswith(".")


def test_numbers_are_read_out(phonemizer: EspeakPhonemizer) -> None:
    assert "θɹˈiː" in phonemizer.phonemize("3 apples.")
