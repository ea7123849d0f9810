"""One module per library; the only place that imports model libraries.

`load_engine` imports the backend module only inside a worker process, never at import time.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from pocketserve.config import ModelSpec
from pocketserve.engines.base import Engine


def load_engine(spec: ModelSpec, path: Path, threads: int,
                cache_dir: Path | None = None) -> Engine:
    """Build the engine for `spec` from the weights at `path`.

    A backend that derives another form of its weights first (`prepare_weights`, e.g. llama.cpp
    re-encoding a GGUF) keeps that form in `cache_dir`, which it then needs.
    """
    module: Any = importlib.import_module(f"pocketserve.backends.{spec.backend}")
    if hasattr(module, "prepare_weights"):
        if cache_dir is None:
            raise ValueError(f"the {spec.backend} backend needs a cache directory")
        path = module.prepare_weights(spec, path, cache_dir)
    engine: Engine = module.build_engine(spec, path, threads)
    return engine
