"""`pocketserve serve --ray` on a real local Ray cluster that this module starts (`ray start
--head`): two replicas of the chat model share concurrent requests, streaming passes through,
a replica killed with SIGKILL is replaced while requests keep succeeding, and shutdown leaves no
process of ours behind."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from openai import AsyncOpenAI, OpenAI

from tests.conftest import RunningServer, free_port, start_server, stop_server

pytest.importorskip("ray.serve", reason="the ray extra is not installed")
MODEL = "smollm2-135m-instruct"
RAY = str(Path(sys.executable).with_name("ray"))
ENV = {"RAY_USAGE_STATS_ENABLED": "0"}


def _ray(*args: str) -> None:
    subprocess.run([RAY, *args], check=True, capture_output=True, timeout=180,
                   env={**os.environ, **ENV})


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    temp = tmp_path_factory.mktemp("ray")
    _ray("start", "--head", "--port", str(port), "--num-cpus", "2",
         "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}")
    yield f"127.0.0.1:{port}"
    _ray("stop", "--force")


@pytest.fixture(scope="module")
def server(cluster: str) -> Iterator[RunningServer]:
    running = start_server([MODEL], "--ray", "--ray-address", cluster, "--replicas",
                           f"{MODEL}=2", "--threads", "1", env=ENV, timeout_s=300)
    yield running
    stop_server(running)


def _replicas_seen(server: RunningServer) -> list[int]:
    models = httpx.get(server.base_url + "/admin/models", timeout=10).json()["data"]
    return list(next(m for m in models if m["id"] == MODEL)["info"]["replica_pids_seen"])


async def _many(server: RunningServer, count: int, tokens: int = 12) -> list[int]:
    client = AsyncOpenAI(base_url=server.base_url + "/v1", api_key="unused", max_retries=0)
    answers = await asyncio.gather(*[client.chat.completions.create(
        model=MODEL, max_tokens=tokens, messages=[{"role": "user", "content": f"Story {i}"}])
        for i in range(count)])
    return [a.usage.completion_tokens for a in answers if a.usage is not None]


def test_two_replicas_share_concurrent_requests(server: RunningServer) -> None:
    assert asyncio.run(_many(server, 8)) == [12] * 8
    assert len(_replicas_seen(server)) == 2


def test_streaming_and_errors_pass_through_ray(server: RunningServer) -> None:
    client = OpenAI(base_url=server.base_url + "/v1", api_key="unused", max_retries=0)
    pieces = [c.choices[0].delta.content for c in client.chat.completions.create(
        model=MODEL, max_tokens=16, stream=True, temperature=0,
        messages=[{"role": "user", "content": "Count from one to ten."}]) if c.choices]
    assert len([p for p in pieces if p]) >= 8
    # A refusal from the engine (here: a prompt past the context) keeps its status and param.
    too_long = httpx.post(server.base_url + "/v1/chat/completions", timeout=60, json={
        "model": MODEL, "max_tokens": 5,
        "messages": [{"role": "user", "content": "word " * 20_000}]})
    assert too_long.status_code == 400 and too_long.json()["error"]["param"] == "messages"
    metrics = httpx.get(server.base_url + "/metrics", timeout=10).text
    assert f'model="{MODEL}"' in metrics


def test_a_killed_replica_is_replaced_and_requests_succeed(server: RunningServer) -> None:
    before = _replicas_seen(server)
    os.kill(before[0], signal.SIGKILL)
    time.sleep(4)
    assert asyncio.run(_many(server, 6, tokens=6)) == [6] * 6
    deadline = time.monotonic() + 120
    while True:  # Ray starts a new replica in its place; requests then reach it too
        asyncio.run(_many(server, 4, tokens=4))
        fresh = set(_replicas_seen(server)) - set(before)
        if fresh:
            break
        assert time.monotonic() < deadline, "no new replica answered"
        time.sleep(2)
    assert not psutil.pid_exists(before[0])


def test_shutdown_leaves_no_process_of_ours(server: RunningServer) -> None:
    asyncio.run(_many(server, 4, tokens=2))
    replicas = [p for p in _replicas_seen(server) if psutil.pid_exists(p)]
    workers = [c.pid for r in replicas for c in psutil.Process(r).children()]
    assert replicas and workers  # each replica runs the model's worker process under it
    stop_server(server)  # the fixture's own stop then finds it stopped
    ours = [*replicas, *workers]
    deadline = time.monotonic() + 60
    while any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie" for p in ours):
        assert time.monotonic() < deadline, "a replica or its worker outlived the server"
        time.sleep(0.5)
