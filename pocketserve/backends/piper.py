"""Piper voices (VITS exported to ONNX) on onnxruntime, with our own phonemization.

Why not the piper-tts package: it is GPL-3.0 and links espeak-ng; pocketserve is Apache-2.0.
This module needs only onnxruntime (MIT), the voice's `.onnx` and `.onnx.json`, and the
espeak-ng program (see espeak_ipa.py). It follows Piper's recipe: one utterance per sentence,
IPA with stress and punctuation, ids as BOS, each symbol followed by PAD, then EOS, and each
sentence's audio peak-normalized. `speed` sets the length scale through a duration model
fitted at load, plus a tempo change past what the model can do (`PiperBackend.speed_plan`).
"""

from __future__ import annotations

import json
from collections.abc import Generator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pocketserve.audio.tempo import stretch
from pocketserve.backends.espeak_ipa import EspeakPhonemizer
from pocketserve.config import ModelSpec
from pocketserve.engines.speech import AudioChunk, SpeechEngine, Voice
from pocketserve.errors import EngineFailure

BOS, EOS, PAD = "^", "$", "_"
CALIBRATION_TEXT = "The quick brown fox jumps over the lazy dog near the quiet river bank."
MIN_RELATIVE_SCALE = 0.25


def build_engine(spec: ModelSpec, path: Path, threads: int) -> SpeechEngine:
    backend = PiperBackend(path, threads, spec.options)
    return SpeechEngine(backend, spec.options.get("voices"))


@dataclass
class PiperConfig:
    """The parts of a voice's `.onnx.json` that synthesis needs."""

    sample_rate: int
    espeak_voice: str
    language: str
    name: str
    noise_scale: float
    length_scale: float
    noise_w: float
    phoneme_ids: dict[str, list[int]]
    speakers: dict[str, int] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> PiperConfig:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        if data.get("phoneme_type", "espeak") != "espeak":
            raise EngineFailure(f"{path.name}: only espeak-phonemized Piper voices are "
                                f"supported, not {data.get('phoneme_type')!r}")
        inference = data.get("inference", {})
        return cls(
            sample_rate=int(data["audio"]["sample_rate"]),
            espeak_voice=str(data.get("espeak", {}).get("voice", "en-us")),
            language=str(data.get("language", {}).get("code", "")),
            name=str(data.get("dataset") or path.name.split(".")[0]),
            noise_scale=float(inference.get("noise_scale", 0.667)),
            length_scale=float(inference.get("length_scale", 1.0)),
            noise_w=float(inference.get("noise_w", 0.8)),
            phoneme_ids={k: list(v) for k, v in data["phoneme_id_map"].items()},
            speakers={str(k): int(v) for k, v in (data.get("speaker_id_map") or {}).items()},
        )


def config_path_for(model: Path) -> Path:
    """Piper ships `voice.onnx` with `voice.onnx.json`; some copies use `voice.json`."""
    for candidate in (model.with_name(model.name + ".json"), model.with_suffix(".json")):
        if candidate.exists():
            return candidate
    raise EngineFailure(f"no Piper config next to {model} (expected {model.name}.json)")


