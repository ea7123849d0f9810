"""`pocketserve serve | models`."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pocketserve import __version__
from pocketserve.catalog import Catalog
from pocketserve.config import Settings


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
    serve.add_argument("--threads", type=int, help="CPU threads per model worker")
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    serve.add_argument("--log-json", action="store_true", default=None,
                       help="log one JSON object per line")

    models = sub.add_parser("models", help="list the catalog and what is installed here")
    models.add_argument("--config", dest="config_file", help="YAML file of settings")
    return parser


def _overrides(args: argparse.Namespace, names: list[str]) -> dict[str, Any]:
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "models":
        settings = Settings(**_overrides(args, ["config_file"]))
        return _list_models(settings)
    settings = Settings(**_overrides(args, ["host", "port", "models", "config_file", "threads",
                                            "log_level", "log_json"]))
    return _serve(settings)


def _list_models(settings: Settings) -> int:
    catalog = Catalog(settings.extra_models)
    print(f"{'ID':28} {'CAPABILITY':14} {'BACKEND':10} AVAILABLE")
    for spec in catalog.all():
        missing = catalog.available(spec)
        print(f"{spec.id:28} {spec.capability:14} {spec.backend:10} "
              f"{'yes' if missing is None else 'no: ' + missing}")
    return 0


def _serve(settings: Settings) -> int:
    import uvicorn

    from pocketserve.api.app import create_app
    from pocketserve.logs import setup_logging

    setup_logging(settings.log_level, settings.log_json)
    app = create_app(settings)
    uvicorn.run(app, host=settings.host, port=settings.port, log_config=None,
                log_level=settings.log_level, timeout_graceful_shutdown=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
