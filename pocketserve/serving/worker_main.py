"""Entry point of a worker process: load one model, then serve its operations until EOF.

Run as `python -m pocketserve.serving.worker_main --fd N --spec JSON`. Each request runs on its
own thread (the model libraries release the GIL), so a backend that batches internally, like
llama.cpp, sees all concurrent requests at once.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import threading
import traceback
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pocketserve.backends import load_engine
from pocketserve.catalog import resolve_source
from pocketserve.config import ModelSpec
from pocketserve.engines.base import Engine
from pocketserve.errors import EngineFailure, PocketserveError
from pocketserve.serving.ipc import CANCEL, STATS, BlockingChannel

log = logging.getLogger("pocketserve.worker")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--spec", required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args()
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s "
                        f"[worker {os.getpid()}] %(name)s: %(message)s")
    spec = ModelSpec.model_validate_json(args.spec)
    channel = BlockingChannel(socket.socket(fileno=args.fd))
    try:
        engine = load_engine(spec, resolve_source(spec.source), args.threads)
    except Exception as exc:  # any failure to load is reported, not raised
        # Name the backend and the weights: a library's own message often names neither.
        cause = (f"loading {spec.source} with the {spec.backend} backend failed: "
                 f"{type(exc).__name__}: {exc}")
        log.error("%s: %s", spec.id, cause)
        channel.send({"event": "load_failed", "error": cause})
        return 1
    channel.send({"event": "ready", "info": engine.info()})
    try:
        serve(channel, engine)
    finally:
        engine.close()
    return 0


def serve(channel: BlockingChannel, engine: Engine) -> None:
    """Dispatch requests to threads until the server closes the socket."""
    handlers = engine.handlers()
    running: dict[int, threading.Event] = {}
    emitted = [0]  # data events sent, for the server's `stats`
    lock = threading.Lock()

    def run(request_id: int, op: str, payload: dict[str, Any], cancelled: threading.Event,
            rid: str) -> None:
        def emit(data: dict[str, Any]) -> None:
            channel.send({"id": request_id, "event": "data", "data": data})
            with lock:
                emitted[0] += 1

        try:
            handler = handlers.get(op)
            if handler is None:
                raise EngineFailure(f"this model does not support {op!r}")
            handler(payload, emit, cancelled)
            channel.send({"id": request_id, "event": "end"})
        except PocketserveError as exc:
            channel.send({"id": request_id, "event": "error", "error": exc.to_wire()})
        except Exception as exc:
            log.error("[%s] request failed:\n%s", rid, traceback.format_exc())
            failure = EngineFailure(f"the model failed: {type(exc).__name__}: {exc}")
            channel.send({"id": request_id, "event": "error", "error": failure.to_wire()})
        finally:
            with lock:
                running.pop(request_id, None)
            if cancelled.is_set():
                log.debug("[%s] request %s cancelled", rid, request_id)

    with ThreadPoolExecutor(max_workers=64, thread_name_prefix="op") as pool:
        for message in channel.messages():
            request_id = int(message["id"])
            if message["op"] == CANCEL:
                with lock:
                    event = running.get(request_id)
                if event is not None:
                    event.set()
                continue
            if message["op"] == STATS:
                with lock:
                    stats = {"active": len(running), "events": emitted[0]}
                channel.send({"id": request_id, "event": "data", "data": stats})
                channel.send({"id": request_id, "event": "end"})
                continue
            cancelled = threading.Event()
            with lock:
                running[request_id] = cancelled
            pool.submit(run, request_id, str(message["op"]), message.get("payload") or {},
                        cancelled, str(message.get("rid", request_id)))
        # The server went away: stop everything still running, then exit.
        with lock:
            for event in running.values():
                event.set()


if __name__ == "__main__":
    raise SystemExit(main())
