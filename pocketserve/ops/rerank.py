"""Reranking: score documents against a query."""

from __future__ import annotations

import msgspec

from pocketserve.ops.common import Usage
from pocketserve.ops.wire import Op


class RerankRequest(msgspec.Struct, kw_only=True):
    query: str
    documents: list[str]
    top_n: int | None = None
    truncate: bool = True


class Ranked(msgspec.Struct):
    index: int
    relevance_score: float


class Ranking(msgspec.Struct, tag="ranking"):
    results: list[Ranked]  # best first
    prompt_tokens: int


RerankEvent = Ranking | Usage

RERANK: Op[RerankRequest, RerankEvent] = Op("rerank", RerankRequest, RerankEvent)
