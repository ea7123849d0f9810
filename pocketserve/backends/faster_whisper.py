"""Speech to text on faster-whisper (CTranslate2), with concurrent requests batched together.

Each request runs faster-whisper's own long-form algorithm (30 s windows, timestamps,
temperature fallback, word alignment, VAD) on its worker thread. The one step that gains from
batching is the decoder: `WhisperModel.model` is swapped for `_BatchedDecoder`, which gathers
the single-item `generate` calls that concurrent requests make into one batched CTranslate2
call (MODELS.md: batching the decoder across files is where the gain is; the encoder gains
nothing). Pairs (`max_batch` 2, one per CTranslate2 worker) waiting up to `batch_window_s` 0.5 s
gave the best throughput here; a call waits only if another request could join it. This leans
on faster-whisper 1.2.1 calling `self.model.generate(encoder_output, [prompt], ...)`; the
version is pinned and the attribute's type is checked at load.

Without a `language`, faster-whisper encodes the first window twice: once to detect the
language, again to transcribe it (a second encoder pass, 0.6 of a second for whisper-base on a
short clip here). `_detect_language` encodes that window as transcription will, names the
language, and leaves the encoding with the decoder, whose `encode` hands it back when the same
features come (checked by digest; anything else is encoded as usual).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt

from pocketserve.backends.silero_vad import StreamingSilero
from pocketserve.catalog import resolve_source
from pocketserve.config import ModelSpec
from pocketserve.engines.batching import Batcher, Cancelled
from pocketserve.engines.transcription import OnEvent, TranscriptionEngine
from pocketserve.ops.transcription import (
    Segment,
    TranscriptInfo,
    TranscriptionRequest,
    VadParams,
    Word,
)

log = logging.getLogger("pocketserve.whisper")

_FALLBACK_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
_SMALL_FILES = ("config.json", "tokenizer.json", "preprocessor_config.json",
                "vocabulary.json", "vocabulary.txt")


def build_engine(spec: ModelSpec, path: Path, threads: int) -> TranscriptionEngine:
    return TranscriptionEngine(FasterWhisperBackend(spec, path, threads))


class FasterWhisperBackend:
    def __init__(self, spec: ModelSpec, path: Path, threads: int):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a hub at run time
        from faster_whisper import WhisperModel

        opts = spec.options
        self._workers = int(opts.get("num_workers", 2))
        self._intra = int(opts.get("intra_threads", max(1, threads // self._workers)))
        self._compute_type = str(opts.get("compute_type", "int8"))
        self._beam_size = int(opts.get("beam_size", 5))
        self._vad_default = bool(opts.get("vad_filter", False))
        files = _model_files(path, opts.get("model_bin_parts"))
        self._model = WhisperModel(
            spec.id if files else str(path), device=str(opts.get("device", "cpu")),
            compute_type=self._compute_type, cpu_threads=self._intra,
            num_workers=self._workers, files=files)
        if type(self._model.model).__name__ != "Whisper":  # the seam this module relies on
            raise RuntimeError("unexpected faster-whisper internals; pin faster-whisper==1.2.1")
        self.decoder = _BatchedDecoder(
            self._model.model, max_batch=int(opts.get("max_batch", 2)),
            window_s=float(opts.get("batch_window_s", 0.5)))
        self._model.model = self.decoder
        self.languages: Sequence[str] = list(self._model.supported_languages)
        StreamingSilero()  # loads the VAD model now, not on a live stream's first frames
        self.can_translate = bool(self.decoder.is_multilingual)

    def info(self) -> dict[str, Any]:
        return {"multilingual": self.can_translate, "languages": len(self.languages),
                "compute_type": self._compute_type, "num_workers": self._workers,
                "intra_threads": self._intra, "beam_size": self._beam_size,
                "sample_rate": 16_000}

    def close(self) -> None:
        self.decoder.close()

    def speech_probabilities(self) -> StreamingSilero:
        return StreamingSilero()

    def transcribe(self, audio: npt.NDArray[np.float32], req: TranscriptionRequest,
                   on_event: OnEvent, cancelled: threading.Event) -> None:
        self.decoder.begin(cancelled)
        try:
            self._run(audio, req, on_event, cancelled)
        except Cancelled:
            pass  # the client left while this request's decode step was queued
        finally:
            self.decoder.end()

    def _run(self, audio: npt.NDArray[np.float32], req: TranscriptionRequest,
             on_event: OnEvent, cancelled: threading.Event) -> None:
        vad = req.vad if req.vad is not None else (VadParams() if self._vad_default else None)
        language = req.language
        if language is None and vad is None and self.can_translate and len(audio):
            language = self._detect_language(audio)
        segments, info = self._model.transcribe(
            audio, language=language, task=req.task, beam_size=self._beam_size,
            temperature=list(_FALLBACK_TEMPERATURES) if req.temperature == 0
            else [req.temperature],
            initial_prompt=req.prompt or None, word_timestamps=req.word_timestamps,
            vad_filter=vad is not None, vad_parameters=_vad_options(vad))
        on_event(TranscriptInfo(language=info.language, duration=float(info.duration)))
        try:
            for index, seg in enumerate(segments):  # OpenAI numbers segments from 0
                if cancelled.is_set():
                    return
                on_event(_segment(seg, index))
        finally:
            segments.close()


    def _detect_language(self, audio: npt.NDArray[np.float32]) -> str:
        """The language of the first 30 s, from the encoding its transcription then reuses.

        The window is cut as faster-whisper 1.2.1's `generate_segments` cuts its first one
        (all frames but the last, padded to 30 s), so the digests match.
        """
        from faster_whisper.audio import pad_or_trim

        extractor = self._model.feature_extractor
        features = extractor(audio)
        first = pad_or_trim(features[:, :min(extractor.nb_max_frames, features.shape[-1] - 1)])
        encoded = self._model.encode(first)  # through the decoder: kept for the transcription
        token, _ = self.decoder.detect_language(encoded)[0][0]
        return str(token[2:-2])


def _segment(seg: Any, index: int) -> Segment:
    words = None if seg.words is None else [
        Word(word=w.word, start=float(w.start), end=float(w.end),
             probability=float(w.probability)) for w in seg.words]
    return Segment(
        id=index, seek=int(seg.seek), start=float(seg.start), end=float(seg.end),
        text=str(seg.text), tokens=[int(t) for t in seg.tokens],
        temperature=float(seg.temperature or 0.0), avg_logprob=float(seg.avg_logprob),
        compression_ratio=float(seg.compression_ratio),
        no_speech_prob=float(seg.no_speech_prob), words=words)


def _vad_options(vad: VadParams | None) -> dict[str, Any] | None:
    if vad is None:
        return None
    names = {"threshold": "threshold", "min_silence_ms": "min_silence_duration_ms",
             "speech_pad_ms": "speech_pad_ms"}
    return {names[k]: v for k, v in msgspec.structs.asdict(vad).items() if v is not None}


def _model_files(folder: Path, parts: Any) -> dict[str, bytes] | None:
    """With `model_bin_parts`, model.bin is joined in memory (never on disk) from its parts,
    each a `package:` source or a file in `folder`; the folder's small files come along."""
    if not parts:
        return None
    chunks = []
    for part in parts:
        source = str(part)
        chunks.append((resolve_source(source) if source.startswith("package:")
                       else folder / source).read_bytes())
    files = {"model.bin": b"".join(chunks)}
    chunks.clear()
    for name in _SMALL_FILES:
        if (folder / name).is_file():
            files[name] = (folder / name).read_bytes()
    return files


