"""Embeddings: one request, one answer (then the usage event)."""

from __future__ import annotations

import msgspec

from pocketserve.ops.common import Usage
from pocketserve.ops.wire import Op


class EmbedRequest(msgspec.Struct, kw_only=True):
    texts: list[str] | None = None
    token_ids: list[list[int]] | None = None
    dimensions: int | None = None
    truncate: bool = False
    single: bool = False  # the client sent one input, not a list: errors name `input`


class Embeddings(msgspec.Struct, tag="embeddings"):
    """One vector per input as little-endian float32 bytes: compact, exact, and already what
    OpenAI's `encoding_format: base64` carries."""

    embeddings: list[bytes]
    prompt_tokens: int


EmbedEvent = Embeddings | Usage

EMBED: Op[EmbedRequest, EmbedEvent] = Op("embed", EmbedRequest, EmbedEvent)
