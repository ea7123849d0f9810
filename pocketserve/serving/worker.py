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
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import psutil

from pocketserve.config import ModelSpec
from pocketserve.errors import DeadlineExceeded, ModelNotReady, PocketserveError
from pocketserve.serving.ipc import CANCEL, STATS, new_unpacker, pack

log = logging.getLogger("pocketserve.worker")


class WorkerState(StrEnum):
    LOADING = "loading"
    READY = "ready"
    RESTARTING = "restarting"
    FAILED = "failed"
    STOPPED = "unloaded"


@dataclass
class WorkerOptions:
    threads: int
    start_timeout_s: float
    max_backoff_s: float
    cache_dir: Path
    log_level: str = "info"


_CRASHED = {"event": "crashed"}
_UNLOADED = {"event": "unloaded"}
_DEADLINE = {"event": "deadline"}


class WorkerProcess:
    """One model's process: its state, and a stream of events per request."""

    def __init__(self, spec: ModelSpec, options: WorkerOptions):
        self.spec = spec
        self.options = options
        self.state = WorkerState.STOPPED
        self.info: dict[str, Any] = {}
        self.error: str | None = None
        self.restarts = 0
        self.pid: int | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._pending: dict[int, asyncio.Queue[dict[str, Any]]] = {}
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
        self.state = WorkerState.STOPPED
        self.pid = None

    async def stream(self, op: str, payload: dict[str, Any], *, deadline: float | None = None,
                     request_id: str | None = None) -> AsyncGenerator[dict[str, Any]]:
        """Events of one request. Leaving early (client gone, deadline) cancels it in the
        worker, which drops it at its next step."""
        if self.state != WorkerState.READY or self._writer is None or self._writer.is_closing():
            raise ModelNotReady(self._not_ready_message())
        wire_id = next(self._ids)
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._pending[wire_id] = queue
        writer = self._writer
        message: dict[str, Any] = {"id": wire_id, "op": op, "payload": payload}
        if request_id is not None:
            message["rid"] = request_id
        writer.write(pack(message))
        # One timer per request puts the deadline in the queue: cheaper than a timeout on
        # every wait, which a streamed request does once per token.
        timer = None if deadline is None else asyncio.get_running_loop().call_later(
            max(0.0, deadline - time.monotonic()), queue.put_nowait, _DEADLINE)
        finished = False
        try:
            while True:
                message = await queue.get()
                event = message["event"]
                if event == "data":
                    yield message["data"]
                    continue
                if event == "deadline":
                    raise DeadlineExceeded(f"The request to model {self.spec.id!r} ran past "
                                           "its deadline and was stopped.")
                finished = True
                if event == "end":
                    return
                if event == "error":
                    raise PocketserveError.from_wire(message["error"])
                if event == "unloaded":
                    raise ModelNotReady(f"The model {self.spec.id!r} was unloaded while "
                                        "serving this request.")
                raise ModelNotReady(
                    f"The worker of model {self.spec.id!r} stopped while serving this request; "
                    "it is being restarted.")
        finally:
            if timer is not None:
                timer.cancel()
            self._pending.pop(wire_id, None)
            if not finished and not writer.is_closing():
                writer.write(pack({"id": wire_id, "op": CANCEL}))

    async def call(self, op: str, payload: dict[str, Any], *,
                   deadline: float | None = None) -> dict[str, Any]:
        """A request answered by one data event (read to its end, so no cancel is sent)."""
        answer: dict[str, Any] | None = None
        async for data in self.stream(op, payload, deadline=deadline):
            if answer is None:
                answer = data
        if answer is None:
            raise ModelNotReady(f"model {self.spec.id!r} gave no answer to {op!r}")
        return answer

    async def stats(self) -> dict[str, Any]:
        """What the worker process itself is doing (active requests, events emitted); it
        answers from its reader thread, so this is quick even when the model is busy."""
        if self.state != WorkerState.READY:
            return {"active": 0, "events": 0}
        try:
            return await self.call(STATS, {}, deadline=time.monotonic() + 2.0)
        except (PocketserveError, ConnectionError, RuntimeError):  # stopping meanwhile
            return {"active": 0, "events": 0}

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
        loaded: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        reading = asyncio.create_task(self._read(reader, loaded))
        try:
            first = await asyncio.wait_for(loaded, timeout=self.options.start_timeout_s)
        except (TimeoutError, ConnectionError) as exc:
            first = {"event": "load_failed", "error": f"no answer from the worker: {exc!r}"}
        if first["event"] == "ready":
            self.info = dict(first.get("info") or {})
            self.error = None
            log.info("model %s ready in worker pid %s", self.spec.id, self.pid)
            return True
        self.error = str(first.get("error"))
        log.error("model %s failed to load: %s", self.spec.id, self.error)
        reading.cancel()
        if self._proc.returncode is None:
            self._proc.kill()
            await self._proc.wait()
        return False

    async def _read(self, reader: asyncio.StreamReader,
                    loaded: asyncio.Future[dict[str, Any]]) -> None:
        unpacker = new_unpacker()
        while chunk := await reader.read(1 << 16):
            unpacker.feed(chunk)
            for message in unpacker:
                if "id" not in message:
                    if not loaded.done():
                        loaded.set_result(message)
                    continue
                queue = self._pending.get(int(message["id"]))
                if queue is not None:
                    queue.put_nowait(message)
        if not loaded.done():
            loaded.set_exception(ConnectionError("worker closed its socket"))
        self._fail_pending()

    def _fail_pending(self, why: dict[str, Any] = _CRASHED) -> None:
        for queue in self._pending.values():
            queue.put_nowait(why)
