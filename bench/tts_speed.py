"""Speech speed, raw backend vs served, side by side in one run (these machines are noisy).

Measures, for a streamed three-sentence request: time to the first audio and the real-time
factor (seconds of compute per second of audio; lower is faster), three ways: raw (the
backend's first sentence of PCM, no encoding), engine+mp3 (the speech engine in-process,
encoding mp3), and served (first byte of the HTTP body; target <= 400 ms).

    .venv/bin/python bench/tts_speed.py [--model piper-joe-medium] [--repeats 5]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pocketserve.backends import load_engine
from pocketserve.catalog import Catalog, resolve_source
from pocketserve.engines.sentences import quick_start, split_sentences
from pocketserve.engines.speech import SpeechEngine
from pocketserve.ops.speech import SPEECH
from tests.conftest import start_server, stop_server
from tests.engine_helpers import run_op

TEXT = ("The library opens at nine in the morning and closes at six in the evening. "
        "Visitors can borrow up to five books at a time, and most loans last three weeks. "
        "Quiet rooms on the second floor are available for study groups.")


def raw_run(engine: SpeechEngine) -> tuple[float, float, float]:
    """(first audio s, total s, audio s) from the backend alone, no encoding, no server."""
    backend = engine.backend
    voice = engine.resolve_voice("alloy")
    start = time.perf_counter()
    first = 0.0
    samples = 0
    for chunk in backend.synthesize(quick_start(split_sentences(TEXT)), voice, 1.0):
        first = first or time.perf_counter() - start
        samples += len(chunk.pcm) // 2
    return first, time.perf_counter() - start, samples / backend.sample_rate


def engine_run(engine: SpeechEngine) -> tuple[float, float, float]:
    """(first bytes s, total s, audio s) of the engine in-process: backend plus mp3 encoding."""
    marks: list[float] = []
    done: dict[str, Any] = {}

    def emit(event: dict[str, Any]) -> None:
        marks.append(time.perf_counter() - start)
        done.update(event)

    payload = {"input": TEXT, "voice": "alloy", "response_format": "mp3"}
    start = time.perf_counter()
    run_op(engine, SPEECH, payload, emit=emit, as_dicts=True)
    return marks[0], marks[-1], float(done["duration_s"])


def served_run(http: httpx.Client, model: str) -> tuple[float, float, float]:
    """(first byte s, total s, audio s) of a streamed mp3 request through the server."""
    body = {"model": model, "voice": "alloy", "input": TEXT, "response_format": "mp3"}
    start = time.perf_counter()
    first = 0.0
    data = b""
    with http.stream("POST", "/v1/audio/speech", json=body) as reply:
        reply.raise_for_status()
        for chunk in reply.iter_bytes():
            first = first or time.perf_counter() - start
            data += chunk
    total = time.perf_counter() - start
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        samples = sum(frame.samples for frame in container.decode(stream))
    return first, total, samples / stream.rate





def medians(run: Callable[[], tuple[float, float, float]], repeats: int) -> list[float]:
    run()  # warm-up: first-run allocations and caches are not what we measure
    results = [run() for _ in range(repeats)]
    first = statistics.median(r[0] for r in results)
    rtf = statistics.median(r[1] / r[2] for r in results)
    audio = statistics.median(r[2] for r in results)
    return [first, rtf, audio]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="piper-joe-medium")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    spec = Catalog().find(args.model)
    threads = int(spec.options.get("threads", os.cpu_count() or 1))
    engine = load_engine(spec, resolve_source(spec.source), threads)
    assert isinstance(engine, SpeechEngine)
    raw = medians(lambda: raw_run(engine), args.repeats)
    inline = medians(lambda: engine_run(engine), args.repeats)
    engine.close()
    server = start_server([spec.id])
    base = server.base_url
    try:
        # One client, kept alive: a new httpx client per request costs ~0.1-0.2 s of set-up
        # (TLS context) that is the client's, not the server's.
        with httpx.Client(base_url=base, timeout=120) as http:
            served = medians(lambda: served_run(http, spec.id), args.repeats)
    finally:
        stop_server(server)
    print(f"model {spec.id}, {threads} thread(s), {os.cpu_count()} cores, "
          f"median of {args.repeats} after a warm-up; 3 sentences, "
          f"{raw[2]:.1f} s of audio; load average {load_before:.1f} -> {os.getloadavg()[0]:.1f}")
    print(f"{'metric':<20}{'raw':>10}{'engine+mp3':>12}{'served':>10}{'served/raw':>12}"
          f"{'served/engine':>15}")
    for name, r, e, s in (
            ("first audio (ms)", raw[0] * 1000, inline[0] * 1000, served[0] * 1000),
            ("real-time factor", raw[1], inline[1], served[1])):
        print(f"{name:<20}{r:>10.3f}{e:>12.3f}{s:>10.3f}{s / r:>12.2f}{s / e:>15.2f}")
    verdict = "met" if served[0] <= 0.4 else "missed"
    print(f"target: served first audio <= 400 ms: {verdict} ({served[0] * 1000:.0f} ms)")


if __name__ == "__main__":
    main()
