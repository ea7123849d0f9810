"""Text generation: requests, streamed events and the engine that drives a backend.

The backend (llama.cpp today) yields `TextDelta`s and one `Usage`; this module owns what every
backend shares: payload decoding, `echo`, and the operation table the worker calls.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

from pocketserve.engines.base import Emit, Handler


@dataclass
class SamplingParams:
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    repetition_penalty: float | None = None
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    n: int = 1
    logprobs: bool = False
    top_logprobs: int = 0
    json_schema: dict[str, Any] | None = None
    json_object: bool = False


@dataclass
class ChatMessage:
    role: str
    content: str


@dataclass
class ChatRequest:
    messages: list[ChatMessage]
    sampling: SamplingParams

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> ChatRequest:
        return cls(
            messages=[ChatMessage(**m) for m in data["messages"]],
            sampling=SamplingParams(**data["sampling"]),
        )


@dataclass
class CompletionRequest:
    prompt: str | list[int]
    sampling: SamplingParams
    echo: bool = False

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> CompletionRequest:
        return cls(prompt=data["prompt"], sampling=SamplingParams(**data["sampling"]),
                   echo=bool(data.get("echo")))


@dataclass
class TopLogprob:
    token: str
    logprob: float
    bytes: list[int] | None


@dataclass
class TokenLogprob:
    token: str
    logprob: float
    bytes: list[int] | None
    top: list[TopLogprob]


FinishReason = Literal["stop", "length"]


@dataclass
class TextDelta:
    """New text for choice `index`; `finish_reason` is set on the choice's last delta."""

    index: int
    text: str
    logprobs: list[TokenLogprob] | None = None
    finish_reason: FinishReason | None = None
    type: str = "delta"


@dataclass
class Usage:
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    type: str = "usage"


Event = TextDelta | Usage


def event_to_wire(event: Event) -> dict[str, Any]:
    """The event as the dict that crosses to the server; by hand, as it runs once per token."""
    if isinstance(event, Usage):
        return {"type": "usage", "prompt_tokens": event.prompt_tokens,
                "completion_tokens": event.completion_tokens,
                "cached_tokens": event.cached_tokens}
    return {"type": "delta", "index": event.index, "text": event.text,
            "finish_reason": event.finish_reason,
            "logprobs": None if event.logprobs is None else [asdict(lp) for lp in event.logprobs]}


def event_from_wire(data: dict[str, Any]) -> Event:
    if data.get("type") == "usage":
        return Usage(**data)
    logprobs = data.get("logprobs")
    return TextDelta(
        index=data["index"],
        text=data["text"],
        finish_reason=data.get("finish_reason"),
        logprobs=None if logprobs is None else [
            TokenLogprob(
                token=lp["token"], logprob=lp["logprob"], bytes=lp["bytes"],
                top=[TopLogprob(**t) for t in lp["top"]],
            )
            for lp in logprobs
        ],
    )


@dataclass
class TokenizeRequest:
    prompt: str | None = None
    messages: list[ChatMessage] | None = None
    add_special_tokens: bool = True
    add_generation_prompt: bool = True

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> TokenizeRequest:
        messages = data.get("messages")
        return cls(
            prompt=data.get("prompt"),
            messages=None if messages is None else [ChatMessage(**m) for m in messages],
            add_special_tokens=bool(data.get("add_special_tokens", True)),
            add_generation_prompt=bool(data.get("add_generation_prompt", True)),
        )


OnEvent = Callable[[Event], None]


class TextBackend(Protocol):
    """What a library must do to serve text generation.

    `chat` and `complete` call `on_event` for each delta as it is decoded, then once with the
    `Usage`, and return; they stop early, without error, once `cancelled` is set.
    """

    context_length: int
    max_sequences: int
    weights_file: str  # the file it loaded, which may be a re-encoded copy of the source

    def chat(self, req: ChatRequest, on_event: OnEvent, cancelled: threading.Event) -> None: ...

    def complete(
        self, req: CompletionRequest, on_event: OnEvent, cancelled: threading.Event
    ) -> None: ...

    def tokenize(self, req: TokenizeRequest) -> list[int]: ...

    def detokenize(self, tokens: list[int]) -> str: ...

    def close(self) -> None: ...


class TextEngine:
    """Runs a `TextBackend` behind the worker's operation table."""

    def __init__(self, backend: TextBackend):
        self.backend = backend

    def info(self) -> dict[str, Any]:
        return {"context_length": self.backend.context_length,
                "max_sequences": self.backend.max_sequences,
                "weights_file": self.backend.weights_file}

    def handlers(self) -> Mapping[str, Handler]:
        return {"chat": self._chat, "complete": self._complete,
                "tokenize": self._tokenize, "detokenize": self._detokenize}

    def close(self) -> None:
        self.backend.close()

    def _chat(self, payload: dict[str, Any], emit: Emit, cancelled: threading.Event) -> None:
        self.backend.chat(ChatRequest.from_wire(payload), _sender(emit), cancelled)

    def _complete(self, payload: dict[str, Any], emit: Emit, cancelled: threading.Event) -> None:
        req = CompletionRequest.from_wire(payload)
        on_event = _sender(emit)
        if req.echo:
            prompt = req.prompt if isinstance(req.prompt, str) else self.backend.detokenize(
                req.prompt)
            on_event = _echoing(on_event, prompt)
        self.backend.complete(req, on_event, cancelled)

    def _tokenize(self, payload: dict[str, Any], emit: Emit, cancelled: threading.Event) -> None:
        tokens = self.backend.tokenize(TokenizeRequest.from_wire(payload))
        emit({"tokens": tokens, "max_model_len": self.backend.context_length})

    def _detokenize(self, payload: dict[str, Any], emit: Emit, cancelled: threading.Event) -> None:
        emit({"prompt": self.backend.detokenize(list(payload["tokens"]))})


def _sender(emit: Emit) -> OnEvent:
    return lambda event: emit(event_to_wire(event))


def _echoing(on_event: OnEvent, prompt: str) -> OnEvent:
    """Put the prompt text in front of each choice's first delta, as OpenAI's `echo` does."""
    echoed: set[int] = set()

    def wrapped(event: Event) -> None:
        if isinstance(event, TextDelta) and event.index not in echoed:
            echoed.add(event.index)
            on_event(TextDelta(index=event.index, text=prompt))
        on_event(event)

    return wrapped
