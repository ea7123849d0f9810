"""One module per library; the only place that imports model libraries.

`load_engine` imports the backend module only inside a worker process, never at import time.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from pocketserve.config import ModelSpec
from pocketserve.engines.base import Engine


def load_engine(spec: ModelSpec, path: Path, threads: int) -> Engine:
    """Build the engine for `spec` from the weights at `path`."""
    module: Any = importlib.import_module(f"pocketserve.backends.{spec.backend}")
    engine: Engine = module.build_engine(spec, path, threads)
    return engine
