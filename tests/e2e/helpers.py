"""Helpers for the serving-core end-to-end tests: configs, admin state, polling."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import yaml

from pocketserve.catalog import BUILTIN, resolve_source
from pocketserve.config import Settings
from tests.conftest import RunningServer

SMOL = "smollm2-135m-instruct"


def smol_path() -> Path:
    spec = next(s for s in BUILTIN if s.id == SMOL)
    return resolve_source(spec.source)


def write_config(tmp: Path, settings: dict[str, Any], copies: tuple[str, ...] = ()) -> Path:
    """A YAML config; each name in `copies` becomes a model backed by the SmolLM2 GGUF."""
    extra = [{"id": name, "capability": "chat", "backend": "llamacpp",
              "source": str(smol_path()), "options": {"n_ctx": 2048, "n_parallel": 2}}
             for name in copies]
    data = {**settings, "extra_models": [*settings.get("extra_models", []), *extra]}
    Settings.model_validate(data)  # fail here, not in the server, on a typo
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def chat_body(text: str = "Write a long story about a cat.", max_tokens: int = 400,
              model: str = SMOL, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}],
            "max_tokens": max_tokens, "temperature": 0.8, **extra}


def admin_state(server: RunningServer, model: str = SMOL,
                headers: dict[str, str] | None = None) -> dict[str, Any]:
    reply = httpx.get(server.base_url + "/admin/models", headers=headers, timeout=10)
    reply.raise_for_status()
    return next(m for m in reply.json()["data"] if m["id"] == model)


def wait_for(check: Callable[[], bool], timeout_s: float = 10, step_s: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(step_s)
    return False


def metric(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        head, _, value = line.rpartition(" ")
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            total += float(value)
    return total
