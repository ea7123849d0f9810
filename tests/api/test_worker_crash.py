"""A worker killed with SIGKILL: the server stays up, says so, restarts it, serves again."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator

import httpx
import psutil
import pytest

from tests.conftest import RunningServer, start_server, stop_server

MODEL = "smollm2-135m-instruct"


@pytest.fixture()
def server() -> Iterator[RunningServer]:
    s = start_server([MODEL])
    yield s
    stop_server(s)


def _worker_pid(server: RunningServer) -> int:
    children = psutil.Process(server.proc.pid).children()
    assert len(children) == 1, children
    return children[0].pid


def test_sigkilled_worker_is_restarted(server: RunningServer) -> None:
    url = server.base_url
    old_pid = _worker_pid(server)
    outcome: dict[str, httpx.Response] = {}

    def long_request() -> None:
        # Greedy counting goes on and on: the request is still running when the worker dies
        # (a sampled essay could end with its first second).
        outcome["reply"] = httpx.post(url + "/v1/completions", timeout=60, json={
            "model": MODEL, "max_tokens": 2000, "temperature": 0,
            "prompt": ", ".join(str(i) for i in range(1, 40)) + ","})

    thread = threading.Thread(target=long_request)
    thread.start()
    time.sleep(1.0)
    psutil.Process(old_pid).send_signal(signal.SIGKILL)
    thread.join(30)

    in_flight = outcome["reply"]
    assert in_flight.status_code == 503
    assert in_flight.json()["error"]["code"] == "model_not_ready"
    assert server.proc.poll() is None  # the server itself is still up

    seen_unready = False
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        health = httpx.get(url + "/health")
        if health.status_code == 503:
            seen_unready = True
            assert health.json()["not_ready"] == [MODEL]
        elif health.status_code == 200:
            break
        time.sleep(0.05)
    assert health.status_code == 200
    model = httpx.get(url + f"/v1/models/{MODEL}").json()
    assert model["restarts"] == 1 and model["state"] == "ready"
    assert _worker_pid(server) != old_pid
    reply = httpx.post(url + "/v1/chat/completions", timeout=60, json={
        "model": MODEL, "max_tokens": 3, "messages": [{"role": "user", "content": "hi"}]})
    assert reply.status_code == 200
    # The restart waits at least its backoff, so a poll every 50 ms sees the gap.
    assert seen_unready
