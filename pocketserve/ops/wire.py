"""Operations, and the frames that carry them between the API process and a worker.

An `Op` names one thing a model can do, with the type of its request, the type (or tagged
union) of the events it streams back and, for operations whose input keeps arriving while they
run (audio frames of a live conversation), the type of those input frames. Both processes
import the same declarations (`pocketserve.ops.*`): the API side builds requests and reads
typed events; the worker decodes the request with the op's type and encodes what the engine
emits. msgspec checks every value against its type on decode, so a malformed message fails
at the seam, naming the field, instead of deep inside an engine.

Frames on the socket are msgpack, each preceded by its length (4 bytes, big-endian).
Server -> worker: `Start` (a request), `Input` / `InputEnd` (more input for a running
request), `Cancel`, `Stats`. Worker -> server: `Ready` or `LoadFailed` once, then per request
any number of `Data` and one `End` or `Failed`.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any, Generic, TypeVar

import msgspec

Req = TypeVar("Req")
Ev = TypeVar("Ev")


class Op(Generic[Req, Ev]):
    """One operation: its name on the wire and the types that cross for it."""

    def __init__(self, name: str, request: type[Req], event: Any, input: Any = None):
        self.name = name
        self.request = request
        self.event = event  # a Struct type or a Union of tagged Structs
        self.input = input  # None: all input is in the request
        self._request_decoder = msgspec.msgpack.Decoder(request)
        self._event_decoder = msgspec.msgpack.Decoder(event)
        self._input_decoder = None if input is None else msgspec.msgpack.Decoder(input)

    @property
    def streams_input(self) -> bool:
        return self.input is not None

    def decode_request(self, raw: bytes | msgspec.Raw) -> Req:
        value: Req = self._request_decoder.decode(raw)
        return value

    def decode_event(self, raw: bytes | msgspec.Raw) -> Ev:
        value: Ev = self._event_decoder.decode(raw)
        return value

    def decode_input(self, raw: bytes | msgspec.Raw) -> Any:
        if self._input_decoder is None:
            raise TypeError(f"operation {self.name!r} takes no streamed input")
        return self._input_decoder.decode(raw)

    def __repr__(self) -> str:
        return f"Op({self.name!r})"


# -- frames: server -> worker ------------------------------------------------------------------

class Start(msgspec.Struct, tag="start"):
    id: int
    op: str
    payload: msgspec.Raw
    rid: str = ""  # the HTTP request id, for the worker's log lines


class Input(msgspec.Struct, tag="input"):
    id: int
    data: msgspec.Raw


class InputEnd(msgspec.Struct, tag="input_end"):
    id: int


class Cancel(msgspec.Struct, tag="cancel"):
    id: int


class Stats(msgspec.Struct, tag="stats"):
    """Answered by the worker's reader thread with one `Data(WorkerStats)` and `End`."""

    id: int


ToWorker = Start | Input | InputEnd | Cancel | Stats


# -- frames: worker -> server ------------------------------------------------------------------

class Ready(msgspec.Struct, tag="ready"):
    info: dict[str, Any]


class LoadFailed(msgspec.Struct, tag="load_failed"):
    error: str


class Data(msgspec.Struct, tag="data"):
    id: int
    data: msgspec.Raw


class End(msgspec.Struct, tag="end"):
    id: int


class Failed(msgspec.Struct, tag="failed"):
    id: int
    error: dict[str, Any]  # PocketserveError.to_wire()


FromWorker = Ready | LoadFailed | Data | End | Failed


class WorkerStats(msgspec.Struct):
    active: int = 0  # requests the worker is running
    events: int = 0  # data events it has sent


# -- encoding ----------------------------------------------------------------------------------

_HEADER = struct.Struct(">I")
MAX_FRAME = 256 * 1024 * 1024
_encoder = msgspec.msgpack.Encoder()


def encode(value: Any) -> bytes:
    """Any Struct (or plain value) as msgpack."""
    return _encoder.encode(value)


def frame(message: ToWorker | FromWorker) -> bytes:
    """A message as one length-prefixed frame."""
    body = _encoder.encode(message)
    return _HEADER.pack(len(body)) + body


def raw(value: Any) -> msgspec.Raw:
    """A value encoded once, to be embedded in a frame without re-encoding."""
    return msgspec.Raw(_encoder.encode(value))


class FrameReader:
    """Splits a byte stream into messages of the given union type."""

    def __init__(self, kind: Any):
        self._decoder = msgspec.msgpack.Decoder(kind)
        self._buffer = bytearray()

    def feed(self, chunk: bytes) -> Iterator[Any]:
        buffer = self._buffer
        buffer += chunk
        start = 0
        while len(buffer) - start >= 4:
            (size,) = _HEADER.unpack_from(buffer, start)
            if size > MAX_FRAME:
                raise ValueError(f"frame of {size} bytes is over the {MAX_FRAME} limit")
            end = start + 4 + size
            if end > len(buffer):
                break
            # A copy: decoded `Raw` fields keep a reference to the bytes they came from.
            yield self._decoder.decode(bytes(buffer[start + 4:end]))
            start = end
        if start:
            del buffer[:start]
