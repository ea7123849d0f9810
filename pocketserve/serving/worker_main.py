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
from pathlib import Path
from typing import Any

from pocketserve.backends import load_engine
from pocketserve.catalog import resolve_source
from pocketserve.config import ModelSpec
from pocketserve.engines.base import Engine
from pocketserve.errors import EngineFailure, PocketserveError
from pocketserve.serving.cpu import continue_on_parent_death
from pocketserve.serving.ipc import CANCEL, STATS, BlockingChannel

log = logging.getLogger("pocketserve.worker")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--spec", required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--cache-dir", type=Path, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s "
                        f"[worker {os.getpid()}] %(name)s: %(message)s")
    continue_on_parent_death()  # the server may pause this process: never leave it paused
    spec = ModelSpec.model_validate_json(args.spec)
    channel = BlockingChannel(socket.socket(fileno=args.fd))
    try:
        engine = load_engine(spec, resolve_source(spec.source), args.threads, args.cache_dir)
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


class _Requests:
    """The requests this worker is running, each with the event that cancels it."""

    def __init__(self, channel: BlockingChannel, engine: Engine):
        self.channel = channel
        self.handlers = engine.handlers()
        self.running: dict[int, threading.Event] = {}
        self.emitted = 0  # data events sent, for the server's `stats`
        self.lock = threading.Lock()

    def add(self, request_id: int) -> threading.Event:
        cancelled = threading.Event()
        with self.lock:
            self.running[request_id] = cancelled
        return cancelled

    def cancel(self, request_id: int | None = None) -> None:
        """Cancel one request, or all of them (None)."""
        with self.lock:
            events = list(self.running.values()) if request_id is None else [
                e for e in [self.running.get(request_id)] if e is not None]
        for event in events:
            event.set()

    def stats(self, request_id: int) -> None:
        with self.lock:
            stats = {"active": len(self.running), "events": self.emitted}
        self.channel.send({"id": request_id, "event": "data", "data": stats})
        self.channel.send({"id": request_id, "event": "end"})

    def run(self, request_id: int, op: str, payload: dict[str, Any],
            cancelled: threading.Event, rid: str) -> None:
        def emit(data: dict[str, Any]) -> None:
            self.channel.send({"id": request_id, "event": "data", "data": data})
            with self.lock:
                self.emitted += 1

        try:
            handler = self.handlers.get(op)
            if handler is None:
                raise EngineFailure(f"this model does not support {op!r}")
            handler(payload, emit, cancelled)
            self.channel.send({"id": request_id, "event": "end"})
        except PocketserveError as exc:
            self.channel.send({"id": request_id, "event": "error", "error": exc.to_wire()})
        except Exception as exc:
            log.error("[%s] request failed:\n%s", rid, traceback.format_exc())
            failure = EngineFailure(f"the model failed: {type(exc).__name__}: {exc}")
            self.channel.send({"id": request_id, "event": "error", "error": failure.to_wire()})
        finally:
            with self.lock:
                self.running.pop(request_id, None)


def serve(channel: BlockingChannel, engine: Engine) -> None:
    """Dispatch requests to threads until the server closes the socket."""
    requests = _Requests(channel, engine)
    with ThreadPoolExecutor(max_workers=64, thread_name_prefix="op") as pool:
        for message in channel.messages():
            request_id = int(message["id"])
            if message["op"] == CANCEL:
                requests.cancel(request_id)
            elif message["op"] == STATS:
                requests.stats(request_id)
            else:
                pool.submit(requests.run, request_id, str(message["op"]),
                            message.get("payload") or {}, requests.add(request_id),
                            str(message.get("rid", request_id)))
        # The server went away: stop everything still running, then exit.
        requests.cancel()


if __name__ == "__main__":
    raise SystemExit(main())
