"""A model that lives on another OpenAI-compatible server (a bigger pocketserve, llama-server,
vLLM, a hosted API), served behind this one's admission, metrics, keys and errors.

It runs in a worker process like any model, so nothing about serving changes: the worker's
operations call the remote API with httpx instead of a library. The spec says where:

    - id: big-chat
      capability: chat            # or embeddings, transcription, speech
      backend: remote
      source: "none:"
      options:
        base_url: http://10.0.0.5:8000/v1
        remote_model: qwen2.5-7b-instruct    # default: the id
        api_key_env: BIG_CHAT_KEY            # or api_key_file: /run/secrets/big-chat
        timeout_s: 120                       # per attempt; streams: between chunks
        retries: 2                           # after the first try
        backoff_s: 0.5                       # doubled after each failed try
        vision: true                         # the remote model sees: images pass through

Connection errors, timeouts and 5xx answers are tried again with backoff; so are streams, but
only until their first chunk has arrived (what was sent cannot be taken back). A remote 400
reaches the client with the remote's message and parameter. Cancelling closes the remote
request. The load checks that `GET /models` answers, so a wrong URL or key fails the load with
a message saying which.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from pocketserve.backends import remote_wire as wire
from pocketserve.config import ModelSpec
from pocketserve.engines.base import Call, Emit, Served, Warmup, serve
from pocketserve.errors import EngineFailure, InvalidRequest, PocketserveError
from pocketserve.ops.chat import CHAT, COMPLETE, ChatRequest, CompletionRequest
from pocketserve.ops.common import Usage
from pocketserve.ops.embeddings import EMBED, Embeddings, EmbedRequest
from pocketserve.ops.speech import SPEECH, Audio, SpeechDone, SpeechRequest, SpeechUsage
from pocketserve.ops.transcription import TRANSCRIBE, TranscriptionRequest

_OPTIONS = {"base_url", "remote_model", "api_key_env", "api_key_file", "timeout_s", "retries",
            "backoff_s", "threads", "vision"}


@dataclass(frozen=True)
class RemoteOptions:
    base_url: str
    remote_model: str
    api_key: str | None
    timeout_s: float = 120.0
    retries: int = 2
    backoff_s: float = 0.5

    @classmethod
    def parse(cls, spec: ModelSpec) -> RemoteOptions:
        o = spec.options
        unknown = sorted(set(o) - _OPTIONS)
        if unknown:
            raise ValueError(f"unknown option(s) {', '.join(unknown)} for the remote backend; "
                             f"it takes {', '.join(sorted(_OPTIONS - {'threads'}))}")
        if not isinstance(o.get("vision", False), bool):
            raise ValueError("options.vision of a remote model must be true or false")
        base = str(o.get("base_url") or "")
        if not base.startswith(("http://", "https://")):
            raise ValueError(f"the remote model {spec.id!r} needs options.base_url, an http(s) "
                             "URL of an OpenAI-compatible API (e.g. http://host:8000/v1)")
        key = None
        if o.get("api_key_env"):
            key = os.environ.get(str(o["api_key_env"]))
            if not key:
                raise ValueError(f"the environment variable {o['api_key_env']} (api_key_env of "
                                 f"{spec.id!r}) is not set")
        elif o.get("api_key_file"):
            key = Path(str(o["api_key_file"])).read_text().strip()
        return cls(base_url=base.rstrip("/"), remote_model=str(o.get("remote_model") or spec.id),
                   api_key=key, timeout_s=float(o.get("timeout_s", 120.0)),
                   retries=int(o.get("retries", 2)), backoff_s=float(o.get("backoff_s", 0.5)))


def build_engine(spec: ModelSpec, path: Path, threads: int) -> RemoteEngine:
    engine = RemoteEngine(spec.capability, RemoteClient(RemoteOptions.parse(spec)))
    engine.client.check()
    return engine


class RemoteClient:
    """httpx with the remote's base URL and key, and the retry rule."""

    def __init__(self, options: RemoteOptions,
                 transport: httpx.BaseTransport | None = None):
        self.options = options
        headers = {"Authorization": f"Bearer {options.api_key}"} if options.api_key else {}
        self.http = httpx.Client(base_url=options.base_url, headers=headers,
                                 timeout=options.timeout_s, transport=transport)

    def check(self) -> None:
        """Fail the load, saying why, when the remote cannot be used."""
        try:
            self._attempts(lambda: self._checked(self.http.get("/models")),
                           threading.Event())
        except PocketserveError as exc:
            raise RuntimeError(f"the remote API at {self.options.base_url} cannot be used: "
                               f"{exc.message}") from None

    def post(self, path: str, cancelled: threading.Event, **kwargs: Any) -> httpx.Response:
        """One answer, tried again on connection errors and 5xx."""
        return self._attempts(lambda: self._checked(self.http.post(path, **kwargs)), cancelled)

    def stream(self, path: str, cancelled: threading.Event,
               **kwargs: Any) -> Generator[Any, None, None]:
        """A streamed answer, yielded as `lines` (SSE) or raw bytes chunks; tried again only
        until its first chunk. Closing the iterator (or cancelling) closes the request."""
        lines = kwargs.pop("lines", True)
        tries = 0
        while True:
            started = False
            try:
                with self.http.stream("POST", path, **kwargs) as answer:
                    self._checked(answer, read=True)
                    pieces = answer.iter_lines() if lines else answer.iter_bytes()
                    for piece in pieces:
                        started = True
                        if cancelled.is_set():
                            return
                        yield piece
                return
            except (httpx.TransportError, _Retryable) as exc:
                if started or tries >= self.options.retries or cancelled.is_set():
                    raise self._failure(exc) from None
                tries += 1
                cancelled.wait(self.options.backoff_s * 2 ** (tries - 1))

    def close(self) -> None:
        self.http.close()

    def _attempts(self, call: Callable[[], httpx.Response],
                  cancelled: threading.Event) -> httpx.Response:
        tries = 0
        while True:
            try:
                return call()
            except (httpx.TransportError, _Retryable) as exc:
                if tries >= self.options.retries or cancelled.is_set():
                    raise self._failure(exc) from None
                tries += 1
                cancelled.wait(self.options.backoff_s * 2 ** (tries - 1))

    def _checked(self, answer: httpx.Response, read: bool = False) -> httpx.Response:
        if answer.status_code < 400:
            return answer
        if read:
            answer.read()
        if answer.status_code >= 500:
            raise _Retryable(answer.status_code, _json(answer))
        raise wire.error_from(answer.status_code, _json(answer))

    def _failure(self, exc: Exception) -> PocketserveError:
        tries = self.options.retries + 1
        if isinstance(exc, _Retryable):
            return wire.error_from(exc.status, exc.body)
        return EngineFailure(f"The remote server at {self.options.base_url} did not answer "
                             f"({type(exc).__name__}: {exc}) after up to {tries} tries.")


