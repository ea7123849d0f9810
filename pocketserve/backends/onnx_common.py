"""What the ONNX backends share: a model folder's files, the tokenizer, and the one way every
ONNX session (encoders, cross-encoders, Piper voices) is made.

A model arrives either as one `.onnx` file or as a Hugging Face style folder (`model.onnx` or
`onnx/model.onnx`, `tokenizer.json`, `config.json`, sentence-transformers' config files). Only
local files are read: there is no hub here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from pocketserve.catalog import resolve_source

_ONNX_NAMES = ("model.onnx", "onnx/model.onnx", "model_quantized.onnx",
               "onnx/model_quantized.onnx", "model_int8.onnx", "onnx/model_int8.onnx")


def model_files(path: Path, options: dict[str, Any]) -> tuple[Path, Path, Path]:
    """(onnx file, tokenizer.json, folder holding the configs) for a file or folder path."""
    if path.is_dir():
        onnx_file = path / options["onnx_file"] if "onnx_file" in options else next(
            (path / n for n in _ONNX_NAMES if (path / n).is_file()), None)
        if onnx_file is None:
            raise FileNotFoundError(f"no ONNX model file in {path} (looked for "
                                    f"{', '.join(_ONNX_NAMES)})")
        folder = path
    else:
        onnx_file = path
        folder = path.parent.parent if path.parent.name == "onnx" else path.parent
    if "tokenizer" in options:
        tokenizer = resolve_source(str(options["tokenizer"]))
    else:
        tokenizer = next((d / "tokenizer.json" for d in (folder, onnx_file.parent)
                          if (d / "tokenizer.json").is_file()), folder / "tokenizer.json")
    if tokenizer.is_dir():
        tokenizer = tokenizer / "tokenizer.json"
    if not tokenizer.is_file():
        raise FileNotFoundError(f"no tokenizer.json for {onnx_file} (give options.tokenizer)")
    return onnx_file, tokenizer, tokenizer.parent if "tokenizer" in options else folder


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from a config file, or {} where the file is missing."""
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}


def max_tokens(folder: Path, options: dict[str, Any]) -> int:
    """The longest input the model takes, from the option or the folder's configs."""
    if "max_tokens" in options:
        return int(options["max_tokens"])
    st_limit = read_json(folder / "sentence_bert_config.json").get("max_seq_length")
    if st_limit:
        return int(st_limit)
    hf_limit = read_json(folder / "tokenizer_config.json").get("model_max_length")
    if hf_limit and int(hf_limit) < 1_000_000:  # transformers writes 1e30 for "no limit"
        return int(hf_limit)
    return int(read_json(folder / "config.json").get("max_position_embeddings", 512))


def load_tokenizer(path: Path) -> Tokenizer:
    """The tokenizer with any padding/truncation saved in the file turned off: we do both."""
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


def special_tokens(tokenizer: Tokenizer) -> tuple[list[int], list[int]]:
    """The special ids the tokenizer puts before and after one sequence ([CLS] ... [SEP])."""
    encoding = tokenizer.encode("a")
    content = [i for i, special in enumerate(encoding.special_tokens_mask) if not special]
    if not content:
        return list(encoding.ids), []
    first, last = content[0], content[-1]
    return list(encoding.ids[:first]), list(encoding.ids[last + 1:])


def make_session(onnx_file: Path, threads: int) -> ort.InferenceSession:
    """A CPU session held to `threads` threads, so several workers can share the cores.

    Spinning is off: spinning threads busy-wait between ops and steal the cores the HTTP
    process and other workers need (on a loaded 2-core machine it halved throughput).
    """
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    return ort.InferenceSession(str(onnx_file), sess_options=opts,
                                providers=["CPUExecutionProvider"])


def padded(batch: list[list[int]], types: list[list[int]] | None = None,
           pad_id: int = 0) -> dict[str, np.ndarray]:
    """input_ids, attention_mask and token_type_ids padded to the longest sequence."""
    width = max(len(ids) for ids in batch)
    ids = np.full((len(batch), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(batch), width), dtype=np.int64)
    type_ids = np.zeros((len(batch), width), dtype=np.int64)
    for row, seq in enumerate(batch):
        ids[row, :len(seq)] = seq
        mask[row, :len(seq)] = 1
        if types is not None:
            type_ids[row, :len(seq)] = types[row]
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": type_ids}


def feeds(session: ort.InferenceSession, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Only the inputs this graph declares (some exports drop token_type_ids)."""
    names = {i.name for i in session.get_inputs()}
    return {name: value for name, value in arrays.items() if name in names}


def pad_id(tokenizer: Tokenizer) -> int:
    for token in ("[PAD]", "<pad>", "<|padding|>"):
        found = tokenizer.token_to_id(token)
        if found is not None:
            return int(found)
    return 0
