"""Entry point of a worker process: load one model, then serve its operations until EOF.

Run as `python -m pocketserve.serving.worker_main --fd N --spec JSON`. Each request runs on its
own thread (the model libraries release the GIL), so a backend that batches internally, like
llama.cpp, sees all concurrent requests at once.
"""

from __future__ import annotations

import argparse
import contextlib
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
from pocketserve.engines.base import Call, Engine, Inputs, Served
from pocketserve.errors import EngineFailure, InvalidRequest, PocketserveError
from pocketserve.ops.wire import (
    Cancel,
    Data,
    End,
    Failed,
    FrameReader,
    FromWorker,
    Input,
    InputEnd,
    LoadFailed,
    Ready,
    Start,
    Stats,
    ToWorker,
    WorkerStats,
    frame,
    raw,
)
from pocketserve.serving.cpu import continue_on_parent_death

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
    channel = Channel(socket.socket(fileno=args.fd))
    try:
        engine = load_engine(spec, resolve_source(spec.source), args.threads, args.cache_dir)
    except Exception as exc:  # any failure to load is reported, not raised
        # Name the backend and the weights: a library's own message often names neither.
        cause = (f"loading {spec.source} with the {spec.backend} backend failed: "
                 f"{type(exc).__name__}: {exc}")
        log.error("%s: %s", spec.id, cause)
        channel.send(LoadFailed(cause))
        return 1
    warm_up(engine, spec.id)
    channel.send(Ready(engine.info()))
    try:
        serve(channel, engine)
    finally:
        engine.close()
    return 0


class Channel:
    """The worker's end of the socket: blocking reads on one thread, writes from many."""

    def __init__(self, sock: socket.socket):
        self._sock = sock
        self._lock = threading.Lock()

    def send(self, message: FromWorker) -> None:
        """Send, or drop the message once the server has gone: the worker is exiting then
        (its reader sees EOF and cancels everything), and there is nobody left to tell."""
        data = frame(message)
        with self._lock, contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self._sock.sendall(data)

    def messages(self) -> Any:
        """Yields messages until the other end closes the socket."""
        reader = FrameReader(ToWorker)
        while chunk := self._sock.recv(1 << 16):
            yield from reader.feed(chunk)


def warm_up(engine: Engine, model: str) -> None:
    """Run the engine's warm-up requests once; a failure is logged, not fatal."""
    ops = {s.op.name: s for s in engine.operations()}
    for warmup in engine.warmups():
        served = ops.get(warmup.op.name)
        if served is None:
            log.warning("%s: warm-up names %r, which the engine does not serve", model,
                        warmup.op.name)
            continue
        try:
            served.run(warmup.request, lambda event: None, Call())
        except Exception as exc:
            log.warning("%s: warm-up %s failed: %s: %s", model, warmup.op.name,
                        type(exc).__name__, exc)


class _Running:
    """The requests this worker is running, each with its operation and controls."""

    def __init__(self, channel: Channel, engine: Engine):
        self.channel = channel
        self.ops: dict[str, Served[Any, Any]] = {s.op.name: s for s in engine.operations()}
        self.calls: dict[int, tuple[Served[Any, Any], Call]] = {}
        self.emitted = 0  # data events sent, for the server's `stats`
        self.lock = threading.Lock()

    def start(self, message: Start) -> tuple[Served[Any, Any], Call] | None:
        """Register a request; None (after answering it) when it cannot run."""
        served = self.ops.get(message.op)
        if served is None:
            self._fail(message.id, EngineFailure(f"this model does not support {message.op!r}"))
            return None
        call = Call()
        if served.op.streams_input:
            call.inputs = Inputs(call.cancelled)
        with self.lock:
            self.calls[message.id] = (served, call)
        return served, call

    def input(self, message: Input | InputEnd) -> None:
        with self.lock:
            entry = self.calls.get(message.id)
        if entry is None or entry[1].inputs is None:
            return  # finished meanwhile, or an op without streamed input
        served, call = entry
        assert call.inputs is not None
        if isinstance(message, InputEnd):
            call.inputs.end()
            return
        try:
            call.inputs.put(served.op.decode_input(message.data))
        except ValueError as exc:
            log.warning("malformed input frame for %s: %s", served.op.name, exc)
            call.cancel()

    def cancel(self, request_id: int | None = None) -> None:
        """Cancel one request, or all of them (None)."""
        with self.lock:
            entries = list(self.calls.values()) if request_id is None else [
                e for e in [self.calls.get(request_id)] if e is not None]
        for _, call in entries:
            call.cancel()

    def stats(self, request_id: int) -> None:
        with self.lock:
            stats = WorkerStats(active=len(self.calls), events=self.emitted)
        self.channel.send(Data(request_id, raw(stats)))
        self.channel.send(End(request_id))

    def run(self, request_id: int, served: Served[Any, Any], payload: Any, call: Call,
            rid: str) -> None:
        def emit(event: Any) -> None:
            self.channel.send(Data(request_id, raw(event)))
            with self.lock:
                self.emitted += 1

        outcome: FromWorker = End(request_id)
        try:
            try:
                request = served.op.decode_request(payload)
            except ValueError as exc:  # msgspec names the field at fault
                raise InvalidRequest(f"malformed {served.op.name!r} request: {exc}") from exc
            served.run(request, emit, call)
        except PocketserveError as exc:
            outcome = Failed(request_id, exc.to_wire())
        except Exception as exc:
            log.error("[%s] request failed:\n%s", rid, traceback.format_exc())
            outcome = Failed(request_id, EngineFailure(
                f"the model failed: {type(exc).__name__}: {exc}").to_wire())
        finally:
            # Forgotten before the answer goes out: `stats` right after it shows it gone.
            with self.lock:
                self.calls.pop(request_id, None)
        self.channel.send(outcome)

    def _fail(self, request_id: int, exc: PocketserveError) -> None:
        self.channel.send(Failed(request_id, exc.to_wire()))


def serve(channel: Channel, engine: Engine) -> None:
    """Dispatch requests to threads until the server closes the socket."""
    running = _Running(channel, engine)
    with ThreadPoolExecutor(max_workers=64, thread_name_prefix="op") as pool:
        for message in channel.messages():
            if isinstance(message, Start):
                started = running.start(message)
                if started is not None:
                    served, call = started
                    pool.submit(running.run, message.id, served, message.payload, call,
                                message.rid or str(message.id))
            elif isinstance(message, Input | InputEnd):
                running.input(message)
            elif isinstance(message, Cancel):
                running.cancel(message.id)
            elif isinstance(message, Stats):
                running.stats(message.id)
        # The server went away: stop everything still running, then exit.
        running.cancel()


if __name__ == "__main__":
    raise SystemExit(main())
