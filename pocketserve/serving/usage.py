"""The only places the serving layer looks inside payloads and events, kept small on purpose.

- Input length: the total characters of every string in a request's payload, whatever the
  capability, against that capability's limit (400). No schema knowledge needed.
- Token usage: a `Usage` event (`ops.common`; what the chat engine sends last) is counted for
  metrics and per-key token rate limits. Any engine that emits one gets the same accounting.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec

from pocketserve.errors import InvalidRequest
from pocketserve.ops.common import Usage
from pocketserve.serving.context import RequestContext
from pocketserve.serving.metrics import Metrics


def text_chars(value: Any) -> int:
    """Characters of text anywhere inside a request (bytes, e.g. audio, are not text)."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, msgspec.Struct):
        return sum(text_chars(getattr(value, f)) for f in value.__struct_fields__)
    if isinstance(value, dict):
        return sum(text_chars(v) for v in value.values())
    if isinstance(value, list | tuple):
        return sum(text_chars(v) for v in value)
    return 0


def check_input(capability: str, payload: Any, limits: dict[str, int]) -> None:
    limit = limits.get(capability)
    if limit is None:
        return
    size = text_chars(payload)
    if size > limit:
        raise InvalidRequest(
            f"The input has {size} characters of text; this server accepts at most {limit} "
            f"for {capability} requests.", code="input_too_long")


def observe_event(event: Any, model: str, metrics: Metrics,
                  ctx: RequestContext | None, first_at: float | None) -> None:
    """Count a usage event's tokens into the metrics and the request's context."""
    if not isinstance(event, Usage):
        return
    prompt = event.prompt_tokens
    completion = event.completion_tokens
    metrics.input_tokens.labels(model).inc(prompt)
    metrics.output_tokens.labels(model).inc(completion)
    if ctx is not None:
        ctx.prompt_tokens += prompt
        ctx.completion_tokens += completion
    if first_at is not None and completion > 1:
        elapsed = time.monotonic() - first_at
        if elapsed > 0:
            metrics.tokens_per_s.labels(model).observe((completion - 1) / elapsed)
