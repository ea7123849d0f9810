"""The messages on a worker's socket: msgpack maps, streamed back to back.

Server -> worker: {"id", "op", "payload", "rid"?} starts a request (`rid`: the HTTP request id,
for the worker's log lines); {"id", "op": "cancel"} stops one; {"id", "op": "stats"} asks what
the worker is running.
Worker -> server: {"event": "ready", "info"} or {"event": "load_failed", "error"} once at start,
then per request any number of {"id", "event": "data", "data"} and one
{"id", "event": "end"} or {"id", "event": "error", "error": PocketserveError.to_wire()}.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from typing import Any

import msgpack

CANCEL = "cancel"
STATS = "stats"  # answered by the worker's reader thread: {"active", "events"}


def pack(message: dict[str, Any]) -> bytes:
    data: bytes = msgpack.packb(message, use_bin_type=True)
    return data


def new_unpacker() -> msgpack.Unpacker:
    return msgpack.Unpacker(raw=False, max_buffer_size=256 * 1024 * 1024)


class BlockingChannel:
    """The worker's end: blocking reads on one thread, writes from many under a lock."""

    def __init__(self, sock: socket.socket):
        self._sock = sock
        self._lock = threading.Lock()

    def send(self, message: dict[str, Any]) -> None:
        """Send, or drop the message once the server has gone: the worker is exiting then
        (its reader sees EOF and cancels everything), and there is nobody left to tell."""
        data = pack(message)
        with self._lock, contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self._sock.sendall(data)

    def messages(self) -> Iterator[dict[str, Any]]:
        """Yields messages until the other end closes the socket."""
        unpacker = new_unpacker()
        while True:
            chunk = self._sock.recv(1 << 16)
            if not chunk:
                return
            unpacker.feed(chunk)
            yield from unpacker
