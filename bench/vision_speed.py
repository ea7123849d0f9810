"""Vision speed: what one image costs served, against the raw library, on the same tiny model.

The model is the tests' random-weight Qwen2-VL (tests/vision_models.py: ~200k parameters, so
the figures show the serving overhead more than a real model's compute), on both routes:
transformers (its folder) and llama.cpp (its GGUF and projector).

Per image (112 x 112 PNG, a fresh picture each time, `max_tokens=1`):
- raw: the library in this process with no pocketserve code. transformers: the processor
  (preprocessing) then `generate(max_new_tokens=1)` (the prompt, with the image's tokens);
  llama.cpp: xllamacpp's own server API with the image as a data: URL.
- served: `pocketserve serve` as a subprocess, one image chat over HTTP (openai's JSON, the
  image base64 in a data: URL), timed from send to answer.
- ratio = raw / served (1.0: serving costs nothing; the target is >= 0.9).
Then 8 images as 8 concurrent requests against the same 8 one after another, served.

    python bench/vision_speed.py [--runs 10] [--threads 1]
"""

from __future__ import annotations

import argparse
import base64
import io
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.conftest import start_server, stop_server
from tests.vision_models import Built, cached_build, png

QUESTION = "Describe the picture."


def median_ms(run: Callable[[int], Any], runs: int) -> float:
    run(-1)  # warm
    times = []
    for i in range(runs):
        start = time.perf_counter()
        run(i)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


# -- raw libraries ---------------------------------------------------------------------------

def raw_transformers(built: Built, runs: int, threads: int) -> tuple[float, float]:
    """(preprocessing ms, prompt ms) per image, the library alone."""
    import torch
    from PIL import Image
    from transformers import AutoModelForImageTextToText

    from pocketserve.backends.vlm_processors import load_processor

    torch.set_num_threads(threads)
    processor = load_processor(built.folder, "qwen2_vl")
    model = AutoModelForImageTextToText.from_pretrained(str(built.folder)).eval()
    messages = [{"role": "user", "content": [{"type": "image"},
                                             {"type": "text", "text": QUESTION}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def prepare(i: int) -> Any:
        image = Image.open(io.BytesIO(png(seed=i + 100))).convert("RGB")
        return processor(text=[text], images=[[image]], return_tensors="pt")

    prepared = prepare(0)

    def prompt(_: int) -> None:
        with torch.inference_mode():
            model.generate(**prepared, max_new_tokens=1, do_sample=False)

    return median_ms(prepare, runs), median_ms(prompt, runs)


def raw_llamacpp(built: Built, runs: int, threads: int) -> float:
    """ms per image chat of one token, xllamacpp's server API alone."""
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = str(built.gguf)
    params.mmproj.path = str(built.mmproj)
    params.n_ctx, params.n_parallel, params.verbosity = 2048, 8, -1
    params.cpuparams.n_threads = params.cpuparams_batch.n_threads = threads
    server = xllamacpp.Server(params)

    def one(i: int) -> None:
        result = server.handle_chat_completions(
            {"messages": image_chat(i), "max_tokens": 1, "temperature": 0})
        assert "error" not in result, result

    return median_ms(one, runs)  # the server goes with this frame


# -- served ----------------------------------------------------------------------------------

def image_chat(i: int) -> list[dict[str, Any]]:
    url = "data:image/png;base64," + base64.b64encode(png(seed=i + 100)).decode()
    return [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                         {"type": "text", "text": QUESTION}]}]


def served_one(client: httpx.Client, model: str, i: int) -> None:
    reply = client.post("/v1/chat/completions", json={
        "model": model, "messages": image_chat(i), "max_tokens": 1, "temperature": 0})
    if reply.status_code != 200:
        raise RuntimeError(f"{model}: {reply.status_code} {reply.text[:300]}")


def batch_vs_row(client: httpx.Client, model: str) -> tuple[float, float]:
    """(8 concurrent, 8 one after another) wall ms, 8 tokens each."""
    def one(i: int) -> None:
        reply = client.post("/v1/chat/completions", json={
            "model": model, "messages": image_chat(i), "max_tokens": 8, "temperature": 0})
        reply.raise_for_status()

    start = time.perf_counter()
    for i in range(8):
        one(i)
    in_row = time.perf_counter() - start
    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return (time.perf_counter() - start) * 1000, in_row * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    built = cached_build("qwen2_vl")
    if built.gguf is None:
        sys.exit("llama.cpp's converter is missing: python tests/get_llama_convert.py")
    hf_id, gguf_id = built.folder.name, built.gguf.stem

    prep_ms, prompt_ms = raw_transformers(built, args.runs, args.threads)
    llama_ms = raw_llamacpp(built, args.runs, args.threads)
    server = start_server([str(built.folder), str(built.gguf)], "--mmproj", str(built.mmproj),
                          "--threads", str(args.threads))
    try:
        with httpx.Client(base_url=server.base_url, timeout=120) as client:
            try:
                served = {m: median_ms(lambda i, m=m: served_one(client, m, i), args.runs)
                          for m in (hf_id, gguf_id)}
                batches = {m: batch_vs_row(client, m) for m in (hf_id, gguf_id)}
            except RuntimeError as exc:
                print(f"served side failed: {exc}")
                served, batches = {}, {}
    finally:
        stop_server(server)

    print(f"per image, median of {args.runs}, {args.threads} thread(s), tiny Qwen2-VL "
          "(112x112 image, 16 image tokens, 36 prompt tokens)")
    print(f"{'route':14} {'raw prep ms':>12} {'raw prompt ms':>14} {'raw total ms':>13} "
          f"{'served ms':>10} {'ratio':>6}")
    rows = [("transformers", prep_ms, prompt_ms, prep_ms + prompt_ms, served.get(hf_id)),
            ("llama.cpp", float("nan"), float("nan"), llama_ms, served.get(gguf_id))]
    for name, prep, prompt, total, got in rows:
        ratio = f"{total / got:6.2f}" if got else "   n/a"
        print(f"{name:14} {prep:12.1f} {prompt:14.1f} {total:13.1f} "
              f"{got if got else float('nan'):10.1f} {ratio}")
    for model, (together, in_row) in batches.items():
        print(f"{model}: 8 images at once {together:.0f} ms, 8 in a row {in_row:.0f} ms "
              f"({in_row / together:.2f}x)")


if __name__ == "__main__":
    main()
