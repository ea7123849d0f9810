"""POST /v1/embeddings in OpenAI's shape (CreateEmbeddingRequest / CreateEmbeddingResponse)."""

from __future__ import annotations

import array
import base64
import sys
from typing import Any, Literal

from pydantic import Field, StrictInt, StrictStr

from pocketserve.api.protocol.common import Body, examples
from pocketserve.errors import InvalidRequest
from pocketserve.ops.embeddings import EmbedRequest

MAX_INPUTS = 2048  # OpenAI's limit on the items of one request


class EmbeddingRequest(Body):
    model_config = examples(
        {"model": "all-minilm-l6-v2", "input": "The food was delicious."},
        {"model": "all-minilm-l6-v2", "input": ["Hello", "Bonjour"],
         "encoding_format": "base64"},
    )

    model: str
    input: StrictStr | list[StrictStr] | list[StrictInt] | list[list[StrictInt]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = None

    def to_engine(self, truncate: bool) -> EmbedRequest:
        """The worker's request: texts or token-id lists, never a mix; empty inputs refused."""
        single = not isinstance(self.input, list) or (
            bool(self.input) and isinstance(self.input[0], int))
        items: list[Any] = [self.input] if single else list(self.input)
        if not items:
            raise InvalidRequest("'input' must not be an empty list.", param="input")
        if len(items) > MAX_INPUTS:
            raise InvalidRequest(f"'input' has {len(items)} items; at most {MAX_INPUTS} are "
                                 "allowed in one request.", param="input")
        for i, item in enumerate(items):
            if len(item) == 0:
                where = "input" if single else f"input[{i}]"
                what = "an empty string" if isinstance(item, str) else "an empty list of tokens"
                raise InvalidRequest(f"'{where}' is {what}; every input needs some content.",
                                     param=where)
        request = EmbedRequest(dimensions=self.dimensions, truncate=truncate, single=single)
        if isinstance(items[0], str):
            request.texts = items
        else:
            request.token_ids = items
        return request


def embedding_list(vectors: list[bytes], encoding_format: str, model: str,
                   prompt_tokens: int) -> dict[str, Any]:
    """The response body; vectors arrive as little-endian float32 bytes from the worker."""
    data = [{"object": "embedding", "index": i, "embedding": _encode(v, encoding_format)}
            for i, v in enumerate(vectors)]
    return {"object": "list", "data": data, "model": model,
            "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}}


def _encode(vector: bytes, encoding_format: str) -> str | list[float]:
    if encoding_format == "base64":
        return base64.b64encode(vector).decode("ascii")
    floats = array.array("f", vector)
    if sys.byteorder == "big":
        floats.byteswap()
    return floats.tolist()
