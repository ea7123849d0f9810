"""Spawning, supervising and talking to one model's worker process.

A worker that dies is restarted with exponential backoff; requests it was running fail with
ModelNotReady (503) instead of hanging, and the model answers again once the new one is ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
import sys
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Generic, TypeVar

import psutil

from pocketserve.config import ModelSpec
from pocketserve.errors import DeadlineExceeded, ModelNotReady, PocketserveError
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
    Op,
    Ready,
    Start,
    Stats,
    WorkerStats,
    frame,
    raw,
)

Req = TypeVar("Req")
Ev = TypeVar("Ev")

log = logging.getLogger("pocketserve.worker")


class WorkerState(StrEnum):
    LOADING = "loading"
    READY = "ready"
    RESTARTING = "restarting"
    FAILED = "failed"
    UNLOADED = "unloaded"


@dataclass
class WorkerOptions:
    threads: int
    start_timeout_s: float
    max_backoff_s: float
    cache_dir: Path
    log_level: str = "info"


class _Stop:
    """Why a request's events ended without the worker saying so (queued as an event)."""

    def __init__(self, why: str):
        self.why = why


_CRASHED = _Stop("crashed")
_UNLOADED = _Stop("unloaded")
_DEADLINE = _Stop("deadline")
Queued = Data | End | Failed | _Stop


class OpStream(Generic[Ev]):
    """One request's events from a worker; for an operation that streams input, also the way
    to send that input while it runs. Closing `events()` early cancels it in the worker."""

    def __init__(self, worker: WorkerProcess, op: Op[Any, Ev], wire_id: int,
                 queue: asyncio.Queue[Queued], writer: asyncio.StreamWriter,
                 deadline: float | None):
        self.op = op
        self._worker = worker
        self._id = wire_id
        self._queue = queue
        self._writer = writer
        self._finished = False
        # One timer per request puts the deadline in the queue: cheaper than a timeout on
        # every wait, which a streamed request does once per token.
        self._timer = None if deadline is None else asyncio.get_running_loop().call_later(
            max(0.0, deadline - time.monotonic()), queue.put_nowait, _DEADLINE)

    def send(self, value: Any) -> None:
        """One more input frame (an `op.input` value)."""
        if not self.op.streams_input:
            raise TypeError(f"operation {self.op.name!r} takes no streamed input")
        if not self._writer.is_closing():
            self._writer.write(frame(Input(self._id, raw(value))))

    def end_input(self) -> None:
        if not self._writer.is_closing():
            self._writer.write(frame(InputEnd(self._id)))

    def close(self) -> None:
        """Forget the request; cancel it in the worker unless it has finished."""
        if self._timer is not None:
            self._timer.cancel()
        self._worker._pending.pop(self._id, None)
        if not self._finished and not self._writer.is_closing():
            self._writer.write(frame(Cancel(self._id)))
        self._finished = True

    async def events(self) -> AsyncGenerator[Ev]:
        model = self._worker.spec.id
        try:
            while True:
                message = await self._queue.get()
                if isinstance(message, Data):
                    yield self.op.decode_event(message.data)
                    continue
                if message is _DEADLINE:
                    raise DeadlineExceeded(f"The request to model {model!r} ran past "
                                           "its deadline and was stopped.")
                self._finished = True
                if isinstance(message, End):
                    return
                if isinstance(message, Failed):
                    raise PocketserveError.from_wire(message.error)
                if message is _UNLOADED:
                    raise ModelNotReady(f"The model {model!r} was unloaded while "
                                        "serving this request.")
                raise ModelNotReady(
                    f"The worker of model {model!r} stopped while serving this request; "
                    "it is being restarted.")
        finally:
            self.close()


