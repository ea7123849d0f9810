"""Keys, per-key token limits, input limits, request ids in logs, metrics that move, and the
refusal to listen openly without keys: on a real server with the real model."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import RunningServer, start_server, stop_server
from tests.e2e.helpers import SMOL, chat_body, metric, write_config

# The token limit (60/min) applies to every key, so each test spends its own key's budget.
KEYS = {name: f"sk-core-{name}" for name in ("sdk", "limited", "other", "input", "metrics",
                                             "ids")}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    keys = tmp_path_factory.mktemp("keys") / "keys.txt"
    keys.write_text("# test keys\n" + "\n".join(KEYS.values()) + "\n")
    config = write_config(tmp_path_factory.mktemp("cfg"), {
        "models": [SMOL], "threads": 1, "log_json": True, "api_keys_file": str(keys),
        "rate_limit_tokens_per_min": 60, "max_input_chars": {"chat": 2000}})
    running = start_server([], "--config", str(config), env={"POCKETSERVE_API_KEYS": "[]"})
    yield running
    stop_server(running)


def _post(server: RunningServer, body: dict[str, object], key: str | None,
          **headers: str) -> httpx.Response:
    sent = dict(headers)
    if key is not None:
        sent["Authorization"] = f"Bearer {key}"
    return httpx.post(server.base_url + "/v1/chat/completions", json=body, headers=sent,
                      timeout=120)


def test_key_required_and_sdk_works_with_it(server: RunningServer) -> None:
    refused = _post(server, chat_body(max_tokens=2), key=None)
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "invalid_api_key"
    client = server.client()
    client.api_key = KEYS["sdk"]
    reply = client.chat.completions.create(model=SMOL, max_tokens=3,
                                           messages=[{"role": "user", "content": "Hi"}])
    assert reply.usage is not None and reply.usage.completion_tokens >= 1
    assert httpx.get(server.base_url + "/health").status_code == 200  # open path


def test_tokens_per_minute_limit_per_key(server: RunningServer) -> None:
    codes = []
    for _ in range(4):
        reply = _post(server, chat_body("Hi", max_tokens=8), key=KEYS["limited"])
        codes.append(reply.status_code)
        if reply.status_code == 429:
            assert reply.json()["error"]["code"] == "rate_limit_tokens"
            assert 1 <= int(reply.headers["retry-after"]) <= 60
            break
    assert codes[0] == 200 and codes[-1] == 429
    assert _post(server, chat_body("Hi", max_tokens=2), KEYS["other"]).status_code == 200


def test_input_length_limit(server: RunningServer) -> None:
    reply = _post(server, chat_body("word " * 500, max_tokens=2), KEYS["input"])
    assert reply.status_code == 400
    assert reply.json()["error"]["code"] == "input_too_long"


def test_metrics_move_when_requests_are_served(server: RunningServer) -> None:
    def scrape() -> str:
        return httpx.get(server.base_url + "/metrics").text

    before = scrape()
    assert _post(server, chat_body("Count to five.", max_tokens=6),
                 KEYS["metrics"]).status_code == 200
    after = scrape()
    labels = {"route": "/v1/chat/completions", "model": SMOL, "status": "200"}
    for name, extra in (("pocketserve_requests_total", labels),
                        ("pocketserve_time_to_first_token_seconds_count", {"model": SMOL}),
                        ("pocketserve_queue_wait_seconds_count", {"model": SMOL}),
                        ("pocketserve_batch_size_count", {"model": SMOL})):
        assert metric(after, name, **extra) == metric(before, name, **extra) + 1, name
    grew = metric(after, "pocketserve_output_tokens_total", model=SMOL) - metric(
        before, "pocketserve_output_tokens_total", model=SMOL)
    assert 1 <= grew <= 6
    assert metric(after, "pocketserve_input_tokens_total", model=SMOL) > metric(
        before, "pocketserve_input_tokens_total", model=SMOL)
    assert metric(after, "pocketserve_worker_memory_bytes", model=SMOL) > 10_000_000
    assert metric(after, "pocketserve_model_state", model=SMOL, state="ready") == 1
    assert metric(after, "pocketserve_model_loads_total", model=SMOL, outcome="ok") == 1


def test_request_id_in_answers_and_json_log_lines(server: RunningServer) -> None:
    ok = _post(server, chat_body(max_tokens=2), KEYS["ids"], **{"X-Request-ID": "trace-ok-1"})
    missing = _post(server, chat_body(model="nope"), KEYS["ids"],
                    **{"X-Request-ID": "trace-404-1"})
    assert ok.headers["x-request-id"] == "trace-ok-1"
    assert missing.status_code == 404 and missing.headers["x-request-id"] == "trace-404-1"
    made = _post(server, chat_body(max_tokens=1), key=None)
    assert len(made.headers["x-request-id"]) == 32
    lines = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    for rid, status in (("trace-ok-1", " 200 "), ("trace-404-1", " 404 ")):
        mine = [entry for entry in lines if entry.get("request_id") == rid]
        assert any(status in entry["message"] for entry in mine), mine


def test_refuses_open_bind_without_keys(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pocketserve", "serve", "--host", "0.0.0.0", "--port", "0"],
        capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 2
    assert "API key" in done.stderr and "--allow-open-access" in done.stderr
