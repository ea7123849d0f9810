"""How a vision model is named: `--mmproj` for a --model GGUF, `mmproj` in a config's options,
and a vision-language folder recognised by its config.json. Nothing is loaded here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pocketserve.catalog import Catalog, sees, spec_for_path
from pocketserve.cli import with_mmproj
from pocketserve.config import ModelSpec, Settings


def _files(tmp: Path) -> tuple[Path, Path]:
    model, proj = tmp / "tiny.gguf", tmp / "mmproj-tiny.gguf"
    model.write_bytes(b"GGUF")
    proj.write_bytes(b"GGUF")
    return model, proj


def test_mmproj_goes_with_the_gguf_given_by_path(tmp_path: Path) -> None:
    model, proj = _files(tmp_path)
    settings = with_mmproj(Settings(models=[str(model), "smollm2-135m-instruct",
                                            "whisper-tiny.en"]), str(proj))
    assert settings.models == ["tiny", "smollm2-135m-instruct", "whisper-tiny.en"]
    spec = Catalog(settings.extra_models).find("tiny")
    assert spec.backend == "llamacpp" and spec.options["mmproj"] == str(proj.resolve())
    assert sees(spec) and not sees(Catalog().find("smollm2-135m-instruct"))
    assert Catalog.missing_weights(spec) is None


def test_mmproj_with_one_catalog_model(tmp_path: Path) -> None:
    _, proj = _files(tmp_path)
    settings = with_mmproj(Settings(models=["smollm2"]), str(proj))
    spec = Catalog(settings.extra_models).find(settings.models[0])
    assert spec.id == "smollm2-135m-instruct" and spec.options["mmproj"] == str(proj.resolve())
    assert spec.options["requantize"]  # the entry's own options are kept


def test_mmproj_needs_one_model_and_an_existing_file(tmp_path: Path) -> None:
    model, proj = _files(tmp_path)
    with pytest.raises(ValueError, match="exactly one"):
        with_mmproj(Settings(models=["whisper-tiny.en"]), str(proj))
    with pytest.raises(ValueError, match="does not exist"):
        with_mmproj(Settings(models=[str(model)]), str(tmp_path / "missing.gguf"))


def test_a_missing_projector_makes_the_model_unavailable(tmp_path: Path) -> None:
    model, _ = _files(tmp_path)
    spec = ModelSpec(id="v", capability="chat", backend="llamacpp", source=str(model),
                     options={"mmproj": str(tmp_path / "gone.gguf")})
    assert "gone.gguf" in (Catalog.missing_weights(spec) or "")


@pytest.mark.parametrize("architecture", ["Qwen2VLForConditionalGeneration",
                                          "Qwen2_5_VLForConditionalGeneration",
                                          "Qwen3VLForConditionalGeneration",
                                          "SmolVLMForConditionalGeneration"])
def test_vision_folders_are_recognised(tmp_path: Path, architecture: str) -> None:
    folder = tmp_path / "my-vlm"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"architectures": [architecture]}))
    (folder / "model.safetensors").write_bytes(b"")
    spec = spec_for_path(str(folder))
    assert (spec.id, spec.backend, spec.capability) == ("my-vlm", "transformers_vlm", "chat")
    assert sees(spec)


def test_a_text_folder_is_not_a_vision_one(tmp_path: Path) -> None:
    folder = tmp_path / "encoder"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"architectures": ["BertModel"]}))
    (folder / "model.safetensors").write_bytes(b"")
    assert spec_for_path(str(folder)).backend == "sentence_transformers"


def test_a_misspelt_transformers_option_is_an_error(tmp_path: Path) -> None:
    from pocketserve.backends.transformers_vlm import build_engine

    spec = ModelSpec(id="v", capability="chat", backend="transformers_vlm",
                     source=str(tmp_path), options={"max_bacth": 4})
    with pytest.raises(ValueError, match="max_bacth"):
        build_engine(spec, tmp_path, 1)
