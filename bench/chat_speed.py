"""Chat decode speed: the raw llama.cpp library vs pocketserve, side by side in one run.

Raw: xllamacpp in this process, no HTTP, the same weights file and llama.cpp settings (the
packaged Q4_1 GGUF re-encoded as Q8_0, as the catalog asks; the packaged file itself is measured
too, for context).
Served: `pocketserve serve` as a subprocess, streamed over HTTP at concurrency 1, 4 and 8.
Per stream: time to first token (TTFT) and decode tokens/s after the first token.
Aggregate: all completion tokens of a round / the round's wall time.

    python bench/chat_speed.py [--tokens 256] [--runs 6]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pocketserve.backends.llamacpp import llama_params, prepare_weights
from pocketserve.catalog import Catalog, resolve_source
from pocketserve.config import Settings
from tests.conftest import start_server, stop_server

MODEL = "smollm2-135m-instruct"


@dataclass
class Stream:
    ttft_s: float
    tokens: int
    decode_s: float

    @property
    def decode_tps(self) -> float:
        return (self.tokens - 1) / self.decode_s if self.decode_s > 0 else 0.0


def request(i: int, max_tokens: int) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": f"Story {i}: tell me a long tale about "
                                                     "a dragon who learns to bake bread."}],
            "max_tokens": max_tokens, "temperature": 0.8, "seed": i, "stream": True}


# -- raw library -----------------------------------------------------------------------------

class RawLibrary:
    """xllamacpp in this process with the server's settings; no pocketserve code involved."""

    def __init__(self, path: Path, threads: int, options: dict[str, Any]):
        import xllamacpp

        params = llama_params(path, threads, options)  # exactly the server's settings
        self.server = xllamacpp.Server(params)
        self.server.handle_chat_completions(request(-1, 8) | {"stream": False})  # warm-up

    def stream(self, i: int, max_tokens: int) -> Stream:
        start = time.perf_counter()
        stamps: list[float] = []

        def on_chunk(chunk: dict[str, Any]) -> bool:
            for choice in chunk.get("choices", ()):
                if (choice.get("delta") or {}).get("content"):
                    stamps.append(time.perf_counter())
            return False

        self.server.handle_chat_completions(request(i, max_tokens), on_chunk)
        return Stream(stamps[0] - start, len(stamps), stamps[-1] - stamps[0])

    def concurrent(self, concurrency: int, runs: int, max_tokens: int,
                   seed: int) -> tuple[list[Stream], float]:
        """Rounds of `concurrency` threads, as the served rounds (the GIL is released)."""
        streams: list[Stream] = []
        wall = 0.0
        with ThreadPoolExecutor(concurrency) as pool:
            for r in range(runs):
                start = time.perf_counter()
                streams += pool.map(lambda k, r=r: self.stream(seed + 1000 * r + k, max_tokens),
                                    range(concurrency))
                wall += time.perf_counter() - start
        return streams, wall


# -- served ----------------------------------------------------------------------------------

async def served_stream(client: httpx.AsyncClient, i: int, max_tokens: int) -> Stream:
    body = request(i, max_tokens) | {"model": MODEL}
    start = time.perf_counter()
    stamps: list[float] = []
    async with client.stream("POST", "/v1/chat/completions", json=body) as reply:
        reply.raise_for_status()
        async for line in reply.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                stamps.append(time.perf_counter())
    return Stream(stamps[0] - start, len(stamps), stamps[-1] - stamps[0])


async def served_round(base_url: str, concurrency: int, runs: int, max_tokens: int,
                       seed: int) -> tuple[list[Stream], float]:
    streams: list[Stream] = []
    wall = 0.0
    async with httpx.AsyncClient(base_url=base_url, timeout=300) as client:
        # Open the connection first (clients keep theirs alive). No generation here: it would
        # leave its prompt in llama.cpp's prefix cache, which the raw side does not get.
        (await client.get("/health")).raise_for_status()
        for r in range(runs):
            start = time.perf_counter()
            got = await asyncio.gather(*(served_stream(client, seed + 1000 * r + k, max_tokens)
                                         for k in range(concurrency)))
            wall += time.perf_counter() - start
            streams.extend(got)
    return streams, wall


# -- report ----------------------------------------------------------------------------------

