"""Chat decode speed: the raw llama.cpp library vs pocketserve, side by side in one run.

Raw: xllamacpp in this process, no HTTP, same model, threads and slots as the server.
Served: `pocketserve serve` as a subprocess, streamed over HTTP at concurrency 1, 4 and 8.
Per stream: time to first token (TTFT) and decode tokens/s after the first token.
Aggregate: all completion tokens of a round / the round's wall time.

    python bench/chat_speed.py [--tokens 128] [--runs 5]
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
from pocketserve.catalog import Catalog, resolve_source
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

    def __init__(self, threads: int, slots: int, ctx: int):
        import xllamacpp

        params = xllamacpp.CommonParams()
        params.model.path = str(resolve_source(Catalog().find(MODEL).source))
        params.n_ctx, params.n_parallel, params.kv_unified = ctx, slots, True
        params.cpuparams.n_threads = params.cpuparams_batch.n_threads = threads
        params.n_batch = 512
        params.verbosity = -1
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
        await served_stream(client, -1, 8)  # warm-up
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


def row(name: str, streams: list[Stream], wall: float | None) -> dict[str, Any]:
    ttft = [s.ttft_s * 1000 for s in streams]
    total = sum(s.tokens for s in streams)
    return {"name": name, "per_stream": statistics.median(s.decode_tps for s in streams),
            "aggregate": total / wall if wall else statistics.median(
                s.tokens / (s.ttft_s + s.decode_s) for s in streams),
            "ttft_p50": pct(ttft, 0.5), "ttft_p95": pct(ttft, 0.95)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    spec = Catalog().find(MODEL)
    slots, ctx = int(spec.options["n_parallel"]), int(spec.options["n_ctx"])

    raw_lib = RawLibrary(args.threads, slots, ctx)
    server = start_server([MODEL], "--threads", str(args.threads), "--log-level", "warning")
    raw: list[Stream] = []
    single: list[Stream] = []
    single_wall = 0.0
    rows = []
    try:
        # Raw and served single streams alternate, so load drifting on a noisy machine hits
        # both sides alike. Only one of them runs at any moment.
        for r in range(args.runs):
            raw.append(raw_lib.stream(r, args.tokens))
            got, wall = asyncio.run(served_round(server.base_url, 1, 1, args.tokens, seed=r))
            single += got
            single_wall += wall
        rows.append(row("raw xllamacpp, 1 stream", raw, None))
        rows.append(row("served, 1 stream", single, single_wall))
        for c in (4, 8):
            streams, wall = asyncio.run(
                served_round(server.base_url, c, args.runs, args.tokens, seed=0))
            rows.append(row(f"served, {c} concurrent", streams, wall))
        # The library's own batching at 8, to tell serving costs from the library's limit.
        raw8, raw8_wall = raw_lib.concurrent(8, args.runs, args.tokens, seed=50_000)
        rows.append(row("raw xllamacpp, 8 concurrent", raw8, raw8_wall))
    finally:
        stop_server(server)
        del raw_lib
        gc.collect()

    print(f"\nSmolLM2-135M Q4_1, {args.threads} threads, {args.tokens} tokens/request, "
          f"{args.runs} rounds\n")
    print("| run | decode tok/s per stream | aggregate tok/s | TTFT p50 ms | TTFT p95 ms |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['name']} | {r['per_stream']:.1f} | {r['aggregate']:.1f} | "
              f"{r['ttft_p50']:.1f} | {r['ttft_p95']:.1f} |")
    raw_row, one, eight, raw_eight = rows[0], rows[1], rows[3], rows[4]
    print("\n| ratio | value | target |\n|---|---:|---|")
    print(f"| served 1-stream decode / raw | {one['per_stream'] / raw_row['per_stream']:.2f} "
          "| >= 0.90 |")
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
