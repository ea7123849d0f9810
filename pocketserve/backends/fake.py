"""A model that is not there: the serving layer's test double, and a template for backends.

It serves the chat operations by echoing the last user message back word by word, and the
live-transcription operation (`LISTEN`) by counting the samples it receives, all without
weights (`source: "none:"`). Its options make the serving layer's hard cases happen on demand:

- `load_delay_s`: seconds the load takes; `fail_load: true`: the load raises.
- `token_delay_s`: seconds before each token (cancel wakes it at once).
- `crash_marker` (default "CRASH"): a prompt containing it makes the worker process exit
  hard (`os._exit`) right after the first token, as a crash in native code would.
- `hold_mb`: memory the loaded "model" really occupies, so the memory budget has something to
  measure; `context_length`, `max_sequences`: what `info()` reports.
- `vision: true`: it "sees" (`catalog.sees`): for each image of the conversation it appends to
  its echo one line of what arrived (format, declared size, byte count, the first 16 hex digits
  of the SHA-256), so tests can prove the bytes reached the engine intact. Without it, an
  image is refused, as a backend that cannot see must.

Generation is deterministic (sampling parameters other than `max_tokens`, `n`, `stop` and
`logprobs` change nothing); what it cannot honour (tools, JSON mode) it refuses by name.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pocketserve.config import ModelSpec
from pocketserve.engines.base import Call, Emit, Served, serve
from pocketserve.engines.chat import ChatEngine, OnEvent
from pocketserve.errors import InvalidRequest
from pocketserve.images.decode import inspect
from pocketserve.ops.chat import (
    ChatRequest,
    CompletionRequest,
    FinishReason,
    ImagePart,
    SamplingParams,
    TextDelta,
    TokenizeRequest,
    TokenLogprob,
    TopLogprob,
)
from pocketserve.ops.common import Usage
from pocketserve.ops.transcription import LISTEN, ListenRequest, Partial, Segment

_MB = 1024 * 1024
_BOS = 1  # the one special token, "<s>", added by `add_special_tokens`
_PIECE = re.compile(r"\s*\S+")  # a token: a word with the whitespace before it


@dataclass(frozen=True)
class FakeOptions:
    load_delay_s: float = 0.0
    token_delay_s: float = 0.0
    fail_load: bool = False
    crash_marker: str = "CRASH"
    hold_mb: float = 0.0
    context_length: int = 4096
    max_sequences: int = 8
    threads: int = 1  # read by the registry for every backend; nothing to thread here
    vision: bool = False

    @classmethod
    def parse(cls, options: dict[str, Any]) -> FakeOptions:
        """The spec's options, each converted to its field's type; an unknown one is an error
        (a misspelt `token_delay_s` must not pass silently)."""
        fields = cls.__dataclass_fields__
        unknown = sorted(set(options) - set(fields))
        if unknown:
            raise ValueError(f"unknown option(s) {', '.join(unknown)} for the fake backend; "
                             f"it takes {', '.join(fields)}")
        values = {name: _convert(name, fields[name].type, v) for name, v in options.items()}
        return cls(**values)


def _convert(name: str, kind: Any, value: Any) -> Any:
    if kind == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"option {name} must be true or false, not {value!r}")
        return value
    converter = {"float": float, "int": int, "str": str}[kind]
    try:
        return converter(value)
    except (TypeError, ValueError):
        raise ValueError(f"option {name} must be a {kind}, not {value!r}") from None


def build_engine(spec: ModelSpec, path: Path, threads: int) -> FakeEngine:
    options = FakeOptions.parse(spec.options)
    time.sleep(options.load_delay_s)
    if options.fail_load:
        raise RuntimeError("fail_load is set: this fake model refuses to load")
    return FakeEngine(FakeTextBackend(options))


class FakeTextBackend:
    """A `TextBackend` whose reply is the last user message, one word per token."""

    weights_file = "none"
    vocab_size = 1 << 31  # ids are 31-bit hashes of the pieces

    def __init__(self, options: FakeOptions):
        self.options = options
        self.context_length = options.context_length
        self.max_sequences = options.max_sequences
        self._held = b"\x01" * int(options.hold_mb * _MB)  # written, so really resident
        self._vocabulary: dict[int, str] = {_BOS: "<s>"}
        self._lock = threading.Lock()

    def chat(self, req: ChatRequest, on_event: OnEvent, cancelled: threading.Event) -> None:
        if req.tools:
            raise InvalidRequest("The fake model does not call tools.", param="tools")
        images = [p for m in req.messages if not isinstance(m.content, str)
                  for p in m.content if isinstance(p, ImagePart)]
        if images and not self.options.vision:
            raise InvalidRequest("The fake model cannot see images.", param="messages")
        users = [m.text() for m in req.messages if m.role == "user"]
        texts = [m.text() for m in req.messages]
        said = " ".join([users[-1] if users else "", *map(_seen, enumerate(images, 1))])
        self._reply(said.strip(), texts, req.sampling, on_event, cancelled)

    def complete(self, req: CompletionRequest, on_event: OnEvent,
                 cancelled: threading.Event) -> None:
        prompt = req.prompt if isinstance(req.prompt, str) else self.detokenize(req.prompt)
        self._reply(prompt, [prompt], req.sampling, on_event, cancelled)

    def tokenize(self, req: TokenizeRequest) -> list[int]:
        if req.messages is not None:
            text = "\n".join(f"{m.role}: {m.text()}" for m in req.messages)
            return self._ids(text + ("\nassistant:" if req.add_generation_prompt else ""))
        return ([_BOS] if req.add_special_tokens else []) + self._ids(req.prompt or "")

    def detokenize(self, tokens: list[int]) -> str:
        with self._lock:
            unknown = [t for t in tokens if t not in self._vocabulary]
            if unknown:
                raise InvalidRequest(f"Unknown token id(s) {unknown[:5]}: the fake model knows "
                                     "only tokens it has produced.", param="tokens")
            return "".join(self._vocabulary[t] for t in tokens)

    def close(self) -> None:
        self._held = b""

    def _ids(self, text: str) -> list[int]:
        """Token ids from the pieces' CRC: the same text gives the same ids in any worker."""
        pieces = _PIECE.findall(text)
        ids = [zlib.crc32(p.encode()) & 0x7FFFFFFF | 0x100 for p in pieces]
        with self._lock:
            self._vocabulary.update(zip(ids, pieces, strict=True))
        return ids

    def _reply(self, source: str, prompt_texts: list[str], s: SamplingParams,
               on_event: OnEvent, cancelled: threading.Event) -> None:
        if s.json_schema is not None or s.json_object:
            raise InvalidRequest("The fake model has no JSON mode.", param="response_format")
        words = source.split()
        pieces, finish = _plan([w if i == 0 else " " + w for i, w in enumerate(words)],
                               s.max_tokens, s.stop)
        self._ids("".join(pieces))  # so detokenize knows what was said
        crash = self.options.crash_marker in " ".join(prompt_texts)
        delay = self.options.token_delay_s
        for step, piece in enumerate(pieces):
            if (delay > 0 and cancelled.wait(delay)) or cancelled.is_set():
                return
            last = step == len(pieces) - 1
            for index in range(s.n):
                on_event(TextDelta(index, piece, _logprobs(piece, s),
                                   finish if last else None))
            if crash:
                os._exit(17)  # a hard crash, mid-stream: no cleanup, no goodbye
        if not pieces:
            if crash:
                os._exit(17)
            for index in range(s.n):
                on_event(TextDelta(index, "", finish_reason=finish))
        prompt_tokens = sum(len(_PIECE.findall(t)) for t in prompt_texts)
        on_event(Usage(prompt_tokens, len(pieces) * s.n))


