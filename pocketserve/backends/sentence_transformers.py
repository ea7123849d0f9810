"""Optional backend: sentence-transformers on torch, for model folders that have no ONNX file.

Neither library is a dependency of pocketserve (torch is large); install both to use this.
The engines' token limits, batching and ranking apply unchanged: this module only tokenizes
and runs the model, like the ONNX backends.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pocketserve.config import ModelSpec
from pocketserve.engines.base import Engine
from pocketserve.engines.embeddings import BatchOptions, Embedder, EmbeddingEngine
from pocketserve.engines.rerank import CrossEncoderScorer, Pair, RerankEngine
from pocketserve.errors import ContextLengthExceeded


def build_engine(spec: ModelSpec, path: Path, threads: int) -> Engine:
    import torch

    torch.set_num_threads(threads)
    batching = BatchOptions.from_options(spec.options)
    if spec.capability == "rerank":
        return RerankEngine(CrossEncoderScorer(StCrossEncoder(path, spec.options), batching,
                                               name=spec.id))
    embedder = Embedder(StEmbeddingBackend(path, spec.options), batching, name=spec.id)
    return EmbeddingEngine(embedder, matryoshka=bool(spec.options.get("matryoshka", False)))


class StEmbeddingBackend:
    def __init__(self, path: Path, options: dict[str, Any]):
        from sentence_transformers import SentenceTransformer

        self._model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        self._model.eval()
        self._tokenizer = self._model.tokenizer
        self.max_tokens = int(options.get("max_tokens") or self._model.max_seq_length or 512)
        self.vocab_size = len(self._tokenizer)
        # Renamed in sentence-transformers 6; older releases have only the long name.
        dimension = getattr(self._model, "get_embedding_dimension", None)
        if dimension is None:
            dimension = self._model.get_sentence_embedding_dimension
        self.dimension = int(dimension() or 0)
        sample = self._tokenizer("a", return_special_tokens_mask=True)
        ids, mask = sample["input_ids"], sample["special_tokens_mask"]
        content = [i for i, special in enumerate(mask) if not special]
        self.prefix = list(ids[:content[0]]) if content else list(ids)
        self.suffix = list(ids[content[-1] + 1:]) if content else []

    def encode(self, texts: list[str]) -> list[list[int]]:
        encoded = self._tokenizer(texts, add_special_tokens=False, truncation=False)
        return [list(ids) for ids in encoded["input_ids"]]

    def embed(self, batch: list[list[int]]) -> np.ndarray:
        import torch

        features = self._tokenizer.pad({"input_ids": batch}, return_tensors="pt")
        with torch.inference_mode():
            out = self._model(dict(features))["sentence_embedding"]
            out = torch.nn.functional.normalize(out, dim=1)
        return np.asarray(out.float().numpy(), dtype=np.float32)

    def close(self) -> None:
        del self._model


class StCrossEncoder:
    def __init__(self, path: Path, options: dict[str, Any]):
        from sentence_transformers import CrossEncoder

        self._model = CrossEncoder(str(path), device="cpu", local_files_only=True)
        self._tokenizer = self._model.tokenizer
        self.max_tokens = int(options.get("max_tokens") or self._model.max_length or 512)

    def encode_pairs(self, query: str, documents: list[str], truncate: bool) -> list[Pair]:
        try:
            encoded = self._tokenizer([query] * len(documents), documents,
                                      truncation="only_second" if truncate else False,
                                      max_length=self.max_tokens if truncate else None,
                                      return_token_type_ids=True)
        except Exception as exc:  # the query alone does not fit
            raise ContextLengthExceeded("The query alone is too long for this reranker.",
                                        param="query") from exc
        return [Pair(list(ids), list(types)) for ids, types in
                zip(encoded["input_ids"], encoded["token_type_ids"], strict=True)]

    def score(self, batch: list[Pair]) -> np.ndarray:
        import torch

        features = self._tokenizer.pad(
            {"input_ids": [p.ids for p in batch], "token_type_ids": [p.type_ids for p in batch]},
            return_tensors="pt")
        with torch.inference_mode():
            logits = self._model.model(**features).logits.float()
        if logits.shape[1] == 1:
            return np.asarray(torch.sigmoid(logits[:, 0]).numpy(), dtype=np.float32)
        return np.asarray(torch.softmax(logits, dim=1)[:, -1].numpy(), dtype=np.float32)

    def close(self) -> None:
        del self._model
