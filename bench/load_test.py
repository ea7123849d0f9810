"""Load test: N concurrent chat clients for a bounded time against a local server.

Starts `pocketserve serve` on 127.0.0.1 (or uses --url, loopback only), runs `--rounds` rounds of
`--clients` clients for `--seconds` each, and prints per round: requests served, 429s, other
errors (must be 0), p50/p95/p99 latency, and the server's memory (server + workers, RSS) before
and after, so growth run over run shows. Never part of the test suite's pass/fail.

    python bench/load_test.py --clients 64 --seconds 20 --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.conftest import RunningServer, start_server, stop_server


@dataclass
class Round:
    latencies: list[float] = field(default_factory=list)
    limited: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0  # until the last in-flight request came back


def _memory_mb(pid: int) -> float:
    """RSS of the server and all its worker processes together."""
    root = psutil.Process(pid)
    procs = [root, *root.children(recursive=True)]
    total = 0
    for proc in procs:
        with contextlib.suppress(psutil.Error):  # a worker may exit meanwhile
            total += proc.memory_info().rss
    return total / (1024 * 1024)


async def _client(http: httpx.AsyncClient, url: str, body: dict[str, object], until: float,
                  result: Round) -> None:
    while time.monotonic() < until:
        began = time.monotonic()
        try:
            reply = await http.post(url, json=body)
        except httpx.HTTPError as exc:
            result.errors[type(exc).__name__] = result.errors.get(type(exc).__name__, 0) + 1
            continue
        if reply.status_code == 200:
            result.latencies.append(time.monotonic() - began)
        elif reply.status_code == 429:
            result.limited += 1
            await asyncio.sleep(min(2.0, float(reply.headers.get("retry-after", "1"))))
        else:
            key = f"HTTP {reply.status_code}"
            result.errors[key] = result.errors.get(key, 0) + 1


async def _round(base: str, args: argparse.Namespace) -> Round:
    body = {"model": args.model, "max_tokens": args.max_tokens, "temperature": 0.7,
            "messages": [{"role": "user", "content": "Say something about the sea."}]}
    result = Round()
    began = time.monotonic()
    until = began + args.seconds
    limits = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients)
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    async with httpx.AsyncClient(timeout=args.seconds + 300, limits=limits,
                                 headers=headers) as http:
        await asyncio.gather(*(_client(http, base + "/v1/chat/completions", body, until, result)
                               for _ in range(args.clients)))
    result.elapsed_s = time.monotonic() - began
    return result


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--url", help="an already running server on loopback")
    parser.add_argument("--api-key", default=os.environ.get("POCKETSERVE_LOAD_KEY"))
    parser.add_argument("server_args", nargs="*", help="extra `serve` arguments, after --")
    args = parser.parse_args()
    server: RunningServer | None = None
    if args.url:
        host = urlparse(args.url).hostname or ""
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise SystemExit("load tests run against loopback addresses only")
        base, pid = args.url.rstrip("/"), None
    else:
        server = start_server([args.model], "--log-level", "warning", *args.server_args)
        base, pid = server.base_url, server.proc.pid
    try:
        print(f"{args.clients} clients, {args.seconds:.0f} s per round, max_tokens "
              f"{args.max_tokens}, {os.cpu_count()} CPUs")
        print(f"{'round':>5} {'served':>7} {'429s':>6} {'errors':>7} {'p50 s':>7} {'p95 s':>7} "
              f"{'p99 s':>7} {'req/s':>6} {'mem before MB':>14} {'mem after MB':>13}")
        failed = 0
        for number in range(1, args.rounds + 1):
            before = _memory_mb(pid) if pid else float("nan")
            result = asyncio.run(_round(base, args))
            after = _memory_mb(pid) if pid else float("nan")
            lat = result.latencies
            errors = sum(result.errors.values())
            failed += errors
            print(f"{number:>5} {len(lat):>7} {result.limited:>6} {errors:>7} "
                  f"{_pct(lat, 50):>7.2f} {_pct(lat, 95):>7.2f} {_pct(lat, 99):>7.2f} "
                  f"{len(lat) / result.elapsed_s:>6.1f} {before:>14.0f} {after:>13.0f}")
            if result.errors:
                print(f"      errors: {result.errors}")
        return 1 if failed else 0
    finally:
        if server is not None:
            stop_server(server)


if __name__ == "__main__":
    sys.exit(main())