def _seen(numbered: tuple[int, ImagePart]) -> str:
    """What the fake "sees" of one image: exactly the bytes it was given."""
    number, image = numbered
    info = inspect(image.data)
    digest = hashlib.sha256(image.data).hexdigest()[:16]
    return (f"image{number}: {image.media_type} {info.width}x{info.height} "
            f"{len(image.data)}B sha256:{digest} detail:{image.detail}")


def _plan(pieces: list[str], max_tokens: int | None,
          stop: list[str]) -> tuple[list[str], FinishReason]:
    """The tokens to send and why they end: cut at `max_tokens`, then at the first stop
    string (which, as in OpenAI's API, is not sent)."""
    finish: FinishReason = "stop"
    if max_tokens is not None and len(pieces) > max_tokens:
        pieces, finish = pieces[:max_tokens], "length"
    text = "".join(pieces)
    found = [i for i in (text.find(s) for s in stop if s) if i >= 0]
    if not found:
        return pieces, finish
    cut, kept, used = min(found), [], 0
    for piece in pieces:
        if used + len(piece) > cut:
            if cut > used:
                kept.append(piece[:cut - used])
            break
        kept.append(piece)
        used += len(piece)
    return kept, "stop"


def _logprobs(piece: str, s: SamplingParams) -> list[TokenLogprob] | None:
    """Certainty, as a deterministic model has it: log(1) = 0 for each token."""
    if not s.logprobs:
        return None
    data = list(piece.encode())
    top = [TopLogprob(piece, 0.0, data)][:s.top_logprobs]
    return [TokenLogprob(piece, 0.0, data, top)]


class FakeEngine(ChatEngine):
    """The chat operations of `ChatEngine` over the fake backend, plus `LISTEN`."""

    def operations(self) -> Sequence[Served[Any, Any]]:
        return [*super().operations(), serve(LISTEN, self._listen)]

    def _listen(self, req: ListenRequest, emit: Emit, call: Call) -> None:
        """A `Partial` with the running sample count per frame; at the end of the input one
        `Segment` with the total. A cancel ends it without the segment."""
        if req.sample_rate <= 0:
            raise InvalidRequest("sample_rate must be positive.", param="sample_rate")
        assert call.inputs is not None  # the worker gives every streamed-input op its inputs
        samples = 0
        for frame in call.inputs:
            if len(frame.pcm) % 2:
                raise InvalidRequest("An audio frame must hold whole 16-bit samples.",
                                     param="pcm")
            samples += len(frame.pcm) // 2
            emit(Partial(text=f"{samples} samples", start=0.0))
        if call.cancelled.is_set():
            return
        emit(Segment(id=0, seek=0, start=0.0, end=samples / req.sample_rate,
                     text=f"{samples} samples", tokens=[], temperature=0.0, avg_logprob=0.0,
                     compression_ratio=1.0, no_speech_prob=0.0))
