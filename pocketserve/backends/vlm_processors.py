"""The image-and-text processor of a vision-language folder, built so it works without
torchvision (which must never be installed here: /work/shared/MODELS.md).

Qwen2-VL, Qwen2.5-VL, Qwen3-VL and SmolVLM processors also hold a video processor, which cannot
be built without torchvision; `AutoProcessor` then quietly returns only the tokenizer. We build
the processor from its parts with a subclass whose `__init__` names every part but the video
processor: transformers finds a processor's parts by reading that signature, so the explicit
parameter names matter (a `*args, **kwargs` signature would drop `chat_template`).
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

# model_type in config.json -> its processor class in transformers.
PROCESSORS = {
    "qwen2_vl": "Qwen2VLProcessor",
    "qwen2_5_vl": "Qwen2_5_VLProcessor",
    "qwen3_vl": "Qwen3VLProcessor",
    "smolvlm": "SmolVLMProcessor",
    "idefics3": "Idefics3Processor",
}


def load_processor(path: Path, model_type: str) -> Any:
    """The processor of the folder at `path`, able to take images (videos are refused)."""
    import transformers
    from transformers import AutoImageProcessor, AutoProcessor, AutoTokenizer

    try:  # without torchvision this raises, or returns the tokenizer alone
        found = AutoProcessor.from_pretrained(str(path), local_files_only=True)
    except (ImportError, ValueError, OSError):
        found = None
    if getattr(found, "image_processor", None) is not None:
        return found  # torchvision is here after all, or the family needs no video processor
    name = PROCESSORS.get(model_type)
    if name is None:
        raise ValueError(f"no image processor for model type {model_type!r} "
                         f"(known: {', '.join(PROCESSORS)})")
    base = getattr(transformers, name)
    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    image_processor = AutoImageProcessor.from_pretrained(str(path), local_files_only=True)
    kwargs = _processor_kwargs(path)
    template = _chat_template(path) or getattr(tokenizer, "chat_template", None)
    if model_type == "smolvlm":
        return _smolvlm(base)(image_processor, tokenizer, chat_template=template, **kwargs)
    return _qwen(base)(image_processor, tokenizer, chat_template=template, **kwargs)


def _qwen(base: type) -> type:
    class ImageOnly(base):  # type: ignore[misc]
        def __init__(self, image_processor: Any = None, tokenizer: Any = None,
                     chat_template: str | None = None, **kwargs: Any):
            super().__init__(image_processor, tokenizer, None, chat_template=chat_template,
                             **kwargs)

    ImageOnly.__name__ = base.__name__
    return ImageOnly


def _smolvlm(base: type) -> type:
    class ImageOnly(base):  # type: ignore[misc]
        def __init__(self, image_processor: Any, tokenizer: Any, image_seq_len: int = 169,
                     chat_template: str | None = None, **kwargs: Any):
            super().__init__(image_processor, tokenizer, None, image_seq_len=image_seq_len,
                             chat_template=chat_template, **kwargs)
            # Its chat template reads these even for images.
            self.video_processor = SimpleNamespace(num_frames=1, fps=1)

    ImageOnly.__name__ = base.__name__
    return ImageOnly


def _processor_kwargs(path: Path) -> dict[str, Any]:
    """What processor_config.json sets beyond the parts (SmolVLM's image_seq_len)."""
    config = path / "processor_config.json"
    if not config.is_file():
        return {}
    values = json.loads(config.read_text("utf-8"))
    return {k: v for k, v in values.items() if k == "image_seq_len"}


def _chat_template(path: Path) -> str | None:
    """The folder's own chat template: chat_template.jinja, or chat_template.json."""
    jinja = path / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text("utf-8")
    as_json = path / "chat_template.json"
    if as_json.is_file():
        template = json.loads(as_json.read_text("utf-8")).get("chat_template")
        return str(template) if template else None
    return None