class PiperBackend:
    """Synthesizes sentence by sentence; phonemizes the next sentence while one plays out."""

    def __init__(self, path: Path, threads: int, options: dict[str, Any]):
        from pocketserve.backends.onnx_common import make_session

        if path.is_dir():
            path = next(iter(sorted(path.glob("*.onnx"))), path)
        self.config = PiperConfig.load(Path(options.get("config") or config_path_for(path)))
        self.sample_rate = self.config.sample_rate
        self._session = make_session(path, threads)
        self._input_names = {i.name for i in self._session.get_inputs()}
        self._phonemizer = EspeakPhonemizer(self.config.espeak_voice)
        self._lookahead = ThreadPoolExecutor(max_workers=4, thread_name_prefix="phonemize")
        self._floor = self._calibrate()

    def voices(self) -> list[Voice]:
        names = list(self.config.speakers) or [self.config.name]
        return [Voice(id=n, backend_voice=n, language=self.config.language) for n in names]

    def accepts(self, voice: str) -> bool:
        return False

    def synthesize(self, sentences: Sequence[str], voice: str,
                   speed: float) -> Generator[AudioChunk, None, None]:
        speaker = self.config.speakers.get(voice)
        length_scale, tempo = self.speed_plan(speed)
        pending: Future[str] = self._lookahead.submit(self._phonemizer.phonemize, sentences[0])
        for i in range(len(sentences)):
            phonemes = pending.result()
            if i + 1 < len(sentences):
                pending = self._lookahead.submit(self._phonemizer.phonemize, sentences[i + 1])
            ids = self.phoneme_ids(phonemes)
            if len(ids) > 3:  # more than BOS, PAD, EOS
                pcm = stretch(self.speak_ids(ids, length_scale, speaker), self.sample_rate, tempo)
                yield AudioChunk(pcm=pcm, input_tokens=len(ids))

    def speed_plan(self, speed: float) -> tuple[float, float]:
        """(length scale, extra tempo) that make audio last 1/speed as long as at speed 1.

        Duration is about n * (a * scale + b): every symbol lasts at least one frame whatever
        the scale. With the floor f = b / (a + b) measured at load, scale (1/speed - f)/(1 - f)
        gives the wanted ratio. Below a quarter of the scale the model barely shortens speech
        (joe: about 2.1x at most), so the rest is a pitch-keeping tempo change.
        """
        wanted = 1.0 / speed
        relative = (wanted - self._floor) / (1.0 - self._floor)
        if relative >= MIN_RELATIVE_SCALE:
            return self.config.length_scale * relative, 1.0
        reached = MIN_RELATIVE_SCALE * (1.0 - self._floor) + self._floor
        return self.config.length_scale * MIN_RELATIVE_SCALE, reached / wanted

    def _calibrate(self) -> float:
        """The duration floor f (see `speed_plan`); also pays onnxruntime's slow first run."""
        ids = self.phoneme_ids(self._phonemizer.phonemize(CALIBRATION_TEXT))
        base = self.config.length_scale
        self.speak_ids(ids, base, None)  # first run: memory planning, not measured
        normal = len(self.speak_ids(ids, base, None))
        quarter = len(self.speak_ids(ids, base * 0.25, None))
        return min(max((quarter / normal - 0.25) / 0.75, 0.0), 0.8)

    def phoneme_ids(self, phonemes: str) -> list[int]:
        """BOS PAD, then each known symbol followed by PAD, then EOS (unknown ones dropped)."""
        table = self.config.phoneme_ids
        ids = [*table[BOS], *table[PAD]]
        for symbol in phonemes:
            if symbol in table:
                ids += table[symbol]
                ids += table[PAD]
        ids += table[EOS]
        return ids

    def speak_ids(self, ids: list[int], length_scale: float, speaker: int | None) -> bytes:
        """One utterance through the network, as s16le PCM at the voice's rate."""
        import numpy as np

        cfg = self.config
        inputs: dict[str, Any] = {
            "input": np.array([ids], dtype=np.int64),
            "input_lengths": np.array([len(ids)], dtype=np.int64),
            "scales": np.array([cfg.noise_scale, length_scale, cfg.noise_w], dtype=np.float32),
        }
        if "sid" in self._input_names:
            inputs["sid"] = np.array([speaker or 0], dtype=np.int64)
        audio = np.asarray(self._session.run(None, inputs)[0], dtype=np.float32).reshape(-1)
        peak = float(np.max(np.abs(audio))) if audio.size else 0.0
        if peak > 1e-8:
            audio = audio / peak
        return bytes((np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2").tobytes())

    def close(self) -> None:
        self._lookahead.shutdown(wait=False, cancel_futures=True)
        del self._session
