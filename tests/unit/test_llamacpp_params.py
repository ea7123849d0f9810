"""llama.cpp settings from catalog options, and the weights a model loads (no model runs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pocketserve.backends.llamacpp import llama_params, prepare_weights
from pocketserve.catalog import Catalog
from pocketserve.config import ModelSpec


def test_the_default_chat_model_gets_a_slot_each_and_a_q8_0_cache() -> None:
    import xllamacpp

    spec = Catalog().find("smollm2-135m-instruct")
    params = llama_params(Path("model.gguf"), 2, spec.options)
    assert (params.n_ctx, params.n_parallel, params.kv_unified) == (32768, 8, False)
    assert params.cache_type_k == params.cache_type_v == xllamacpp.ggml_type.GGML_TYPE_Q8_0
    assert params.flash_attn_type == xllamacpp.llama_flash_attn_type.LLAMA_FLASH_ATTN_TYPE_ENABLED
    assert params.cache_ram_mib == 256 and params.cache_idle_slots is False
    assert params.cpuparams.n_threads == params.cpuparams_batch.n_threads == 2


def test_an_unknown_cache_type_is_named() -> None:
    with pytest.raises(ValueError, match="cache_type 'q9_9'"):
        llama_params(Path("model.gguf"), 1, {"cache_type": "q9_9"})


def test_an_unwritable_cache_serves_the_weights_as_they_are(tmp_path: Path) -> None:
    weights = tmp_path / "tiny.gguf"
    weights.write_bytes(b"GGUF")  # never read: the cache directory fails first
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the cache directory should be")
    spec = ModelSpec(id="tiny", capability="chat", backend="llamacpp", source=str(weights),
                     options={"requantize": {"Q4_1": "Q8_0"}})
    assert prepare_weights(spec, weights, blocked) == weights
    plain = spec.model_copy(update={"options": {}})
    assert prepare_weights(plain, weights, blocked) == weights
