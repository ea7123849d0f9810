"""Model lifecycle on the real model: TTL unload, LRU under a memory budget, failed loads,
admin load/unload. Several ids share the SmolLM2 GGUF (see helpers.write_config)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import psutil

from tests.conftest import start_server, stop_server, wait_healthy
from tests.e2e.helpers import admin_state, chat_body, metric, wait_for, write_config


def _chat(base: str, model: str) -> httpx.Response:
    return httpx.post(base + "/v1/chat/completions", json=chat_body(max_tokens=3, model=model),
                      timeout=120)


def test_idle_ttl_unloads_and_the_next_request_reloads(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"models": ["tiny"], "idle_ttl_s": 1.0, "threads": 1},
                          copies=("tiny",))
    server = start_server([], "--config", str(config))
    try:
        first = admin_state(server, "tiny")
        assert first["state"] == "ready" and first["memory_bytes"] > 10_000_000
        pid = first["pid"]
        assert wait_for(lambda: admin_state(server, "tiny")["state"] == "unloaded", 10)
        assert wait_for(lambda: not psutil.pid_exists(pid), 5)  # the worker process exited
        assert admin_state(server, "tiny")["memory_bytes"] == 0
        assert _chat(server.base_url, "tiny").status_code == 200  # loads again on use
        again = admin_state(server, "tiny")
        assert again["state"] == "ready" and again["pid"] != pid
        text = httpx.get(server.base_url + "/metrics").text
        assert metric(text, "pocketserve_model_loads_total", model="tiny", outcome="ok") == 2
        assert metric(text, "pocketserve_model_unloads_total", model="tiny", reason="idle") == 1
    finally:
        stop_server(server)


def test_memory_budget_evicts_lru_and_refuses_what_cannot_fit(tmp_path: Path) -> None:
    # Loaded workers count at their measured RSS (~217 MB here); an unloaded one at 400 MB:
    # two fit in 730 MB, a third does not, whatever the RSS between 165 and 330 MB.
    lazy = {"preload": False, "memory_mb": 400}
    config = write_config(tmp_path, {
        "models": ["pinned", "older", "newer", "huge"], "memory_budget_mb": 730, "threads": 1,
        "model_policies": {"pinned": {**lazy, "pin": True}, "older": lazy, "newer": lazy,
                           "huge": {"preload": False, "memory_mb": 5000}},
    }, copies=("pinned", "older", "newer", "huge"))
    server = start_server([], "--config", str(config))
    base = server.base_url
    try:
        assert admin_state(server, "pinned")["state"] == "unloaded"  # lazy: not loaded yet
        assert _chat(base, "pinned").status_code == 200
        assert _chat(base, "older").status_code == 200
        assert admin_state(server, "older")["state"] == "ready"
        assert _chat(base, "newer").status_code == 200  # no room for three: LRU goes
        assert admin_state(server, "older")["state"] == "unloaded"
        assert admin_state(server, "pinned")["state"] == "ready"  # pinned stays
        refused = _chat(base, "huge")
        assert refused.status_code == 503
        assert "memory budget" in refused.json()["error"]["message"]
        assert admin_state(server, "pinned")["state"] == "ready"
        assert _chat(base, "pinned").status_code == 200  # the others still serve
    finally:
        stop_server(server)


def test_failed_load_names_the_cause_and_others_keep_serving(tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"this is not a gguf file" * 100)
    config = write_config(tmp_path, {
        "models": ["good", "broken"], "threads": 1,
        "extra_models": [{"id": "broken", "capability": "chat", "backend": "llamacpp",
                          "source": str(broken)}],
    }, copies=("good",))
    server = start_server([], "--config", str(config), wait_ready=False)
    try:
        assert wait_for(lambda: _state_or_none(server.base_url, "broken") == "failed", 60)
        state = admin_state(server, "broken")
        assert str(broken) in state["error"] and "llamacpp" in state["error"]
        reply = _chat(server.base_url, "broken")
        assert reply.status_code == 503
        assert state["error"] in reply.json()["error"]["message"]
        assert _chat(server.base_url, "good").status_code == 200
    finally:
        stop_server(server)


def test_admin_unload_and_load(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"models": ["tiny"], "threads": 1}, copies=("tiny",))
    server = start_server([], "--config", str(config))
    try:
        pid = admin_state(server, "tiny")["pid"]
        gone = httpx.post(server.base_url + "/admin/models/tiny/unload", timeout=60).json()
        assert gone["state"] == "unloaded" and not psutil.pid_exists(pid)
        wait_healthy(server, 5)  # unloaded is not unhealthy: it loads on demand
        began = time.monotonic()
        back = httpx.post(server.base_url + "/admin/models/tiny/load", timeout=120).json()
        assert back["state"] == "ready" and back["memory_mb"] > 10
        assert time.monotonic() - began < 60
        missing = httpx.post(server.base_url + "/admin/models/nope/load", timeout=10)
        assert missing.status_code == 404
    finally:
        stop_server(server)


def _state_or_none(base: str, model: str) -> str | None:
    try:
        reply = httpx.get(base + "/admin/models", timeout=5)
    except httpx.HTTPError:
        return None
    return next((m["state"] for m in reply.json()["data"] if m["id"] == model), None)
