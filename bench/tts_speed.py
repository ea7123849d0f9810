"""Speech speed, raw backend vs served, side by side in one run (these machines are noisy).

Measures, for a streamed three-sentence request: time to the first audio (raw: first
sentence's PCM out of the backend; served: first byte of the HTTP body, target <= 400 ms),
and the real-time factor (seconds of compute per second of audio; lower is faster).

    .venv/bin/python bench/tts_speed.py [--model piper-joe-medium] [--repeats 3]
"""

from __future__ import annotations

import argparse
import io
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import av
import httpx

from pocketserve.backends import load_engine
from pocketserve.catalog import Catalog, resolve_source
from pocketserve.engines.sentences import quick_start, split_sentences
from pocketserve.engines.speech import SpeechEngine

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


def served_run(base_url: str, model: str) -> tuple[float, float, float]:
    """(first byte s, total s, audio s) of a streamed mp3 request through the server."""
    body = {"model": model, "voice": "alloy", "input": TEXT, "response_format": "mp3"}
    start = time.perf_counter()
    first = 0.0
    data = b""
    with httpx.stream("POST", base_url + "/v1/audio/speech", json=body, timeout=120) as reply:
        reply.raise_for_status()
        for chunk in reply.iter_bytes():
            first = first or time.perf_counter() - start
            data += chunk
    total = time.perf_counter() - start
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        samples = sum(frame.samples for frame in container.decode(stream))
    return first, total, samples / stream.rate


def start_server(model: str) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tempfile.NamedTemporaryFile(prefix="tts-bench-", suffix=".log", delete=False)  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "pocketserve", "serve", "--port", str(port),
                             "--model", model], stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/health", timeout=2).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise SystemExit(f"server did not start; see {log.name}")


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
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    spec = Catalog().find(args.model)
    threads = int(spec.options.get("threads", os.cpu_count() or 1))
    engine = load_engine(spec, resolve_source(spec.source), threads)
    assert isinstance(engine, SpeechEngine)
    raw = medians(lambda: raw_run(engine), args.repeats)
    engine.close()
    proc, base = start_server(spec.id)
    try:
        served = medians(lambda: served_run(base, spec.id), args.repeats)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    print(f"model {spec.id}, {threads} thread(s), {os.cpu_count()} cores, "
          f"median of {args.repeats} after a warm-up; 3 sentences, "
          f"{raw[2]:.1f} s of audio")
    print(f"{'metric':<28}{'raw':>10}{'served':>10}{'served/raw':>12}")
    for name, r, s in (("first audio (ms)", raw[0] * 1000, served[0] * 1000),
                       ("real-time factor", raw[1], served[1])):
        print(f"{name:<28}{r:>10.3f}{s:>10.3f}{s / r:>12.2f}")
    verdict = "met" if served[0] <= 0.4 else "missed"
    print(f"target: served first audio <= 400 ms: {verdict} ({served[0] * 1000:.0f} ms)")


if __name__ == "__main__":
    main()
