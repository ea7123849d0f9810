"""`pocketserve serve | models`."""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import sys
from typing import TYPE_CHECKING, Any

from pocketserve import __version__
from pocketserve.catalog import Catalog
from pocketserve.config import Settings

if TYPE_CHECKING:
    import uvicorn
    from starlette.types import ASGIApp


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pocketserve", description="One OpenAI-compatible server for small models.")
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="start the server")
    serve.add_argument("--host", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to bind (default 8000)")
    serve.add_argument("--model", dest="models", action="append", metavar="ID_OR_PATH",
                       help="a catalog id or a path to a model file; repeat for several")
    serve.add_argument("--config", dest="config_file", help="YAML file of settings")
    serve.add_argument("--mmproj", metavar="PATH",
                       help="the multimodal projector GGUF of the llama.cpp --model (it then "
                       "sees images)")
    serve.add_argument("--threads", type=int, help="CPU threads per model worker")
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    serve.add_argument("--log-json", action="store_true", default=None,
                       help="log one JSON object per line")
    serve.add_argument("--api-key-file", dest="api_keys_file",
                       help="file with one accepted API key per line")
    serve.add_argument("--allow-open-access", action="store_true", default=None,
                       help="allow a non-loopback --host without API keys (anyone may use it)")
    serve.add_argument("--max-in-flight", type=int, help="requests run at once per model")
    serve.add_argument("--max-queue", type=int, help="requests waiting per model before 429")
    serve.add_argument("--request-timeout", dest="request_timeout_s", type=float,
                       help="seconds a request may wait and run before 504")
    serve.add_argument("--idle-ttl", dest="idle_ttl_s", type=float,
                       help="unload a model idle this many seconds")
    serve.add_argument("--memory-budget-mb", dest="memory_budget_mb", type=float,
                       help="memory all loaded models may use together")
    serve.add_argument("--ray", action="store_true", default=None,
                       help="serve each model as a Ray Serve deployment (the ray extra)")
    serve.add_argument("--ray-address", help="Ray cluster to join (default: start a local one)")
    serve.add_argument("--replicas", dest="ray_replicas", action="append", metavar="MODEL=N",
                       type=_replicas, help="replicas of MODEL on Ray (repeatable)")
    serve.add_argument("--shutdown-grace", dest="shutdown_grace_s", type=float,
                       help="seconds in-flight requests get to finish on SIGTERM")

    models = sub.add_parser("models", help="list the catalog and what is installed here")
    models.add_argument("--config", dest="config_file", help="YAML file of settings")
    return parser


def _overrides(args: argparse.Namespace, names: list[str]) -> dict[str, Any]:
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def _replicas(text: str) -> tuple[str, int]:
    model, _, count = text.rpartition("=")
    if not model or not count.isdigit() or int(count) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: use MODEL=N with N >= 1")
    return model, int(count)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "models":
        settings = Settings(**_overrides(args, ["config_file"]))
        return _list_models(settings)
    overrides = _overrides(args, [
        "host", "port", "models", "config_file", "threads", "log_level", "log_json",
        "api_keys_file", "allow_open_access", "max_in_flight", "max_queue", "request_timeout_s",
        "idle_ttl_s", "memory_budget_mb", "shutdown_grace_s", "ray", "ray_address"])
    if getattr(args, "ray_replicas", None):
        overrides["ray_replicas"] = dict(args.ray_replicas)
    settings = Settings(**overrides)
    if args.mmproj:
        try:
            settings = with_mmproj(settings, args.mmproj)
        except ValueError as exc:
            print(f"pocketserve: {exc}", file=sys.stderr)
            return 2
    return _serve(settings)


def with_mmproj(settings: Settings, mmproj: str) -> Settings:
    """The settings with `mmproj` as the projector of the llama.cpp model it goes with: the
    one --model given as a path to a GGUF file, else the one llama.cpp model served. It becomes
    a catalog entry of its own (`extra_models`), so /v1/models and the worker see the option."""
    from pathlib import Path

    from pocketserve.catalog import SourceUnavailable, resolve_source
    from pocketserve.errors import ModelNotFound

    catalog = Catalog(settings.extra_models)
    try:
        specs = [catalog.find(name) for name in settings.models]
    except ModelNotFound as exc:
        raise ValueError(str(exc)) from None
    chats = [(i, s) for i, s in enumerate(specs) if s.backend == "llamacpp"]
    by_path = [(i, s) for i, s in chats if settings.models[i].lower().endswith(".gguf")]
    chats = by_path or chats
    if len(chats) != 1:
        raise ValueError(f"--mmproj needs exactly one llama.cpp --model (a .gguf path) to go "
                         f"with, not {len(chats)}; for several, set `mmproj` in each one's "
                         "options (extra_models in a --config file)")
    try:
        source = mmproj if mmproj.startswith("package:") else str(Path(mmproj).resolve())
        resolve_source(source)
    except SourceUnavailable as exc:
        raise ValueError(f"--mmproj: {exc}") from None
    index, spec = chats[0]
    seeing = spec.model_copy(update={"options": {**spec.options, "mmproj": source}})
    models = list(settings.models)
    models[index] = seeing.id
    return settings.model_copy(update={"models": models,
                                       "extra_models": [*settings.extra_models, seeing]})


def _list_models(settings: Settings) -> int:
    catalog = Catalog(settings.extra_models)
    print(f"{'ID':28} {'CAPABILITY':14} {'BACKEND':10} AVAILABLE")
    for spec in catalog.all():
        missing = catalog.missing_weights(spec)
        print(f"{spec.id:28} {spec.capability:14} {spec.backend:10} "
              f"{'yes' if missing is None else 'no: ' + missing}")
    return 0


def uvicorn_config(app: ASGIApp, settings: Settings) -> uvicorn.Config:
    """How `pocketserve serve` runs uvicorn; the end-to-end tests serve through it too.

    uvicorn stops accepting on SIGTERM, lets in-flight requests finish for the grace period,
    cancels the rest (which cancels their work in the workers), then runs our lifespan
    shutdown, which stops every worker process. WebSockets run on the `websockets` library's
    sans-I/O protocol (what uvicorn's "auto" picks, named so that a missing library fails at
    start), with messages capped at max_body_bytes (close code 1009 past it).
    """
    import uvicorn

    _quiet_denial_false_alarm()
    return uvicorn.Config(app, host=settings.host, port=settings.port, log_config=None,
                          log_level=settings.log_level, access_log=False,
                          timeout_graceful_shutdown=math.ceil(settings.shutdown_grace_s),
                          ws="websockets-sansio", ws_max_size=settings.max_body_bytes)


class _DenialFalseAlarm(logging.Filter):
    """Drops the error uvicorn's websockets-sansio protocol logs after every handshake denied
    with an HTTP response (it forgets that the denial settled the handshake; uvicorn PR #3138).
    Our request-context middleware never lets a route return without settling a handshake, so
    the line is always this false alarm."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "ASGI callable returned without completing handshake."


def _quiet_denial_false_alarm() -> None:
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _DenialFalseAlarm) for f in logger.filters):
        logger.addFilter(_DenialFalseAlarm())


def _serve(settings: Settings) -> int:
    import uvicorn

    from pocketserve.api.app import create_app
    from pocketserve.api.auth import check_bind
    from pocketserve.logs import setup_logging

    try:
        keys = settings.all_api_keys()
    except OSError as exc:
        print(f"pocketserve: cannot read the API keys file: {exc}", file=sys.stderr)
        return 2
    refusal = check_bind(settings.host, bool(keys), settings.allow_open_access)
    if refusal is not None:
        print(f"pocketserve: {refusal}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level, settings.log_json)
    ray = None
    factory = None
    if settings.ray:
        try:
            from pocketserve.ray_serve.deploy import RayDeployment
        except ImportError as exc:
            print(f"pocketserve: --ray needs Ray Serve: pip install 'pocketserve[ray]' ({exc})",
                  file=sys.stderr)
            return 2
        ray = RayDeployment(settings)
        factory = ray.deploy()
    server = uvicorn.Server(uvicorn_config(create_app(settings, factory), settings))
    try:
        with contextlib.suppress(KeyboardInterrupt):  # as uvicorn.run: Ctrl-C is a normal stop
            server.run()
    finally:
        if ray is not None:
            ray.teardown()
    return 0 if server.started else 3  # 3: uvicorn's exit status for a failed start


if __name__ == "__main__":
    sys.exit(main())
