"""The API process's handle on a model deployed on Ray Serve, shaped as a `WorkerProcess`, so
the registry's admission, deadlines, cancel, metrics and errors work unchanged.

`start` waits until a replica answers `describe`; `stream` calls the deployment's streaming
`run` through a Ray Serve handle (Ray routes each request to a replica) and decodes the frames.
Closing the stream early cancels the Ray request, which closes the replica's worker stream.
Ray owns the replicas: `stop` only forgets them here. Operations whose input streams in
(`LISTEN`: realtime audio, /ws/stt) are refused with a clear error.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncGenerator
from typing import Any

import msgspec

from pocketserve.config import ModelSpec
from pocketserve.errors import EngineFailure, InvalidRequest, ModelNotReady, PocketserveError
from pocketserve.ops.wire import Op, WorkerStats, encode
from pocketserve.ray_serve.replica import Frame
from pocketserve.serving.worker import WorkerState

_frames = msgspec.msgpack.Decoder(Frame)


class RayWorker:
    def __init__(self, spec: ModelSpec, app_name: str, start_timeout_s: float = 600.0):
        self.spec = spec
        self.app_name = app_name
        self.start_timeout_s = start_timeout_s
        self.state = WorkerState.UNLOADED
        self.info: dict[str, Any] = {}
        self.error: str | None = None
        self.restarts = 0
        self.pid: int | None = None  # no local process: nothing for the CPU scheduler
        self.stopping = False
        self.replica_pids: Counter[int] = Counter()  # replicas seen answering, by pid
        self._handle: Any = None
        self._memory = 0

    async def start(self) -> None:
        from ray import serve

        self.state = WorkerState.LOADING
        try:
            self._handle = serve.get_deployment_handle(self.spec.id, app_name=self.app_name)
            described = await asyncio.wait_for(self._handle.describe.remote(),
                                               timeout=self.start_timeout_s)
        except Exception as exc:
            self.state, self.error = WorkerState.FAILED, f"no replica answered: {exc!r}"
            return
        if described["state"] != WorkerState.READY.value:
            self.state, self.error = WorkerState.FAILED, described.get("error")
            return
        self.info = {**described["info"], "ray_app": self.app_name}
        self._memory = int(described.get("memory_bytes") or 0)
        self.state, self.error = WorkerState.READY, None

    async def stop(self) -> None:
        self.state = WorkerState.UNLOADED

    def open(self, op: Op[Any, Any], request: Any, **kwargs: Any) -> Any:
        raise InvalidRequest(f"The model {self.spec.id!r} is served on Ray, which does not "
                             f"carry operations whose input streams in ({op.name}) yet.")

    async def stream(self, op: Op[Any, Any], request: Any, *, deadline: float | None = None,
                     request_id: str | None = None) -> AsyncGenerator[Any]:
        if self.state != WorkerState.READY or self._handle is None:
            raise ModelNotReady(f"The model {self.spec.id!r} is not ready "
                                f"(state: {self.state.value}).")
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        frames = self._handle.options(stream=True).run.remote(
            op.name, encode(request), left, request_id or "")
        try:
            async for data in frames:
                frame = _frames.decode(data)
                if frame.replica is not None:
                    self.replica_pids[frame.replica] += 1
                    self.info["replica_pids_seen"] = sorted(self.replica_pids)
                if frame.error is not None:
                    raise PocketserveError.from_wire(frame.error)
                if frame.event is not None:
                    yield op.decode_event(frame.event)
        except PocketserveError:
            raise
        except Exception as exc:  # the replica died mid-request, or Ray could not route it
            raise EngineFailure(f"The model {self.spec.id!r} on Ray failed: {exc!r}") from None
        finally:
            frames.cancel()

    async def stats(self) -> WorkerStats:
        return WorkerStats()

    def memory_bytes(self) -> int:
        return self._memory if self.state == WorkerState.READY else 0
