"""espeak-ng, the Debian program, as a speech backend: about 100 languages, instant, robotic.

One process per sentence (`--stdout` gives a WAV), so requests stream and cancel per sentence
like Piper's. Voices are espeak-ng's languages (`de`, `fr`, `en-gb`, ...), optionally with a
variant (`en-us+f3`); OpenAI's names map to English variants of distinct pitch and timbre.
`speed` scales the 175 words/minute default; espeak-ng itself clamps below 80 words/minute,
so speeds under about 0.46 sound as 0.46.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import Any

from pocketserve.backends.espeak_ipa import espeak_program
from pocketserve.config import ModelSpec
from pocketserve.engines.speech import AudioChunk, SpeechEngine, Voice
from pocketserve.errors import EngineFailure

DEFAULT_WPM = 175
_OTHER_LANGUAGE = re.compile(r"\(([\w-]+) \d+\)")
OPENAI_TO_ESPEAK = {
    "alloy": "en-us", "ash": "en-us+m3", "ballad": "en-gb+m2", "coral": "en-us+f2",
    "echo": "en-us+m1", "fable": "en-gb", "nova": "en-us+f3", "onyx": "en-us+m7",
    "sage": "en-us+f4", "shimmer": "en-us+f1", "verse": "en-us+m4", "marin": "en-us+f5",
    "cedar": "en-us+m5",
}


def build_engine(spec: ModelSpec, path: Path, threads: int) -> SpeechEngine:
    program = str(path) if path.is_file() else espeak_program()
    backend = EspeakBackend(program, spec.options)
    return SpeechEngine(backend, {**OPENAI_TO_ESPEAK, **spec.options.get("voices", {})})


class EspeakBackend:
    sample_rate = 22_050

    def __init__(self, program: str, options: dict[str, Any]):
        if shutil.which(program) is None:
            raise EngineFailure(f"{program} is not an executable espeak-ng")
        self.program = program
        self.timeout_s = float(options.get("timeout_s", 60.0))
        self._also: set[str] = set()  # "fr" in "(fr 5)": other codes a voice answers to
        self._languages = self._list("--voices")
        self._variants = self._list("--voices=variant")
        self.sample_rate = self._probe_rate()

    def voices(self) -> list[Voice]:
        return [Voice(id=lang, backend_voice=lang, language=lang)
                for lang in sorted(self._languages)]

    def accepts(self, voice: str) -> bool:
        language, _, variant = voice.partition("+")
        known = language in self._languages or language in self._also
        return known and (not variant or variant in self._variants)

    def synthesize(self, sentences: Sequence[str], voice: str,
                   speed: float) -> Generator[AudioChunk, None, None]:
        rate = round(DEFAULT_WPM * speed)
        for sentence in sentences:
            yield AudioChunk(pcm=self._speak(sentence, voice, rate),
                             input_tokens=len(sentence))

    def close(self) -> None:
        return None  # nothing is held between requests

    def _speak(self, text: str, voice: str, rate: int) -> bytes:
        wav = self._run(["-b", "1", "-v", voice, "-s", str(rate), "--stdout"], text)
        return wav_pcm(wav)[1]

    def _probe_rate(self) -> int:
        return wav_pcm(self._run(["-b", "1", "--stdout"], "a"))[0]

    def _list(self, flag: str) -> set[str]:
        """Names from `espeak-ng --voices`: languages (column 2) or variant files (column 5).

        MBROLA voices are left out: they need separate voice packages.
        """
        variants = "variant" in flag
        names: set[str] = set()
        for line in self._run([flag], "").decode(errors="replace").splitlines()[1:]:
            cols = line.split()
            if len(cols) < 5 or cols[4].startswith("mb/"):
                continue
            if variants:
                names.add(cols[4].removeprefix("!v/"))
            elif cols[1] != "variant":
                names.add(cols[1])
                self._also.update(_OTHER_LANGUAGE.findall(line))
        return names

    def _run(self, args: list[str], text: str) -> bytes:
        try:
            done = subprocess.run([self.program, *args], input=text.encode(),
                                  capture_output=True, timeout=self.timeout_s, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise EngineFailure(f"espeak-ng failed: {exc}") from exc
        if done.returncode != 0 or done.stderr.strip():
            detail = done.stderr.decode(errors="replace").strip()
            raise EngineFailure(f"espeak-ng failed ({done.returncode}): {detail}")
        return done.stdout


def wav_pcm(wav: bytes) -> tuple[int, bytes]:
    """(sample rate, PCM) of a 16-bit mono WAV whose sizes may be unknown (streamed)."""
    if wav[:4] != b"RIFF" or wav[8:12] != b"WAVE":
        raise EngineFailure("espeak-ng did not write a WAV file")
    rate = struct.unpack_from("<I", wav, 24)[0]
    pos = 12
    while pos + 8 <= len(wav):
        chunk, size = wav[pos:pos + 4], struct.unpack_from("<I", wav, pos + 4)[0]
        if chunk == b"data":
            pcm = wav[pos + 8:]
            return rate, pcm[: len(pcm) // 2 * 2]
        pos += 8 + size
    raise EngineFailure("espeak-ng's WAV has no data")
