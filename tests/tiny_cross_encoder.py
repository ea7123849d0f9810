"""A tiny random-weight cross-encoder, written as a Hugging Face style ONNX folder.

No cross-encoder's weights ship in a package, so tests build one: a word-level tokenizer with
BERT's pair template, and a graph (embeddings of words and segments, tanh, masked mean, linear
head) with BERT's inputs and a `logits` output. `reference_scores` computes the same thing in
numpy, so a served score can be checked to the last digit, not just for its shape.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

WORDS = ["the", "a", "cat", "dog", "kitten", "car", "stock", "market", "sofa", "sleeps", "on",
         "my", "fell", "pets", "and", "is", "long", "text", "query", "document", "one", "two",
         "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
HIDDEN = 8
MAX_TOKENS = 24


def _weights(seed: int = 7) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    vocab = len(SPECIALS) + len(WORDS)
    return {"word": rng.normal(size=(vocab, HIDDEN)).astype(np.float32),
            "segment": rng.normal(size=(2, HIDDEN)).astype(np.float32),
            "head": rng.normal(size=(HIDDEN, 1)).astype(np.float32),
            "bias": np.array([0.1], dtype=np.float32)}


def build(folder: Path, in_onnx_subfolder: bool = False) -> Path:
    """Write model.onnx (or onnx/model.onnx), tokenizer.json and config.json into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    _tokenizer().save(str(folder / "tokenizer.json"))
    (folder / "config.json").write_text(json.dumps({
        "architectures": ["BertForSequenceClassification"], "num_labels": 1,
        "max_position_embeddings": MAX_TOKENS}))
    onnx_file = folder / ("onnx/model.onnx" if in_onnx_subfolder else "model.onnx")
    onnx_file.parent.mkdir(exist_ok=True)
    _save_graph(onnx_file)
    return folder


def _tokenizer():  # type: ignore[no-untyped-def]
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    vocab = {tok: i for i, tok in enumerate([*SPECIALS, *WORDS])}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    return tokenizer


def _save_graph(path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = _weights()
    inits = [numpy_helper.from_array(w["word"], "word"),
             numpy_helper.from_array(w["segment"], "segment"),
             numpy_helper.from_array(w["head"], "head"),
             numpy_helper.from_array(w["bias"], "bias"),
             numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"),
             numpy_helper.from_array(np.array([-1], dtype=np.int64), "last")]
    nodes = [
        helper.make_node("Gather", ["word", "input_ids"], ["e_word"]),
        helper.make_node("Gather", ["segment", "token_type_ids"], ["e_seg"]),
        helper.make_node("Add", ["e_word", "e_seg"], ["e_sum"]),
        helper.make_node("Tanh", ["e_sum"], ["hidden"]),
        helper.make_node("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["mask_f", "last"], ["mask3"]),
        helper.make_node("Mul", ["hidden", "mask3"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "axis1"], ["summed"], keepdims=0),
        helper.make_node("ReduceSum", ["mask3", "axis1"], ["count"], keepdims=0),
        helper.make_node("Div", ["summed", "count"], ["pooled"]),
        helper.make_node("MatMul", ["pooled", "head"], ["raw"]),
        helper.make_node("Add", ["raw", "bias"], ["logits"]),
    ]
    inputs = [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "sequence"])
              for n in ("input_ids", "attention_mask", "token_type_ids")]
    output = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 1])
    graph = helper.make_graph(nodes, "tiny_cross_encoder", inputs, [output], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def reference_scores(query: str, documents: list[str], truncate: bool = True) -> list[float]:
    """The graph's sigmoid score for each pair, computed with numpy."""
    tokenizer = _tokenizer()
    if truncate:
        tokenizer.enable_truncation(MAX_TOKENS, strategy="only_second")
    w = _weights()
    scores = []
    for doc in documents:
        enc = tokenizer.encode(query, doc)
        hidden = np.tanh(w["word"][enc.ids] + w["segment"][enc.type_ids])
        logit = float((hidden.mean(axis=0) @ w["head"])[0] + w["bias"][0])
        scores.append(1.0 / (1.0 + np.exp(-logit)))
    return scores


def token_count(query: str, document: str, truncate: bool = True) -> int:
    tokenizer = _tokenizer()
    if truncate:
        tokenizer.enable_truncation(MAX_TOKENS, strategy="only_second")
    return len(tokenizer.encode(query, document).ids)
