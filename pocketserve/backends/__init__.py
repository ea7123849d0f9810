"""One module per library; the only place that imports model libraries.

`load_engine` imports the backend module only inside a worker process, never at import time.
A backend that is not a module here comes from an installed distribution instead: an entry
point named after it in the group `pocketserve.backends` names a class or factory called as
`(spec, path, threads) -> Engine` (docs/plugins.md has a complete example).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import pkgutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pocketserve.config import ModelSpec
from pocketserve.engines.base import Engine

ENTRY_POINT_GROUP = "pocketserve.backends"

Factory = Callable[[ModelSpec, Path, int], Engine]


def load_engine(spec: ModelSpec, path: Path, threads: int,
                cache_dir: Path | None = None) -> Engine:
    """Build the engine for `spec` from the weights at `path`.

    A backend that derives another form of its weights first (`prepare_weights`, e.g. llama.cpp
    re-encoding a GGUF) keeps that form in `cache_dir`, which it then needs.
    """
    module = _builtin(spec.backend)
    if module is None:
        return _checked(plugin_factory(spec.backend)(spec, path, threads), spec.backend)
    if hasattr(module, "prepare_weights"):
        if cache_dir is None:
            raise ValueError(f"the {spec.backend} backend needs a cache directory")
        path = module.prepare_weights(spec, path, cache_dir)
    engine: Engine = module.build_engine(spec, path, threads)
    return engine


def builtin_backends() -> list[str]:
    """The backend modules that ship with pocketserve."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def _builtin(name: str) -> Any:
    """The module `pocketserve.backends.<name>`, or None when there is none (a missing module
    inside a backend, such as its library, still raises)."""
    if not name.isidentifier():
        return None
    if importlib.util.find_spec(f"{__name__}.{name}") is None:
        return None
    return importlib.import_module(f"{__name__}.{name}")


def plugin_factory(name: str) -> Factory:
    """What the entry point `name` of the group `pocketserve.backends` names."""
    found = {ep.value: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP,
                                                                    name=name)}
    if not found:
        plugins = sorted({ep.name for ep in importlib.metadata.entry_points(
            group=ENTRY_POINT_GROUP)}) or ["none"]
        raise LookupError(
            f"no backend {name!r}: it is neither a module of pocketserve.backends "
            f"({', '.join(builtin_backends())}) nor an entry point named {name!r} in the group "
            f"{ENTRY_POINT_GROUP!r} of an installed distribution (installed: "
            f"{', '.join(plugins)})")
    if len(found) > 1:
        raise LookupError(f"the backend {name!r} is named by several entry points in the group "
                          f"{ENTRY_POINT_GROUP!r}: {', '.join(sorted(found))}; uninstall one")
    entry = next(iter(found.values()))
    factory = entry.load()
    if not callable(factory):
        raise TypeError(f"the entry point {name} = {entry.value} (group {ENTRY_POINT_GROUP!r}) "
                        "names something that cannot be called")
    built: Factory = factory
    return built


def _checked(engine: Any, name: str) -> Engine:
    """The plugin's engine, if it has the methods the worker calls."""
    missing = [m for m in ("info", "operations", "warmups", "close")
               if not callable(getattr(engine, m, None))]
    if missing:
        raise TypeError(f"the backend {name!r} built a {type(engine).__name__} without "
                        f"{', '.join(missing)}; an engine needs info, operations, warmups "
                        "and close (pocketserve.engines.base.Engine)")
    checked: Engine = engine
    return checked
