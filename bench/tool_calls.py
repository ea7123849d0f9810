"""Tool calls: how often an answer is a valid call, and what a constrained call costs.

Every prompt of tests/api/tool_helpers.py (50, varied: some ask for a tool, some do not) is
sent with every one of its 5 tool sets, once per `tool_choice` mode:
- `required` and `named` (the set's first function): the grammar holds the model to a call, so
  every answer must be a call of a declared function whose arguments parse and match its
  schema (target 100%);
- `auto`: the model decides; reported are the share of answers that are calls, and of those the
  share that are valid (with SmolLM2, which has no tool format of its own, and with the opt-in
  Qwen2.5-Coder, which has one: `--model qwen2.5-coder-0.5b-instruct`).
Answers cut by `max_tokens` are counted apart: their arguments may stop mid-way (OpenAI's do
too), so no server can promise them valid. Then, one request at a time, each prompt streamed
as plain text (no tools) and as a required call: time to the first delta and milliseconds per
output token after it, with the ratios.

    .venv/bin/python bench/tool_calls.py [--model ID] [--modes required,named,auto]
                                         [--concurrency 4] [--latency-prompts 20] [--cycle]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openai import OpenAI

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.api.tool_helpers import PROMPTS, TOOL_SETS, check_call
from tests.conftest import start_server, stop_server

MAX_TOKENS = 200


@dataclass
class Outcome:
    calls: int  # tool calls in the answer
    valid: bool  # every call names a declared function and its arguments match the schema
    right_name: bool  # for `named`: every call is of the named function
    cut: bool  # stopped by max_tokens (arguments may be cut off mid-way, as with OpenAI)
    error: str = ""


def choice_for(mode: str, tools: list[dict[str, Any]]) -> Any:
    if mode == "named":
        return {"type": "function", "function": {"name": tools[0]["function"]["name"]}}
    return mode


def ask(client: OpenAI, model: str, prompt: str, tools: list[dict[str, Any]],
        mode: str) -> Outcome:
    reply = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": prompt}], tools=tools,  # type: ignore[arg-type]
        tool_choice=choice_for(mode, tools), max_tokens=MAX_TOKENS, temperature=0.7, seed=7)
    calls = reply.choices[0].message.tool_calls or []
    named = tools[0]["function"]["name"]
    outcome = Outcome(len(calls), True, all(c.function.name == named for c in calls),  # type: ignore[union-attr]
                      reply.choices[0].finish_reason == "length")
    for call in calls:
        try:
            check_call(tools, call.function.name, call.function.arguments)  # type: ignore[union-attr]
        except Exception as exc:  # not JSON, not declared, or not matching the schema
            outcome.valid, outcome.error = False, f"{type(exc).__name__}: {exc}"[:200]
    return outcome


def share_run(client: OpenAI, model: str, mode: str, concurrency: int, cycle: bool) -> None:
    names = list(TOOL_SETS)
    jobs = ([(p, names[i % len(names)]) for i, p in enumerate(PROMPTS)] if cycle
            else [(p, name) for name in names for p in PROMPTS])
    with ThreadPoolExecutor(concurrency) as pool:
        outcomes = list(pool.map(lambda job: ask(client, model, job[0], TOOL_SETS[job[1]],
                                                 mode), jobs))
    n = len(outcomes)
    calls = [o for o in outcomes if o.calls]
    whole = [o for o in calls if not o.cut]
    valid = [o for o in whole if o.valid]
    named = (f"{sum(o.right_name for o in calls) / max(1, len(calls)):.0%}"
             if mode == "named" else "")
    print(f"| {mode} | {n} | {len(calls) / n:.0%} | {sum(o.cut for o in outcomes)} | "
          f"{len(valid) / max(1, len(whole)):.0%} | {named} |", flush=True)
    for o in [o for o in whole if not o.valid][:3]:
        print(f"    invalid: {o.error}")


def timed(client: OpenAI, model: str, prompt: str,
          tools: list[dict[str, Any]] | None) -> tuple[float, float]:
    """(seconds to the first delta, seconds per output token after it) of one streamed answer."""
    extra: dict[str, Any] = {"tools": tools, "tool_choice": "required"} if tools else {}
    start = time.perf_counter()
    first = last = 0.0
    tokens = 0
    for chunk in client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": prompt}], stream=True,
            stream_options={"include_usage": True}, max_tokens=MAX_TOKENS, temperature=0,
            **extra):
        if chunk.usage is not None:
            tokens = chunk.usage.completion_tokens
        if chunk.choices and (chunk.choices[0].delta.content or chunk.choices[0].delta.tool_calls):
            last = time.perf_counter()
            first = first or last
    return first - start, (last - first) / max(1, tokens - 1)


def latency_run(client: OpenAI, model: str, prompts: int) -> None:
    tools = TOOL_SETS["assistant"]  # the largest set: the longest prompt and grammar
    plain, called = [], []
    for prompt in PROMPTS[:prompts]:  # interleaved, so drift hits both alike
        plain.append(timed(client, model, prompt, None))
        called.append(timed(client, model, prompt, tools))
    ttft = [statistics.median(x[0] for x in rows) for rows in (plain, called)]
    per_token = [statistics.median(x[1] for x in rows) for rows in (plain, called)]
    print(f"\nlatency, one request at a time, {prompts} prompts, tool set 'assistant' (6 "
          "functions), medians:")
    print("| | plain text | required call | ratio |\n|---|---:|---:|---:|")
    print(f"| time to first delta (ms) | {ttft[0] * 1e3:.0f} | {ttft[1] * 1e3:.0f} | "
          f"{ttft[1] / ttft[0]:.2f} |")
    print(f"| ms per output token | {per_token[0] * 1e3:.1f} | {per_token[1] * 1e3:.1f} | "
          f"{per_token[1] / per_token[0]:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--modes", default="required,named,auto")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--latency-prompts", type=int, default=20)
    parser.add_argument("--cycle", action="store_true", help="each prompt with one tool set "
                        "in turn (50 answers per mode, for slower models), not with all five")
    args = parser.parse_args()
    server = start_server([args.model], timeout_s=600)
    try:
        client = server.client(timeout=600)
        print(f"{args.model}: {len(PROMPTS)} prompts x "
              f"{'one of ' if args.cycle else ''}{len(TOOL_SETS)} tool sets per mode\n")
        print("| tool_choice | answers | are calls | cut by max_tokens | valid of the calls "
              "not cut | of the named function |\n|---|---:|---:|---:|---:|---:|")
        for mode in [m for m in args.modes.split(",") if m]:
            share_run(client, args.model, mode, args.concurrency, args.cycle)
        if args.latency_prompts:
            latency_run(client, args.model, args.latency_prompts)
    finally:
        stop_server(server)


if __name__ == "__main__":
    main()