class WorkerProcess:
    """One model's process: its state, and a stream of events per request."""

    def __init__(self, spec: ModelSpec, options: WorkerOptions):
        self.spec = spec
        self.options = options
        self.state = WorkerState.UNLOADED
        self.info: dict[str, Any] = {}
        self.error: str | None = None
        self.restarts = 0
        self.pid: int | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._pending: dict[int, asyncio.Queue[Queued]] = {}
        self._ids = itertools.count(1)
        self._runner: asyncio.Task[None] | None = None
        self._first_outcome = asyncio.Event()
        self._stopping = False

    @property
    def stopping(self) -> bool:
        """Being stopped (unload, shutdown): the CPU scheduler must not pause it then."""
        return self._stopping

    async def start(self) -> None:
        """Start the process and wait until the model is ready or has failed to load."""
        self._stopping = False
        self._first_outcome.clear()
        self._runner = asyncio.create_task(self._run(), name=f"worker-{self.spec.id}")
        await self._first_outcome.wait()

    async def stop(self) -> None:
        """Close the worker's socket (it cancels its work and exits), kill it if it lingers."""
        self._stopping = True
        self._fail_pending(_UNLOADED)
        if self._proc is not None and self._proc.returncode is None:
            if self._writer is not None:
                self._writer.close()  # EOF: the worker cancels its work and exits
            try:
                await asyncio.wait_for(self._proc.wait(), timeout=10)
            except TimeoutError:
                self._proc.kill()
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        self.state = WorkerState.UNLOADED
        self.pid = None

    def open(self, op: Op[Req, Ev], request: Req, *, deadline: float | None = None,
             request_id: str | None = None) -> OpStream[Ev]:
        """Start one request; read its events from the stream it returns."""
        if self.state != WorkerState.READY or self._writer is None or self._writer.is_closing():
            raise ModelNotReady(self._not_ready_message())
        return self._exchange(
            op, lambda wire_id: Start(wire_id, op.name, raw(request), request_id or ""),
            deadline)

    def _exchange(self, op: Op[Any, Ev], message: Callable[[int], Start | Stats],
                  deadline: float | None) -> OpStream[Ev]:
        """Send the first frame of a new exchange; its answers go to the stream returned."""
        assert self._writer is not None
        wire_id = next(self._ids)
        queue: asyncio.Queue[Queued] = asyncio.Queue()
        self._pending[wire_id] = queue
        self._writer.write(frame(message(wire_id)))
        return OpStream(self, op, wire_id, queue, self._writer, deadline)

    async def stream(self, op: Op[Req, Ev], request: Req, *, deadline: float | None = None,
                     request_id: str | None = None) -> AsyncGenerator[Ev]:
        """Events of one request. Leaving early (client gone, deadline) cancels it in the
        worker, which drops it at its next step."""
        events = self.open(op, request, deadline=deadline, request_id=request_id).events()
        async with contextlib.aclosing(events):
            async for event in events:
                yield event

    async def stats(self) -> WorkerStats:
        """What the worker process itself is doing (active requests, events emitted); it
        answers from its reader thread, so this is quick even when the model is busy."""
        if self.state != WorkerState.READY or self._writer is None or self._writer.is_closing():
            return WorkerStats()
        events = self._exchange(_STATS, Stats, time.monotonic() + 2.0).events()
        try:
            async with contextlib.aclosing(events):
                async for stats in events:
                    return stats
        except (PocketserveError, ConnectionError, RuntimeError):  # stopping meanwhile
            pass
        return WorkerStats()

    def memory_bytes(self) -> int:
        """Resident memory of the worker process (0 when none runs)."""
        if self.pid is None or self.state not in (WorkerState.READY, WorkerState.LOADING):
            return 0
        try:
            return int(psutil.Process(self.pid).memory_info().rss)
        except psutil.Error:
            return 0

    def _not_ready_message(self) -> str:
        state = self.state.value
        detail = f": {self.error}" if self.error else ""
        return f"The model {self.spec.id!r} is not ready (state: {state}){detail}."

    async def _run(self) -> None:
        backoff = 0.5
        while not self._stopping:
            self.state = WorkerState.LOADING if self.restarts == 0 else WorkerState.RESTARTING
            ready = await self._spawn_and_load()
            self._first_outcome.set()
            if not ready:
                self.state = WorkerState.FAILED
                return
            self.state = WorkerState.READY
            backoff = 0.5
            code = await self._proc.wait() if self._proc is not None else -1
            if self._stopping:
                return
            self.restarts += 1
            self.error = f"worker exited with code {code}; restarting"
            log.error("worker of %s (pid %s) exited with code %s; restarting",
                      self.spec.id, self.pid, code)
            self.state = WorkerState.RESTARTING
            self._fail_pending()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.options.max_backoff_s)

    async def _spawn_and_load(self) -> bool:
        parent, child = socket.socketpair()
        try:
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "pocketserve.serving.worker_main",
                "--fd", str(child.fileno()), "--spec", self.spec.model_dump_json(),
                "--threads", str(self.options.threads), "--log-level", self.options.log_level,
                "--cache-dir", str(self.options.cache_dir),
                pass_fds=(child.fileno(),),
            )
        finally:
            child.close()
        self.pid = self._proc.pid
        reader, self._writer = await asyncio.open_unix_connection(sock=parent)
        loaded: asyncio.Future[Ready | LoadFailed] = asyncio.get_running_loop().create_future()
        reading = asyncio.create_task(self._read(reader, loaded))
        first: Ready | LoadFailed
        try:
            first = await asyncio.wait_for(loaded, timeout=self.options.start_timeout_s)
        except (TimeoutError, ConnectionError) as exc:
            first = LoadFailed(f"no answer from the worker: {exc!r}")
        if isinstance(first, Ready):
            self.info = dict(first.info)
            self.error = None
            log.info("model %s ready in worker pid %s", self.spec.id, self.pid)
            return True
        self.error = first.error
        log.error("model %s failed to load: %s", self.spec.id, self.error)
        reading.cancel()
        if self._proc.returncode is None:
            self._proc.kill()
            await self._proc.wait()
        return False

    async def _read(self, reader: asyncio.StreamReader,
                    loaded: asyncio.Future[Ready | LoadFailed]) -> None:
        frames = FrameReader(FromWorker)
        while chunk := await reader.read(1 << 16):
            for message in frames.feed(chunk):
                if isinstance(message, Ready | LoadFailed):
                    if not loaded.done():
                        loaded.set_result(message)
                    continue
                queue = self._pending.get(message.id)
                if queue is not None:
                    queue.put_nowait(message)
        if not loaded.done():
            loaded.set_exception(ConnectionError("worker closed its socket"))
        if self.state == WorkerState.READY and not self._stopping:
            # The process is gone or going: refuse new requests now, not once it is reaped.
            self.state = WorkerState.RESTARTING
        self._fail_pending()

    def _fail_pending(self, why: _Stop = _CRASHED) -> None:
        for queue in self._pending.values():
            queue.put_nowait(why)


_STATS: Op[Any, WorkerStats] = Op("stats", dict, WorkerStats)