@dataclass
class _Call:
    features: Any  # ctranslate2.StorageView of shape [1, frames, dims]
    prompt: list[int]
    kwargs: dict[str, Any]
    key: str = field(init=False)
    started: bool = False

    def __post_init__(self) -> None:
        shape = tuple(self.features.shape)
        self.key = repr((shape, sorted(self.kwargs.items())))


class _BatchedDecoder:
    """Stands in for the CTranslate2 Whisper model: `generate` calls of concurrent requests
    are batched (calls with equal options share one call); everything else passes through."""

    def __init__(self, model: Any, max_batch: int, window_s: float):
        self._model = model
        # One collector: with more, idle collectors would each take one waiting call and
        # split batches. CTranslate2 runs batches side by side on its own `num_workers`.
        self._batcher: Batcher[_Call, Any] = Batcher(
            self._run, max_batch=max_batch, window_s=window_s, concurrency=1,
            name="whisper-decode")
        self._local = threading.local()
        self._lock = threading.Lock()
        self._active = 0  # requests being transcribed
        self._decoding = 0  # of those, inside `generate` (queued or running)
        self._queued = 0  # calls handed to the batcher whose batch has not started
        self.batch_sizes: list[int] = []  # recent batch sizes, shown for tests and benchmarks

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def encode(self, features: Any, **kwargs: Any) -> Any:
        """CTranslate2's encode, except that the window this thread encoded last (to detect
        its language) is answered from memory once."""
        digest = hashlib.blake2b(np.asarray(features).tobytes(), digest_size=16).digest()
        kept = getattr(self._local, "encoded", None)
        self._local.encoded = None
        if kept is not None and kept[0] == digest:
            return kept[1]
        encoded = self._model.encode(features, **kwargs)
        self._local.encoded = (digest, encoded)
        return encoded

    def begin(self, cancelled: threading.Event) -> None:
        self._local.cancelled = cancelled
        with self._lock:
            self._active += 1

    def end(self) -> None:
        self._local.encoded = None
        with self._lock:
            self._active -= 1

    def close(self) -> None:
        self._batcher.close()

    def generate(self, features: Any, prompts: list[list[int]], **kwargs: Any) -> list[Any]:
        cancelled: threading.Event | None = getattr(self._local, "cancelled", None)
        if cancelled is not None and cancelled.is_set():
            raise Cancelled()
        with self._lock:
            # Wait for a batch only if someone could join it: a call already queued, or
            # another request that is not decoding now (it will soon reach this step).
            batch = len(prompts) == 1 and (
                self._queued > 0 or self._active - self._decoding > 1)
            self._decoding += 1
            self._queued += batch
        call = _Call(features, list(prompts[0]), kwargs)
        try:
            if not batch:
                return list(self._model.generate(features, prompts, **kwargs))
            # The batch is queued on CTranslate2's workers; wait for this row's result here,
            # so the one collector thread is free to form the next batch meanwhile.
            return [self._batcher.submit(call, cancelled).result()]
        finally:
            with self._lock:
                self._decoding -= 1
                if batch and not call.started:  # dropped from the queue: cancelled
                    self._queued -= 1

    def _run(self, calls: list[_Call]) -> list[Any]:
        import ctranslate2

        with self._lock:
            self._queued -= len(calls)
            for call in calls:
                call.started = True
        results: list[Any] = [None] * len(calls)
        groups: dict[str, list[int]] = {}
        for i, call in enumerate(calls):
            groups.setdefault(call.key, []).append(i)
        for indices in groups.values():
            first = calls[indices[0]]
            if len(indices) == 1:
                features = first.features
            else:
                stacked = np.concatenate([np.asarray(calls[i].features) for i in indices])
                features = ctranslate2.StorageView.from_array(stacked)
            out = self._model.generate(features, [calls[i].prompt for i in indices],
                                       asynchronous=True, **first.kwargs)
            for i, result in zip(indices, out, strict=True):
                results[i] = result
        self.batch_sizes = [*self.batch_sizes[-63:], len(calls)]
        log.debug("decoder batch of %d calls in %d groups", len(calls), len(groups))
        return results
