"""Vision speed: what one image costs served, against the raw library, on the same tiny model.

The model is the tests' random-weight Qwen2-VL (tests/vision_models.py: ~200k parameters, so
the figures show the serving overhead more than a real model's compute), on both routes:
transformers (its folder) and llama.cpp (its GGUF and projector).

Per image (square PNGs, 112 and 448 pixels a side by default: 16 and 256 image tokens; a fresh
picture each time, made before the clock starts; `max_tokens=1`):
- raw: the library in this process with no pocketserve code. transformers: the processor
  (preprocessing) then `generate(max_new_tokens=1)` (the prompt, with the image's tokens);
  llama.cpp: xllamacpp's own server API with the image as a data: URL.
- served: `pocketserve serve` as a subprocess, one image chat over HTTP (openai's JSON, the
  image base64 in a data: URL), timed from send to answer.
- ratio = raw / served (1.0: serving costs nothing; the target is >= 0.9).
Then 8 images as 8 concurrent requests against the same 8 one after another, served.

Where the served time went, timed piece by piece: the HTTP and API layer (FastAPI, validation,
middleware) about 2 ms a request, the hop to the worker process about 0.6 ms, the backend's
own code over the bare library 0.4 ms on the 112-pixel image and 1-3 ms on the 448 one.

    python bench/vision_speed.py [--runs 10] [--threads 1] [--sides 112,448]
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
    run(runs)  # warm
    times = []
    for i in range(runs):
        start = time.perf_counter()
        run(i)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


# -- raw libraries ---------------------------------------------------------------------------

def pictures(side: int, runs: int) -> list[bytes]:
    """runs + 1 different PNGs (the last one warms up), made before any timing."""
    return [png(side, side, seed=i + 100) for i in range(runs + 1)]


def raw_transformers(built: Built, images: list[bytes], threads: int) -> tuple[float, float]:
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
        image = Image.open(io.BytesIO(images[i])).convert("RGB")
        return processor(text=[text], images=[[image]], return_tensors="pt")

    prepared = prepare(0)

    def prompt(_: int) -> None:
        with torch.inference_mode():
            model.generate(**prepared, max_new_tokens=1, do_sample=False)

    runs = len(images) - 1
    return median_ms(prepare, runs), median_ms(prompt, runs)


def raw_llamacpp(built: Built, sides: dict[int, list[bytes]], threads: int) -> dict[int, float]:
    """ms per image chat of one token for each side, xllamacpp's server API alone."""
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = str(built.gguf)
    params.mmproj.path = str(built.mmproj)
    params.n_ctx, params.n_parallel, params.verbosity = 8192, 8, -1
    params.cpuparams.n_threads = params.cpuparams_batch.n_threads = threads
    server = xllamacpp.Server(params)

    def timed(images: list[bytes]) -> float:
        chats = [image_chat(image) for image in images]

        def one(i: int) -> None:
            result = server.handle_chat_completions(
                {"messages": chats[i], "max_tokens": 1, "temperature": 0})
            assert "error" not in result, result

        return median_ms(one, len(images) - 1)

    return {side: timed(images) for side, images in sides.items()}  # the server goes here


# -- served ----------------------------------------------------------------------------------

def image_chat(image: bytes) -> list[dict[str, Any]]:
    url = "data:image/png;base64," + base64.b64encode(image).decode()
    return [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                         {"type": "text", "text": QUESTION}]}]


def chat_bodies(model: str, images: list[bytes], max_tokens: int) -> list[dict[str, Any]]:
    """One greedy image chat request body per image, built before any timing."""
    return [{"model": model, "messages": image_chat(image), "max_tokens": max_tokens,
             "temperature": 0} for image in images]


def served_ms(client: httpx.Client, model: str, images: list[bytes]) -> float:
    """Median ms of one image chat of one token over HTTP."""
    bodies = chat_bodies(model, images, max_tokens=1)

    def one(i: int) -> None:
        reply = client.post("/v1/chat/completions", json=bodies[i])
        if reply.status_code != 200:
            raise RuntimeError(f"{model}: {reply.status_code} {reply.text[:300]}")

    return median_ms(one, len(images) - 1)


def batch_vs_row(client: httpx.Client, model: str, images: list[bytes]) -> tuple[float, float]:
    """(8 concurrent, 8 one after another) wall ms, 8 tokens each."""
    bodies = chat_bodies(model, images[:8], max_tokens=8)

    def one(i: int) -> None:
        client.post("/v1/chat/completions", json=bodies[i]).raise_for_status()

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
    parser.add_argument("--sides", default="112,448", help="image sizes to time, in pixels")
    args = parser.parse_args()
    built = cached_build("qwen2_vl")
    if built.gguf is None:
        sys.exit("llama.cpp's converter is missing: python tests/get_llama_convert.py")
    hf_id, gguf_id = built.folder.name, built.gguf.stem
    args.runs = max(args.runs, 8)  # the batch takes 8 pictures
    sides = {int(side): pictures(int(side), args.runs)
             for side in args.sides.split(",")}

    raw_hf = {side: raw_transformers(built, images, args.threads)
              for side, images in sides.items()}
    raw_llama = raw_llamacpp(built, sides, args.threads)
    server = start_server([str(built.folder), str(built.gguf)], "--mmproj", str(built.mmproj),
                          "--threads", str(args.threads))
    served: dict[tuple[str, int], float] = {}
    batches: dict[str, tuple[float, float]] = {}
    try:
        with httpx.Client(base_url=server.base_url, timeout=120) as client:
            try:
                for side, images in sides.items():
                    for m in (hf_id, gguf_id):
                        served[m, side] = served_ms(client, m, images)
                small = sides[min(sides)]
                batches = {m: batch_vs_row(client, m, small) for m in (hf_id, gguf_id)}
            except RuntimeError as exc:
                print(f"served side failed: {exc}")
    finally:
        stop_server(server)

    print(f"per image, median of {args.runs}, {args.threads} thread(s), tiny Qwen2-VL "
          "(~200k parameters)")
    print(f"{'route':14} {'side':>5} {'raw prep ms':>12} {'raw prompt ms':>14} "
          f"{'raw total ms':>13} {'served ms':>10} {'ratio':>6}")
    for side in sides:
        prep, prompt = raw_hf[side]
        rows = [("transformers", prep, prompt, prep + prompt, served.get((hf_id, side))),
                ("llama.cpp", float("nan"), float("nan"), raw_llama[side],
                 served.get((gguf_id, side)))]
        for name, p, q, total, got in rows:
            ratio = f"{total / got:6.2f}" if got else "   n/a"
            print(f"{name:14} {side:5d} {p:12.1f} {q:14.1f} {total:13.1f} "
                  f"{got if got else float('nan'):10.1f} {ratio}")
    for model, (together, in_row) in batches.items():
        print(f"{model}: 8 images at once {together:.0f} ms, 8 in a row {in_row:.0f} ms "
              f"({in_row / together:.2f}x)")


if __name__ == "__main__":
    main()
