"""Which weight encoding to serve SmolLM2 from: speed and how far answers move, side by side.

For the packaged Q4_1 GGUF and each re-encoding of its Q4_1 tensors (Q8_0, Q4_0, Q5_0), on the
raw library (xllamacpp in this process, the server's llama.cpp settings):
- greedy-token agreement with the packaged file over 20 prompts (64 tokens each): the share of
  positions where both produced the same token before their first difference, and how many of
  the 20 answers are identical;
- single-stream decode tokens/s and aggregate tokens/s at 8 concurrent streams, every encoding
  measured once per round, in turn.

    python bench/gguf_encodings.py [--tokens 128] [--rounds 3] [--encodings Q8_0,Q4_0,Q5_0]
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.chat_speed import RawLibrary
from pocketserve.backends.gguf_requant import requantize
from pocketserve.catalog import Catalog, resolve_source

PROMPTS = [
    "What is the capital of France?", "Name three primary colours.",
    "Write a haiku about the sea.", "How do I boil an egg?", "What is 12 times 7?",
    "Explain photosynthesis in one sentence.", "Who wrote Romeo and Juliet?",
    "Give me a tip for learning Python.", "What is the tallest mountain on Earth?",
    "Translate 'good morning' into Spanish.", "Why is the sky blue?",
    "List two uses of a paperclip.", "What does a bee make?",
    "Describe a cat in five words.", "What is the boiling point of water?",
    "Suggest a name for a pet goldfish.", "What is a prime number?",
    "How many days are in a leap year?", "Tell me a fun fact about octopuses.",
    "What should I pack for a beach trip?",
]


class Raw:
    """The library with the server's settings: chat_speed's, plus greedy answers."""

    def __init__(self, path: Path, threads: int, options: dict[str, Any]):
        self.raw = RawLibrary(path, threads, options)  # warms itself up
        self.server = self.raw.server

    def greedy(self, prompt: str, tokens: int) -> list[str]:
        """The answer's tokens (one streamed piece each)."""
        pieces: list[str] = []

        def on_chunk(chunk: dict[str, Any]) -> bool:
            for choice in chunk.get("choices", ()):
                if text := (choice.get("delta") or {}).get("content"):
                    pieces.append(text)
            return False

        body = {"messages": [{"role": "user", "content": prompt}], "max_tokens": tokens,
                "temperature": 0.0, "top_k": 1, "stream": True}
        self.server.handle_chat_completions(body, on_chunk)
        return pieces

    def speeds(self, tokens: int, seed: int) -> tuple[float, float]:
        """(single-stream decode tok/s, aggregate tok/s at 8 concurrent streams)."""
        single = self.raw.stream(seed, tokens).decode_tps
        streams, wall = self.raw.concurrent(8, 1, tokens, seed)
        return single, sum(s.tokens for s in streams) / wall


def agreement(base: list[list[str]], other: list[list[str]]) -> tuple[float, int]:
    """(share of positions equal before the first difference, answers identical)."""
    same = total = identical = 0
    for a, b in zip(base, other, strict=True):
        prefix = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y),
                      min(len(a), len(b)))
        same += prefix
        total += max(len(a), len(b))
        identical += a == b
    return same / max(total, 1), identical


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--encodings", default="Q8_0,Q4_0,Q5_0")
    args = parser.parse_args()
    spec = Catalog().find("smollm2-135m-instruct")
    packaged = resolve_source(spec.source)
    cache = Path(tempfile.mkdtemp(prefix="pocketserve-encodings-"))
    files = {"Q4_1 (packaged)": packaged}
    for name in args.encodings.split(","):
        files[name] = requantize(packaged, {"Q4_1": name}, cache)
    options = {k: v for k, v in spec.options.items() if k != "requantize"}

    answers: dict[str, list[list[str]]] = {}
    speeds: dict[str, list[tuple[float, float]]] = {name: [] for name in files}
    for name, path in files.items():  # one model in memory at a time
        raw = Raw(path, args.threads, options)
        answers[name] = [raw.greedy(p, 64) for p in PROMPTS]
        del raw
        gc.collect()
    for r in range(args.rounds):
        for name, path in files.items():
            raw = Raw(path, args.threads, options)
            speeds[name].append(raw.speeds(args.tokens, 100 * r))
            del raw
            gc.collect()

    base = answers["Q4_1 (packaged)"]
    print(f"\nSmolLM2-135M, {args.threads} threads, {args.tokens} tokens, {args.rounds} rounds\n")
    print("| weights | size MB | greedy agreement | identical answers | 1 stream tok/s "
          "| 8 streams tok/s | 8 / 1 |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, path in files.items():
        share, identical = agreement(base, answers[name])
        single = statistics.median(s for s, _ in speeds[name])
        eight = statistics.median(a for _, a in speeds[name])
        print(f"| {name} | {path.stat().st_size / 1e6:.0f} | {share:.2f} | "
              f"{identical}/{len(PROMPTS)} | {single:.1f} | {eight:.1f} | {eight / single:.2f} |")


if __name__ == "__main__":
    main()
