"""One replica of a model on Ray Serve: the model's own worker process inside a Ray actor.

The engine still runs in its worker process, not in the replica's Python, so a crash in native
code costs the worker, which the replica restarts as the plain server does; a replica that dies
(or whose worker cannot come back) is replaced by Ray, which `check_health` tells it. Requests
arrive as an operation's name and its msgpack-encoded request, and events leave msgpack-encoded
as they come (a streaming deployment method), so Ray's pickling never sees the typed structs.
A refusal or failure of the model leaves as one last frame that names the error.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncGenerator
from typing import Any

import msgspec

from pocketserve.config import ModelSpec
from pocketserve.errors import PocketserveError
from pocketserve.ops.chat import CHAT, COMPLETE, DETOKENIZE, TOKENIZE
from pocketserve.ops.embeddings import EMBED
from pocketserve.ops.rerank import RERANK
from pocketserve.ops.speech import SPEECH
from pocketserve.ops.transcription import TRANSCRIBE
from pocketserve.ops.wire import Op, encode
from pocketserve.serving.worker import WorkerOptions, WorkerProcess, WorkerState

# Operations a replica serves (LISTEN, whose input streams in, is not carried over Ray yet).
OPS: dict[str, Op[Any, Any]] = {op.name: op for op in (
    CHAT, COMPLETE, TOKENIZE, DETOKENIZE, EMBED, RERANK, SPEECH, TRANSCRIBE)}


class Frame(msgspec.Struct, omit_defaults=True):
    """What a replica yields: an event (msgpack of the op's event type) or the error."""

    event: bytes | None = None
    error: dict[str, Any] | None = None
    replica: int | None = None  # on the first frame: the pid of the replica that answers


class ModelReplica:
    """The class Ray Serve deploys, one per model (`serve.deployment(ModelReplica)`)."""

    def __init__(self, spec_json: str, options: dict[str, Any]):
        self.spec = ModelSpec.model_validate_json(spec_json)
        self.worker = WorkerProcess(self.spec, WorkerOptions(**options))
        self.started = time.time()
        self._loading: asyncio.Task[None] | None = None

    async def _ready(self) -> None:
        if self._loading is None:
            self._loading = asyncio.ensure_future(self.worker.start())
        await asyncio.shield(self._loading)

    async def describe(self) -> dict[str, Any]:
        """The replica's view: its model's state and load info, its process ids, memory."""
        await self._ready()
        return {"state": self.worker.state.value, "info": self.worker.info,
                "error": self.worker.error, "replica_pid": os.getpid(),
                "worker_pid": self.worker.pid, "memory_bytes": self.worker.memory_bytes(),
                "restarts": self.worker.restarts}

    async def run(self, op_name: str, request: bytes, deadline_in_s: float | None,
                  request_id: str) -> AsyncGenerator[bytes]:
        await self._ready()
        op = OPS.get(op_name)
        if op is None:
            yield encode(Frame(error=PocketserveError(
                f"{op_name!r} is not served through Ray.", param=None).to_wire()))
            return
        deadline = None if deadline_in_s is None else time.monotonic() + deadline_in_s
        yield encode(Frame(replica=os.getpid()))
        try:
            async for event in self.worker.stream(op, msgspec.Raw(request), deadline=deadline,
                                                  request_id=request_id):
                yield encode(Frame(event=encode(event)))
        except PocketserveError as exc:
            yield encode(Frame(error=exc.to_wire()))

    async def check_health(self) -> None:
        """Ray Serve replaces a replica whose check fails: here, a model that cannot load."""
        if self._loading is not None and self._loading.done() and (
                self.worker.state == WorkerState.FAILED):
            raise RuntimeError(f"{self.spec.id} cannot load: {self.worker.error}")

    def __del__(self) -> None:
        proc = getattr(self.worker, "_proc", None)
        if proc is not None and proc.returncode is None:
            proc.kill()
