"""Split text into sentences, the unit that speech is synthesized and streamed in.

Why sentences: Piper speaks one utterance per call, and its prosody is trained on sentences;
a long input given whole is both slower to start and noticeably faster and less clear. Small
units also let the first audio leave early and a cancelled request stop soon.
"""

from __future__ import annotations

import re

MAX_SENTENCE_CHARS = 300
"""Longer sentences are cut at a clause or word boundary so no single call runs too long."""

# Words ending in "." that rarely end a sentence (titles, common abbreviations). Words that
# also end sentences ("no", "etc.", "Inc.") are left out: a wrong cut costs less than a merge.
_ABBREVIATIONS = frozenset({
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "vs", "e.g", "i.e", "fig", "figs",
    "approx", "dept", "jan", "feb", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov",
    "ave", "blvd",
})
_TITLES = frozenset({
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "gen", "col", "lt", "sgt", "capt",
    "rev", "hon",
})

_CLOSERS = "\"'”\u2019»)]}"
# A run of terminal punctuation, optional closing quotes/brackets, then space or the end.
_END = re.compile(r"([.!?…]+)([" + re.escape(_CLOSERS) + r"]*)(?=\s|$)")
_CJK_END = re.compile(r"[。\uff01\uff1f]+[" + re.escape(_CLOSERS) + r"」』]*")
_BULLET = re.compile(r"^\s*(?:[-*•·]|\d+[.)])\s")
_CLAUSE_CUT = re.compile(r"[,;:—\u2013]\s")
_CONJUNCTION = re.compile(r"\s(?:and|but|or|so|because|which|when|while|where|that)\s")


def split_sentences(text: str, max_chars: int = MAX_SENTENCE_CHARS) -> list[str]:
    """Sentences of `text` in order, each non-empty and at most `max_chars` long."""
    sentences: list[str] = []
    for block in _blocks(text):
        for sentence in _split_block(block):
            sentences.extend(_cap(sentence, max_chars))
    return [s for s in sentences if _speakable(s)]


def quick_start(sentences: list[str], max_chars: int = 60) -> list[str]:
    """Cut a long first sentence at a clause mark or before a conjunction, so the first audio
    leaves sooner.

    Time to first audio is the time to synthesize the first unit (about 0.1 s per second of
    speech); a comma or an "and" is a place where a speaker may pause anyway.
    """
    if not sentences or len(sentences[0]) <= max_chars:
        return sentences
    first = sentences[0]
    cuts = [m.end() for m in _CLAUSE_CUT.finditer(first)]
    cuts += [m.start() for m in _CONJUNCTION.finditer(first)]
    for cut in sorted(cuts):
        if 15 <= cut <= max_chars and len(first) - cut >= 15:
            return [first[:cut].strip(), first[cut:].strip(), *sentences[1:]]
    return sentences


def last_sentence_end(text: str) -> int:
    """Where the last sentence of text still being written surely ended (0: none yet).

    Its punctuation must be followed by more text, which tells "Dr. Smith" from "done. Then"
    by the same rules as `split_sentences`; a line break always ends one.
    """
    end = 0
    for match in _ends(text):
        if text[match.end():].strip() and _is_boundary(text, match):
            end = match.end()
    return max(end, text.rfind("\n") + 1)


def _blocks(text: str) -> list[str]:
    """Paragraphs and line-broken items (headings, list items) are separate blocks.

    A single newline inside running text (hard-wrapped prose) is only a space: it becomes a
    boundary when the line before ends a clause or the next line starts a list item.
    """
    blocks: list[str] = []
    for paragraph in re.split(r"\n\s*\n", text.replace("\r\n", "\n").replace("\r", "\n")):
        current: list[str] = []
        for line in paragraph.split("\n"):
            stripped = line.strip()
            if not stripped:
                continue
            if current and (_BULLET.match(line) or _ends_unpunctuated_heading(current[-1],
                                                                              stripped)):
                blocks.append(" ".join(current))
                current = []
            current.append(stripped)
        if current:
            blocks.append(" ".join(current))
    return [re.sub(r"\s+", " ", b) for b in blocks]


def _ends_unpunctuated_heading(previous: str, line: str) -> bool:
    """A short line without final punctuation followed by a capitalised line is a heading."""
    return (len(previous) <= 60 and previous[-1].isalnum() and line[0].isupper()
            and len(previous.split()) <= 8)


def _split_block(block: str) -> list[str]:
    pieces: list[str] = []
    start = 0
    for match in _ends(block):
        end = match.end()
        if _is_boundary(block, match):
            pieces.append(block[start:end].strip())
            start = end
    pieces.append(block[start:].strip())
    return [p for p in pieces if p]


def _ends(block: str) -> list[re.Match[str]]:
    matches = list(_END.finditer(block)) + list(_CJK_END.finditer(block))
    return sorted(matches, key=lambda m: m.start())


def _is_boundary(block: str, match: re.Match[str]) -> bool:
    """Whether this punctuation really ends a sentence (not "Dr." or "e.g." or "3.")."""
    if match.group(0)[0] in "。\uff01\uff1f" or set(match.group(1)) & {"!", "?"}:
        return True
    following = block[match.end():].lstrip()
    if not following:
        return True
    word = block[:match.start()].rsplit(" ", 1)[-1].lstrip("(\"'“\u2018").lower()
    if word in _TITLES or following[0].islower():
        return False
    if word in _ABBREVIATIONS:
        return False
    # A lone initial ("J. R. R. Tolkien") is no sentence end.
    return not (len(word) == 1 and word.isalpha())


def _cap(sentence: str, max_chars: int) -> list[str]:
    """Cut an over-long sentence at the last clause mark, else the last space, before the cap."""
    parts: list[str] = []
    rest = sentence
    while len(rest) > max_chars:
        window = rest[:max_chars]
        cuts = [m.end() for m in _CLAUSE_CUT.finditer(window)]
        cut = cuts[-1] if cuts and cuts[-1] > max_chars // 3 else window.rfind(" ") + 1
        if cut <= 0:
            cut = max_chars
        parts.append(rest[:cut].strip())
        rest = rest[cut:].strip()
    if rest:
        parts.append(rest)
    return parts


def _speakable(sentence: str) -> bool:
    return any(ch.isalnum() for ch in sentence)
