"""Speech-to-text speed, one run, ratios side by side (these machines are noisy).

1. Real-time factor (seconds of compute per second of audio) of raw faster-whisper, called
   in-process with the served model's own settings, against the same audio sent to
   `pocketserve serve` over HTTP. Target: served <= 1.1 x raw.
2. Four transcriptions sent at once against the same four one after another, through the
   server. Target: >= 1.5 x the throughput.

Rounds alternate raw and served so that load from elsewhere hits both alike; the best round
of each is reported. Run: `.venv/bin/python bench/stt_speed.py [--rounds N]`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.conftest import start_server, stop_server

CLIPS = [
    "The quick brown fox jumps over the lazy dog. A journey of a thousand miles begins with a "
    "single step. Every morning the baker opens his shop before sunrise.",
    "Scientists have discovered a new species of frog in the rainforest. The small green animal "
    "lives high in the trees and sings loudly at night. Researchers hope to protect it.",
    "Please remember to turn off the lights when you leave the office. The meeting has been "
    "moved to Thursday afternoon. Bring your laptop and the quarterly report.",
    "The library will be closed for renovations during the summer. Students can borrow books "
    "from the city library instead. We are sorry for the trouble this may cause.",
]
MODEL = "whisper-base"


def make_clips(folder: Path) -> list[Path]:
    paths = []
    for i, text in enumerate(CLIPS):
        path = folder / f"clip{i}.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "160", "-w", str(path), text],
                       check=True)
        paths.append(path)
    return paths


def raw_model(threads: int, workers: int) -> Any:
    """faster-whisper loaded as the catalog loads it (split weights joined in memory)."""
    from faster_whisper import WhisperModel

    from pocketserve.backends.faster_whisper import _model_files
    from pocketserve.catalog import Catalog, resolve_source

    spec = Catalog().find(MODEL)
    files = _model_files(resolve_source(spec.source), spec.options["model_bin_parts"])
    return WhisperModel(MODEL, device="cpu", compute_type=spec.options["compute_type"],
                        cpu_threads=threads, num_workers=workers, files=files)


def raw_pass(model: Any, audio: list[Any]) -> float:
    began = time.perf_counter()
    for samples in audio:
        segments, _ = model.transcribe(samples, language="en", beam_size=5)
        "".join(s.text for s in segments)
    return time.perf_counter() - began


def post(base: str, path: Path) -> str:
    reply = httpx.post(f"{base}/v1/audio/transcriptions", timeout=600,
                       data={"model": MODEL, "language": "en"},
                       files={"file": (path.name, path.read_bytes(), "audio/wav")})
    reply.raise_for_status()
    return str(reply.json()["text"])


def served_pass(base: str, clips: list[Path], concurrent: bool) -> float:
    began = time.perf_counter()
    if concurrent:
        with ThreadPoolExecutor(len(clips)) as pool:
            list(pool.map(lambda p: post(base, p), clips))
    else:
        for path in clips:
            post(base, path)
    return time.perf_counter() - began




def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from faster_whisper.audio import decode_audio

    from pocketserve.catalog import Catalog

    options = Catalog().find(MODEL).options
    workers = int(options.get("num_workers", 2))
    threads = max(1, (os.cpu_count() or 1) // workers)
    folder = Path(tempfile.mkdtemp(prefix="stt-bench-"))
    clips = make_clips(folder)
    audio = [decode_audio(str(p)) for p in clips]
    seconds = sum(a.size for a in audio) / 16_000
    raw = raw_model(threads, workers)
    raw_default = raw_model(os.cpu_count() or 1, 1)
    server = start_server([MODEL], timeout_s=300)
    base = server.base_url
    try:
        post(base, clips[0])  # warm up both sides alike
        raw_pass(raw, audio[:1])
        raw_default.transcribe(audio[0], language="en")[0].__next__()
        times: dict[str, list[float]] = {k: [] for k in ("raw", "raw1", "seq", "conc")}
        for r in range(args.rounds):
            times["raw"].append(raw_pass(raw, audio))
            times["seq"].append(served_pass(base, clips, concurrent=False))
            times["conc"].append(served_pass(base, clips, concurrent=True))
            times["raw1"].append(raw_pass(raw_default, audio))
            print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items()),
                  file=sys.stderr)
    finally:
        stop_server(server)
    best = {k: min(v) for k, v in times.items()}
    report(best, seconds, threads, workers, len(clips))
    paired = [(s / r, s / c) for r, s, c in zip(times["raw"], times["seq"], times["conc"],
                                                strict=True)]
    print("\nsame-round ratios (served/raw RTF, concurrency gain): " +
          ", ".join(f"{a:.2f}x / {b:.2f}x" for a, b in paired))


def report(best: dict[str, float], seconds: float, threads: int, workers: int,
           n: int) -> None:
    rtf = {k: v / seconds for k, v in best.items()}
    ratio_served = rtf["seq"] / rtf["raw"]
    ratio_conc = best["seq"] / best["conc"]
    print(f"\nspeech to text, {MODEL} int8 beam 5, {n} espeak-ng clips, {seconds:.1f} s of "
          f"audio, {os.cpu_count()} cores, best of rounds\n")
    print(f"| {'measure':58} | {'value':>8} | {'ratio':>7} | target  |")
    print(f"|{'-' * 60}|{'-' * 10}|{'-' * 9}|---------|")
    print(f"| {f'raw faster-whisper RTF ({workers} workers x {threads} thread)':58} | "
          f"{rtf['raw']:8.3f} |         |         |")
    print(f"| {'served RTF, one request at a time (same settings)':58} | {rtf['seq']:8.3f} | "
          f"{ratio_served:6.2f}x | <= 1.1x |")
    print(f"| {'raw RTF, library default (1 worker x all threads), context':58} | "
          f"{rtf['raw1']:8.3f} | {rtf['seq'] / rtf['raw1']:6.2f}x |         |")
    print(f"| {f'{n} in a row, served (s)':58} | {best['seq']:8.2f} |         |         |")
    print(f"| {f'{n} at once, served (s)':58} | {best['conc']:8.2f} | {ratio_conc:6.2f}x |"
          f" >= 1.5x |")


if __name__ == "__main__":
    main()