def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def row(name: str, streams: list[Stream], wall: float) -> dict[str, Any]:
    """Per-stream figures are medians over streams; aggregate is all tokens / all wall time."""
    ttft = [s.ttft_s * 1000 for s in streams]
    return {"name": name, "per_stream": statistics.median(s.decode_tps for s in streams),
            "aggregate": sum(s.tokens for s in streams) / wall,
            "ttft_p50": pct(ttft, 0.5), "ttft_p95": pct(ttft, 0.95)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    spec = Catalog().find(MODEL)

    packaged = resolve_source(spec.source)
    served_file = prepare_weights(spec, packaged, Settings().cache_dir)
    raw_lib = RawLibrary(served_file, args.threads, spec.options)
    server = start_server([MODEL], "--threads", str(args.threads), "--log-level", "warning")
    asyncio.run(served_round(server.base_url, 1, 1, 8, seed=-1))  # warm-up, as the raw one
    measured: dict[str, tuple[list[Stream], float]] = {}

    def add(name: str, got: tuple[list[Stream], float]) -> None:
        streams, wall = measured.get(name, ([], 0.0))
        measured[name] = (streams + got[0], wall + got[1])

    try:
        # Every configuration runs once per round, in turn, so load drifting on a noisy
        # machine hits all of them alike. Only one of them runs at any moment. The raw library
        # at 8 tells the server's costs apart from the library's own batching limit.
        for r in range(args.runs):
            seed = 1000 * r
            add("raw xllamacpp, 1 stream", raw_lib.concurrent(1, 1, args.tokens, seed))
            for c in (1, 4, 8):
                add(f"served, {c} {'stream' if c == 1 else 'concurrent'}", asyncio.run(
                    served_round(server.base_url, c, 1, args.tokens, seed)))
            add("raw xllamacpp, 8 concurrent", raw_lib.concurrent(8, 1, args.tokens, seed))
    finally:
        stop_server(server)
        del raw_lib
        gc.collect()
    order = ["raw xllamacpp, 1 stream", "served, 1 stream", "served, 4 concurrent",
             "served, 8 concurrent", "raw xllamacpp, 8 concurrent"]
    rows = [row(name, *measured[name]) for name in order]
    if served_file != packaged:  # what serving the packaged file as it is would give
        q4 = RawLibrary(packaged, args.threads, spec.options)
        rows.append(row("raw xllamacpp, packaged Q4_1 file, 1 stream",
                        *q4.concurrent(1, args.runs, args.tokens, seed=0)))
        rows.append(row("raw xllamacpp, packaged Q4_1 file, 8 concurrent",
                        *q4.concurrent(8, args.runs, args.tokens, seed=0)))
        del q4

    print(f"\nSmolLM2-135M served from {served_file.name}, {args.threads} threads, "
          f"{args.tokens} tokens/request, {args.runs} rounds\n")
    print("| run | decode tok/s per stream | aggregate tok/s | TTFT p50 ms | TTFT p95 ms |")
    print("|---|---:|---:|---:|---:|")
    for line in rows:
        print(f"| {line['name']} | {line['per_stream']:.1f} | {line['aggregate']:.1f} | "
              f"{line['ttft_p50']:.1f} | {line['ttft_p95']:.1f} |")
    raw_row, one, eight, raw_eight = rows[0], rows[1], rows[3], rows[4]
    # Raw and served single streams of the same round ran back to back: their ratio, taken per
    # round, cancels the machine's drift between rounds.
    paired = statistics.median(
        served.decode_tps / raw.decode_tps for raw, served in
        zip(measured["raw xllamacpp, 1 stream"][0], measured["served, 1 stream"][0],
            strict=True))
    print("\n| ratio | value | target |\n|---|---:|---|")
    print(f"| served 1-stream decode / raw, median of per-round ratios | {paired:.2f} "
          "| >= 0.90 |")
    print(f"| served 1-stream decode / raw, ratio of medians | "
          f"{one['per_stream'] / raw_row['per_stream']:.2f} | (context) |")
    print(f"| aggregate at 8 / served 1-stream | {eight['aggregate'] / one['aggregate']:.2f} "
          "| >= 1.50 |")
    print(f"| served aggregate at 8 / raw aggregate at 8 | "
          f"{eight['aggregate'] / raw_eight['aggregate']:.2f} | (context) |")
    print(f"| raw aggregate at 8 / raw 1-stream | "
          f"{raw_eight['aggregate'] / raw_row['aggregate']:.2f} | (context) |")
    print(f"| TTFT p50 overhead, served 1 - raw (ms) | "
          f"{one['ttft_p50'] - raw_row['ttft_p50']:.1f} | <= 15 |")


if __name__ == "__main__":
    main()
