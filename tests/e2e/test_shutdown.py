"""SIGTERM: stop taking requests, let in-flight ones finish within the grace period (or cancel
them after it), stop every worker, leave no process behind."""

from __future__ import annotations

import json
import signal
import threading
import time

import httpx
import psutil

from tests.conftest import RunningServer, start_server
from tests.e2e.helpers import SMOL, admin_state, chat_body, wait_for


def _stream_in_background(server: RunningServer, max_tokens: int) -> tuple[threading.Thread,
                                                                         dict[str, object]]:
    result: dict[str, object] = {"chunks": 0}

    def run() -> None:
        # Greedy: a long story runs to max_tokens, so the finish reason is known ("length").
        body = chat_body(max_tokens=max_tokens, stream=True, temperature=0)
        try:
            with httpx.stream("POST", server.base_url + "/v1/chat/completions", json=body,
                              timeout=120) as reply:
                result["status"] = reply.status_code
                for line in reply.iter_lines():
                    if line == "data: [DONE]":
                        result["done"] = True
                    elif line.startswith("data: "):
                        chunk = json.loads(line[6:])
                        result["chunks"] = int(str(result["chunks"])) + 1
                        for choice in chunk.get("choices", []):
                            result["finish"] = choice.get("finish_reason") or result.get("finish")
        except httpx.HTTPError as exc:
            result["error"] = repr(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, result


def _assert_clean_exit(server: RunningServer) -> None:
    """uvicorn re-raises the SIGTERM it handled once shutdown is complete, so the exit status
    is -SIGTERM (or 0); the log shows the lifespan shutdown (workers stopped) ran."""
    assert server.proc.wait(timeout=60) in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in server.log()


def _worker_pids(server: RunningServer) -> list[int]:
    return [c.pid for c in psutil.Process(server.proc.pid).children(recursive=True)]


def test_sigterm_lets_in_flight_requests_finish(tmp_path: object) -> None:
    server = start_server([SMOL], "--threads", "1", "--shutdown-grace", "60")
    workers = _worker_pids(server)
    assert workers and admin_state(server)["pid"] in workers
    thread, result = _stream_in_background(server, max_tokens=40)
    assert wait_for(lambda: int(str(result["chunks"])) >= 3, 60)
    server.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    refused = False
    try:
        httpx.get(server.base_url + "/health", timeout=2)
    except httpx.HTTPError:
        refused = True
    assert refused  # no new connections once draining
    thread.join(timeout=120)
    assert result.get("done") is True and result.get("finish") == "length", result
    _assert_clean_exit(server)
    assert wait_for(lambda: not any(psutil.pid_exists(p) for p in workers), 10)


def test_sigterm_cancels_what_outlasts_the_grace_period() -> None:
    server = start_server([SMOL], "--threads", "1", "--shutdown-grace", "1")
    workers = _worker_pids(server)
    thread, result = _stream_in_background(server, max_tokens=5000)
    assert wait_for(lambda: int(str(result["chunks"])) >= 2, 60)
    began = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    _assert_clean_exit(server)
    assert time.monotonic() - began < 15
    thread.join(timeout=30)
    assert result.get("done") is not True  # cut short, not finished
    assert wait_for(lambda: not any(psutil.pid_exists(p) for p in workers), 10)


def test_workers_exit_even_if_the_server_is_killed() -> None:
    server = start_server([SMOL], "--threads", "1")
    workers = _worker_pids(server)
    assert workers
    server.proc.send_signal(signal.SIGKILL)  # no shutdown code runs at all
    server.proc.wait(timeout=10)
    # each worker sees EOF on its socket, cancels its work and exits
    assert wait_for(lambda: not any(psutil.pid_exists(p) for p in workers), 15)