class _Retryable(Exception):
    def __init__(self, status: int, body: Any):
        super().__init__(status)
        self.status = status
        self.body = body


def _json(answer: httpx.Response) -> Any:
    try:
        return answer.json()
    except ValueError:
        return {"error": {"message": answer.text[:500]}}


class RemoteEngine:
    """The operations of one capability, each one remote call."""

    def __init__(self, capability: str, client: RemoteClient):
        self.capability = capability
        self.client = client
        self.model = client.options.remote_model

    def info(self) -> dict[str, Any]:
        return {"remote": self.client.options.base_url, "remote_model": self.model}

    def operations(self) -> Sequence[Served[Any, Any]]:
        table: dict[str, list[Served[Any, Any]]] = {
            "chat": [serve(CHAT, self._chat), serve(COMPLETE, self._complete)],
            "embeddings": [serve(EMBED, self._embed)],
            "transcription": [serve(TRANSCRIBE, self._transcribe)],
            "speech": [serve(SPEECH, self._speech)],
        }
        if self.capability not in table:
            raise ValueError(f"the remote backend serves chat, embeddings, transcription and "
                             f"speech, not {self.capability}")
        return table[self.capability]

    def warmups(self) -> Sequence[Warmup[Any]]:
        return []

    def close(self) -> None:
        self.client.close()

    def _chat(self, req: ChatRequest, emit: Emit, call: Call) -> None:
        self._stream_chat("/chat/completions", wire.chat_body(req, self.model), emit, call)

    def _complete(self, req: CompletionRequest, emit: Emit, call: Call) -> None:
        self._stream_chat("/completions", wire.completion_body(req, self.model), emit, call,
                          completion=True)

    def _stream_chat(self, path: str, body: dict[str, Any], emit: Emit, call: Call,
                     completion: bool = False) -> None:
        lines = self.client.stream(path, call.cancelled, json=body)
        try:
            for chunk in wire.sse_data(lines):
                for event in wire.chat_events(chunk, completion):
                    emit(event)
        finally:
            lines.close()

    def _embed(self, req: EmbedRequest, emit: Emit, call: Call) -> None:
        body = wire.embeddings_body(req.texts, req.token_ids, req.dimensions, self.model)
        answer = self.client.post("/embeddings", call.cancelled, json=body).json()
        vectors = [wire.embedding_bytes(d) for d in sorted(answer["data"],
                                                           key=lambda d: d["index"])]
        tokens = int((answer.get("usage") or {}).get("prompt_tokens") or 0)
        emit(Embeddings(vectors, tokens))
        emit(Usage(tokens))

    def _transcribe(self, req: TranscriptionRequest, emit: Emit, call: Call) -> None:
        path = "/audio/translations" if req.task == "translate" else "/audio/transcriptions"
        form = wire.transcription_form(req, self.model)
        if req.task == "translate":
            form.pop("timestamp_granularities[]")
        answer = self.client.post(path, call.cancelled, data=form,
                                  files={"file": ("audio", req.audio)}).json()
        for event in wire.transcript_events(answer):
            emit(event)

    def _speech(self, req: SpeechRequest, emit: Emit, call: Call) -> None:
        body: dict[str, Any] = {"model": self.model, "input": req.input, "voice": req.voice,
                                "response_format": req.response_format, "speed": req.speed}
        if req.instructions is not None:
            body["instructions"] = req.instructions
        if not req.input.strip():
            raise InvalidRequest("'input' has nothing to say.", param="input")
        size = 0
        chunks = self.client.stream("/audio/speech", call.cancelled, json=body, lines=False)
        try:
            for data in chunks:
                size += len(data)
                emit(Audio(data))
        finally:
            chunks.close()
        if call.cancelled.is_set():
            return
        # The remote names no duration; raw PCM (24 kHz, 16 bit) tells it, other formats not.
        seconds = size / 48_000 if req.response_format == "pcm" else 0.0
        frames = round(seconds * 50)
        emit(SpeechDone(seconds, SpeechUsage(len(req.input), frames, len(req.input) + frames)))
