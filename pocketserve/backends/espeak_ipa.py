"""Text to IPA phonemes with the espeak-ng program, in the form Piper voices were trained on.

Why a subprocess: espeak-ng is GPL; running Debian's program keeps pocketserve (Apache-2.0)
a separate work, unlike linking it (piper-tts, phonemizer). Piper voices expect espeak-ng's
IPA with stress marks, and each clause followed by its punctuation (", " between clauses,
the sentence's own "." "?" "!" at the end), which the command line does not print: we cut the
sentence into clauses ourselves, give espeak-ng one clause per line, and put the marks back.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import unicodedata

from pocketserve.errors import EngineFailure

# Inside a sentence only , ; : end clauses (a "." there is "e.g." or "Dr.": espeak-ng's call).
_CLAUSE_END = re.compile(r"([,;:]+)[\"'”\u2019»)\]]*(?=\s|$)")
_SENTENCE_END = re.compile(r"([.!?…。\uff01\uff1f]+)[\"'”\u2019»)\]」』]*$")
_LANG_SWITCH = re.compile(r"\([^)]*\)")
_MID_SENTENCE = {",", ";", ":"}


def espeak_program() -> str:
    """Path of the espeak-ng program, or a clear failure saying how to install it."""
    found = shutil.which("espeak-ng")
    if found is None:
        raise EngineFailure("the espeak-ng program is not installed "
                            "(Debian/Ubuntu: apt-get install espeak-ng)")
    return found


def split_clauses(sentence: str) -> list[tuple[str, str]]:
    """(clause text, terminator) pairs; the terminator is one of , ; : . ! ? or ''."""
    clauses: list[tuple[str, str]] = []
    start = 0
    for match in _CLAUSE_END.finditer(sentence):
        text = sentence[start:match.end()].strip()
        start = match.end()
        if any(ch.isalnum() for ch in text):
            clauses.append((text, _terminator(match.group(1))))
    tail = sentence[start:].strip()
    if any(ch.isalnum() for ch in tail):
        end = _SENTENCE_END.search(tail)
        clauses.append((tail, _terminator(end.group(1)) if end else ""))
    return clauses


def _terminator(marks: str) -> str:
    marks = marks.replace("\uff1f", "?").replace("\uff01", "!").replace("。", ".")
    for mark in ("?", "!", ".", ";", ":", ","):
        if mark in marks:
            return mark
    return "."  # an ellipsis


class EspeakPhonemizer:
    """Phonemizes one sentence per call; one espeak-ng process per sentence (~10-40 ms)."""

    def __init__(self, voice: str, program: str | None = None, timeout_s: float = 30.0):
        self.voice = voice
        self.program = program or espeak_program()
        self.timeout_s = timeout_s

    def phonemize(self, sentence: str) -> str:
        """IPA of `sentence` with clause punctuation, decomposed (NFD) as Piper expects."""
        clauses = split_clauses(sentence)
        if not clauses:
            return ""
        lines = self._run("\n".join(text for text, _ in clauses))
        if len(lines) != len(clauses):
            # espeak-ng cut a clause further (e.g. after "Dr."): ask clause by clause.
            lines = [" ".join(self._run(text)) for text, _ in clauses]
        parts: list[str] = []
        for i, (ipa, (_, mark)) in enumerate(zip(lines, clauses, strict=True)):
            last = i == len(clauses) - 1
            parts.append(ipa + mark + ("" if last and mark not in _MID_SENTENCE else " "))
        return unicodedata.normalize("NFD", "".join(parts).strip())

    def _run(self, text: str) -> list[str]:
        """espeak-ng's IPA, one line per clause; `-l` makes every input line its own clause."""
        try:
            done = subprocess.run(
                [self.program, "-q", "--ipa", "-b", "1", "-l", "100000", "-v", self.voice],
                input=text.encode(), capture_output=True, timeout=self.timeout_s, check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise EngineFailure(f"espeak-ng failed: {exc}") from exc
        if done.returncode != 0:
            detail = done.stderr.decode(errors="replace").strip()
            raise EngineFailure(f"espeak-ng exited with {done.returncode}: {detail}")
        out = done.stdout.decode(errors="replace")
        return [_LANG_SWITCH.sub("", line).strip() for line in out.splitlines() if line.strip()]
