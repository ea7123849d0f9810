"""Event types several capabilities share."""

from __future__ import annotations

import msgspec


class Usage(msgspec.Struct, tag="usage"):
    """Tokens read and written; the serving layer counts it for metrics and per-key token
    limits, whichever engine sends it (serving/usage.py)."""

    prompt_tokens: int
    completion_tokens: int = 0
    cached_tokens: int = 0
