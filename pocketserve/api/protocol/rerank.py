"""POST /v1/rerank, /rerank and /v2/rerank: the shape Cohere, Jina, vLLM and Infinity share."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import Field, field_validator

from pocketserve.api.protocol.common import Body, examples
from pocketserve.errors import InvalidRequest
from pocketserve.ops.rerank import Ranking
from pocketserve.ops.rerank import RerankRequest as EngineRerank


class RerankRequest(Body):
    model_config = examples({
        "model": "minilm-cosine-reranker", "query": "What is the capital of France?",
        "documents": ["Paris is the capital of France.", "Berlin is the capital of Germany.",
                      "The Eiffel Tower is in Paris."], "top_n": 2})

    model: str
    query: str
    documents: list[str]
    top_n: int | None = Field(default=None, ge=0, description="0 or absent: all documents.")
    return_documents: bool = Field(
        default=True, description="Echo each document in its result (vLLM's and Jina's "
        "default; Cohere's v1 defaults to false).")

    @field_validator("documents", mode="before")
    @classmethod
    def _texts(cls, documents: Any) -> Any:
        """Documents come as strings or as objects with a `text` (Cohere's and Jina's form)."""
        if not isinstance(documents, list):
            return documents
        texts = []
        for i, doc in enumerate(documents):
            if isinstance(doc, dict):
                doc = doc.get("text")
            if not isinstance(doc, str):
                raise ValueError(f"documents[{i}] must be a string or an object with a string "
                                 "`text`")
            texts.append(doc)
        return texts

    def texts(self) -> list[str]:
        return list(self.documents)

    def to_engine(self, truncate: bool) -> EngineRerank:
        if not self.query:
            raise InvalidRequest("'query' must not be empty.", param="query")
        texts = self.texts()
        if not texts:
            raise InvalidRequest("'documents' must not be an empty list.", param="documents")
        for i, text in enumerate(texts):
            if not text:
                raise InvalidRequest(f"'documents[{i}]' is empty.", param=f"documents[{i}]")
        return EngineRerank(query=self.query, documents=texts, top_n=self.top_n,
                            truncate=truncate)


def rerank_response(req: RerankRequest, model: str, reply: Ranking) -> dict[str, Any]:
    texts = req.texts()
    results = []
    for item in reply.results:
        result: dict[str, Any] = {"index": item.index,
                                  "relevance_score": item.relevance_score}
        if req.return_documents:
            result["document"] = {"text": texts[result["index"]]}
        results.append(result)
    tokens = reply.prompt_tokens
    return {"id": f"rerank-{uuid.uuid4().hex}", "model": model, "results": results,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
