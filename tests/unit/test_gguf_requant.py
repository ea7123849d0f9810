"""Re-encoding a GGUF's Q4_1 tensors as Q8_0, on a tiny GGUF the test writes itself."""

from __future__ import annotations

import os
from pathlib import Path

import gguf
import numpy as np
import pytest
from gguf import quants

from pocketserve.backends.gguf_requant import cached_path, requantize

Q4_1, Q8_0, F32 = (gguf.GGMLQuantizationType.Q4_1, gguf.GGMLQuantizationType.Q8_0,
                   gguf.GGMLQuantizationType.F32)


def _tiny_gguf(path: Path) -> None:
    rng = np.random.default_rng(0)
    weights = {"blk.0.ffn_up.weight": rng.normal(size=(8, 64)).astype(np.float32),
               "blk.0.attn_norm.weight": rng.normal(size=(64,)).astype(np.float32)}
    writer = gguf.GGUFWriter(path, arch="llama")
    writer.add_context_length(128)
    writer.add_token_list(["<s>", "hello", "world"])
    writer.add_tensor("blk.0.ffn_up.weight", quants.quantize(weights["blk.0.ffn_up.weight"], Q4_1),
                      raw_dtype=Q4_1)
    writer.add_tensor("blk.0.attn_norm.weight", weights["blk.0.attn_norm.weight"])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_q4_1_tensors_become_q8_0_with_the_same_values(tmp_path: Path) -> None:
    source = tmp_path / "tiny.Q4_1.gguf"
    _tiny_gguf(source)
    out = requantize(source, {"Q4_1": "Q8_0"}, tmp_path / "cache")

    before = {t.name: t for t in gguf.GGUFReader(source).tensors}
    after = {t.name: t for t in gguf.GGUFReader(out).tensors}
    assert after["blk.0.ffn_up.weight"].tensor_type == Q8_0
    assert after["blk.0.attn_norm.weight"].tensor_type == F32
    old = quants.dequantize(before["blk.0.ffn_up.weight"].data, Q4_1)
    new = quants.dequantize(after["blk.0.ffn_up.weight"].data, Q8_0)
    assert new.shape == old.shape == (8, 64)
    # 8-bit steps of each block's largest value: far finer than the 4-bit steps they hold.
    assert np.max(np.abs(new - old)) <= np.max(np.abs(old)) / 127
    np.testing.assert_array_equal(after["blk.0.attn_norm.weight"].data,
                                  before["blk.0.attn_norm.weight"].data)
    fields = gguf.GGUFReader(out).fields
    assert fields["general.architecture"].contents() == "llama"
    assert fields["llama.context_length"].contents() == 128
    assert fields["tokenizer.ggml.tokens"].contents() == ["<s>", "hello", "world"]


def test_the_copy_is_reused_until_the_source_changes(tmp_path: Path) -> None:
    source, cache = tmp_path / "tiny.gguf", tmp_path / "cache"
    _tiny_gguf(source)
    first = requantize(source, {"Q4_1": "Q8_0"}, cache)
    built_at = first.stat().st_mtime_ns
    assert requantize(source, {"Q4_1": "Q8_0"}, cache) == first
    assert first.stat().st_mtime_ns == built_at  # not rebuilt

    stat = source.stat()
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    second = requantize(source, {"Q4_1": "Q8_0"}, cache)
    assert second != first and second == cached_path(source, {"Q4_1": "Q8_0"}, cache)
    assert sorted(p.name for p in cache.iterdir()) == sorted([first.name, second.name])


def test_an_unknown_type_fails_and_leaves_no_partial_file(tmp_path: Path) -> None:
    source, cache = tmp_path / "tiny.gguf", tmp_path / "cache"
    _tiny_gguf(source)
    with pytest.raises(KeyError, match="Q9_9"):
        requantize(source, {"Q4_1": "Q9_9"}, cache)
    assert list(cache.iterdir()) == []
