"""Text generation: the engine that drives a text backend behind the chat operations.

The backend (llama.cpp today) calls `on_event` with `TextDelta`s (and, where it can, reasoning
and tool-call deltas) and one `Usage`; this module owns what every backend shares: `echo`, and
the operation table the worker calls.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from pocketserve.engines.base import Call, Emit, Served, Warmup, serve
from pocketserve.errors import InvalidRequest
from pocketserve.ops.chat import (
    CHAT,
    COMPLETE,
    DETOKENIZE,
    TOKENIZE,
    ChatEvent,
    ChatRequest,
    CompletionRequest,
    Detokenized,
    DetokenizeRequest,
    SamplingParams,
    TextDelta,
    TokenizeRequest,
    Tokens,
)

OnEvent = Callable[[ChatEvent], None]


class ChatBackend(Protocol):
    """What a library must do to serve text generation.

    `chat` and `complete` call `on_event` for each delta as it is decoded, then once with the
    `Usage`, and return; they stop early, without error, once `cancelled` is set.
    """

    context_length: int
    max_sequences: int
    weights_file: str  # the file it loaded, which may be a re-encoded copy of the source
    vocab_size: int  # token ids run from 0 to vocab_size - 1

    def chat(self, req: ChatRequest, on_event: OnEvent, cancelled: threading.Event) -> None: ...

    def complete(
        self, req: CompletionRequest, on_event: OnEvent, cancelled: threading.Event
    ) -> None: ...

    def tokenize(self, req: TokenizeRequest) -> list[int]: ...

    def detokenize(self, tokens: list[int]) -> str: ...

    def close(self) -> None: ...


class ChatEngine:
    """Runs a `ChatBackend` behind the worker's operation table."""

    def __init__(self, backend: ChatBackend):
        self.backend = backend

    def info(self) -> dict[str, Any]:
        return {"context_length": self.backend.context_length,
                "max_sequences": self.backend.max_sequences,
                "weights_file": self.backend.weights_file}

    def operations(self) -> Sequence[Served[Any, Any]]:
        return [serve(CHAT, self._chat), serve(COMPLETE, self._complete),
                serve(TOKENIZE, self._tokenize), serve(DETOKENIZE, self._detokenize)]

    def warmups(self) -> Sequence[Warmup[Any]]:
        return [Warmup(COMPLETE, CompletionRequest(
            prompt="Hello", sampling=SamplingParams(max_tokens=1)))]

    def close(self) -> None:
        self.backend.close()

    def _chat(self, req: ChatRequest, emit: Emit, call: Call) -> None:
        self.backend.chat(req, emit, call.cancelled)

    def _complete(self, req: CompletionRequest, emit: Emit, call: Call) -> None:
        if not isinstance(req.prompt, str):
            self._check_ids(req.prompt, "prompt")
        on_event: OnEvent = emit
        if req.echo:
            prompt = req.prompt if isinstance(req.prompt, str) else self.backend.detokenize(
                req.prompt)
            on_event = _echoing(on_event, prompt)
        self.backend.complete(req, on_event, call.cancelled)

    def _tokenize(self, req: TokenizeRequest, emit: Emit, call: Call) -> None:
        emit(Tokens(self.backend.tokenize(req), self.backend.context_length))

    def _detokenize(self, req: DetokenizeRequest, emit: Emit, call: Call) -> None:
        self._check_ids(req.tokens, "tokens")
        emit(Detokenized(self.backend.detokenize(list(req.tokens))))

    def _check_ids(self, ids: list[int], param: str) -> None:
        vocab = self.backend.vocab_size
        bad = next((t for t in ids if not 0 <= t < vocab), None)
        if bad is not None:
            raise InvalidRequest(f"Token id {bad} in '{param}' is outside this model's "
                                 f"vocabulary (0 to {vocab - 1}).", param=param)


def _echoing(on_event: OnEvent, prompt: str) -> OnEvent:
    """Put the prompt text in front of each choice's first delta, as OpenAI's `echo` does."""
    echoed: set[int] = set()

    def wrapped(event: ChatEvent) -> None:
        if isinstance(event, TextDelta) and event.index not in echoed:
            echoed.add(event.index)
            on_event(TextDelta(index=event.index, text=prompt))
        on_event(event)

    return wrapped
