"""What serving through Ray Serve costs: the plain server against `pocketserve serve --ray`, same
model and threads, one run.

A local Ray cluster is started (`ray start --head`); both servers serve SmolLM2 (one replica on
Ray), driven with the openai SDK in interleaved rounds of one stream each, so drift on a noisy
machine hits both alike. Decode tokens/s is counted after the first token. Target: Ray keeps
>= 0.85 of the plain server's decode speed.

    python bench/ray_overhead.py [--tokens 256] [--rounds 6] [--threads 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.chat_speed import MODEL, Stream
from bench.chat_vs_llama_server import one_round
from tests.conftest import free_port, start_server, stop_server

RAY = str(Path(sys.executable).with_name("ray"))
ENV = {"RAY_USAGE_STATS_ENABLED": "0"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    port = free_port()
    env = {**os.environ, **ENV}
    subprocess.run([RAY, "start", "--head", "--port", str(port), "--include-dashboard=false",
                    "--disable-usage-stats", f"--temp-dir={tempfile.mkdtemp(prefix='ray-')}"],
                   check=True, capture_output=True, env=env)
    threads = ["--threads", str(args.threads), "--log-level", "warning"]
    plain = start_server([MODEL], *threads)
    ray = start_server([MODEL], "--ray", "--ray-address", f"127.0.0.1:{port}", *threads,
                       env=ENV, timeout_s=300)
    servers = {"plain": plain.base_url, "ray": ray.base_url}
    runs: dict[str, list[Stream]] = {name: [] for name in servers}
    try:
        for url in servers.values():
            asyncio.run(one_round(url, MODEL, 1, 8, seed=-1))  # warm-up
        for r in range(args.rounds):
            for name, url in servers.items():
                streams, _ = asyncio.run(one_round(url, MODEL, 1, args.tokens, 100 * r))
                runs[name] += streams
    finally:
        stop_server(ray)
        stop_server(plain)
        subprocess.run([RAY, "stop", "--force"], capture_output=True, env=env)

    print(f"\nSmolLM2-135M, {args.threads} threads, {args.tokens} tokens/request, "
          f"{args.rounds} interleaved rounds, one stream\n")
    print("| server | decode tok/s (median) | TTFT p50 ms |\n|---|---:|---:|")
    for name, streams in runs.items():
        print(f"| {name} | {statistics.median(s.decode_tps for s in streams):.1f} | "
              f"{statistics.median(s.ttft_s for s in streams) * 1000:.1f} |")
    paired = statistics.median(a.decode_tps / b.decode_tps
                               for a, b in zip(runs["ray"], runs["plain"], strict=True))
    ttft = statistics.median(a.ttft_s - b.ttft_s
                             for a, b in zip(runs["ray"], runs["plain"], strict=True))
    print("\n| ray / plain | value | target |\n|---|---:|---|")
    print(f"| decode, median of per-round ratios | {paired:.2f} | >= 0.85 |")
    print(f"| TTFT added by Ray, median ms | {ttft * 1000:.1f} | |")


if __name__ == "__main__":
    main()
