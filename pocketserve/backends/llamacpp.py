"""Text generation on llama.cpp through xllamacpp (prebuilt wheels, no compiler).

llama.cpp's server core does the continuous batching: each request takes a slot, every decode
step runs all busy slots in one batch, and a slot freed by a finished or cancelled request is
taken by the next one at once. We always stream from it, so every request can be cancelled.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import urllib.request
from pathlib import Path
from typing import Any

from pocketserve.config import ModelSpec
from pocketserve.engines.chat import ChatEngine, OnEvent
from pocketserve.errors import (
    ContextLengthExceeded,
    EngineFailure,
    InvalidRequest,
    PocketserveError,
)
from pocketserve.ops.chat import (
    ChatMessage,
    ChatRequest,
    CompletionRequest,
    ImagePart,
    SamplingParams,
    TextDelta,
    TokenizeRequest,
    TokenLogprob,
    TopLogprob,
)
from pocketserve.ops.common import Usage

log = logging.getLogger("pocketserve.llamacpp")


def prepare_weights(spec: ModelSpec, path: Path, cache_dir: Path) -> Path:
    """The GGUF to load: `path`, or a cached copy re-encoded as the `requantize` option asks.

    `requantize` maps GGUF tensor types to new ones, e.g. {"Q4_1": "Q8_0"} (see gguf_requant).
    """
    mapping = spec.options.get("requantize")
    if not mapping:
        return path
    from pocketserve.backends.gguf_requant import requantize

    try:
        return requantize(path, dict(mapping), cache_dir)
    except OSError as exc:  # a read-only or full cache: serve the weights as they are
        log.warning("%s: cannot write the re-encoded weights to %s (%s); loading %s as it is",
                    spec.id, cache_dir, exc, path.name)
        return path


def build_engine(spec: ModelSpec, path: Path, threads: int) -> ChatEngine:
    return ChatEngine(LlamaCppBackend(path, threads, spec.options, spec.default_sampling))


def llama_params(path: Path, threads: int, options: dict[str, Any]) -> Any:
    """llama.cpp's settings for a model's options; the benchmark's raw side uses them too.

    Options: `n_ctx` (the KV cache in tokens), `n_parallel` (sequences decoded together),
    `kv_unified` (true, the default: one pool, so one sequence may use all of n_ctx, but every
    sequence of a batch attends over every slot's cells; false: each slot owns n_ctx /
    n_parallel cells and attends only to its own, which batches much faster), `cache_type`
    (f16, or q8_0 to halve the cache's memory), `prompt_cache_mb` (host memory for the states of
    earlier prompts, so a conversation that comes back skips its prefill), `n_batch`,
    `verbosity`.
    """
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = str(path)
    params.n_ctx = int(options.get("n_ctx", 4096))
    params.n_parallel = int(options.get("n_parallel", 4))
    params.kv_unified = bool(options.get("kv_unified", True))
    cache_type = str(options.get("cache_type", "f16")).upper()
    if cache_type != "F16":
        kind = getattr(xllamacpp.ggml_type, f"GGML_TYPE_{cache_type}", None)
        if kind is None:
            raise ValueError(f"cache_type {cache_type.lower()!r} is not a llama.cpp type "
                             "(f16, q8_0, q4_0, ...)")
        params.cache_type_k = params.cache_type_v = kind
        # llama.cpp quantizes the V cache only inside flash attention.
        params.flash_attn_type = xllamacpp.llama_flash_attn_type.LLAMA_FLASH_ATTN_TYPE_ENABLED
    # llama.cpp's default may use 8 GiB; bounded, the worker's memory stays predictable.
    params.cache_ram_mib = int(options.get("prompt_cache_mb", 256))
    # A slot keeps its last prompt in place until another request needs the slot; saving
    # every idle slot to host memory whenever a request starts cost ~10 ms of first token.
    params.cache_idle_slots = False
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.n_batch = int(options.get("n_batch", 512))
    params.verbosity = int(options.get("verbosity", -1))
    return params


class LlamaCppBackend:
    def __init__(self, path: Path, threads: int, options: dict[str, Any],
                 default_sampling: dict[str, Any]):
        import xllamacpp

        params = llama_params(path, threads, options)
        self.weights_file = path.name
        self.max_sequences = int(params.n_parallel)
        # What one request may use: its slot's share of the cache, or all of a unified one.
        self.context_length = int(params.n_ctx) // (1 if params.kv_unified
                                                    else self.max_sequences)
        # xllamacpp also opens llama.cpp's HTTP server on loopback; a secret key closes it to
        # everyone but us (we use it only for tokenize/detokenize/apply-template).
        self._key = secrets.token_hex(24)
        params.api_keys = [self._key]
        self._defaults = default_sampling
        self._server = xllamacpp.Server(params)
        self._base_url = str(self._server.listening_address).rstrip("/")
        self.vocab_size = int(self._request("/v1/models")["data"][0]["meta"]["n_vocab"])

    # -- generation -------------------------------------------------------------------------

    def chat(self, req: ChatRequest, on_event: OnEvent, cancelled: threading.Event) -> None:
        if req.tools:
            raise InvalidRequest("This model's backend does not take tools yet.", param="tools")
        body = self._sampling_body(req.sampling)
        body["messages"] = [_message(m) for m in req.messages]
        self._stream(self._server.handle_chat_completions, body, on_event, cancelled, "messages")

    def complete(self, req: CompletionRequest, on_event: OnEvent,
                 cancelled: threading.Event) -> None:
        body = self._sampling_body(req.sampling)
        body["prompt"] = req.prompt
        self._stream(self._server.handle_completions, body, on_event, cancelled, "prompt")

    def _sampling_body(self, s: SamplingParams) -> dict[str, Any]:
        body: dict[str, Any] = dict(self._defaults)
        given = {
            "max_tokens": s.max_tokens, "temperature": s.temperature, "top_p": s.top_p,
            "top_k": s.top_k, "min_p": s.min_p, "presence_penalty": s.presence_penalty,
            "frequency_penalty": s.frequency_penalty, "repeat_penalty": s.repetition_penalty,
            "seed": s.seed,
        }
        body.update({k: v for k, v in given.items() if v is not None})
        body.update(stream=True, stream_options={"include_usage": True}, n=s.n)
        if s.stop:
            body["stop"] = s.stop
        if s.logprobs:
            body["logprobs"] = True
            body["top_logprobs"] = s.top_logprobs
            body["n_probs"] = s.top_logprobs
        if s.json_schema is not None:
            body["response_format"] = {"type": "json_schema",
                                       "json_schema": {"schema": s.json_schema}}
        elif s.json_object:
            body["response_format"] = {"type": "json_object"}
        return body

    def _stream(self, handle: Any, body: dict[str, Any], on_event: OnEvent,
                cancelled: threading.Event, prompt_param: str) -> None:
        usage = _UsageSum()
        error: dict[str, Any] | None = None

        def callback(chunk: dict[str, Any]) -> bool:
            nonlocal error
            if "error" in chunk:
                error = chunk["error"]
                return True
            for choice in chunk.get("choices", ()):
                delta = _delta(choice)
                if delta is not None:
                    on_event(delta)
            if chunk.get("usage"):
                usage.add(chunk["usage"])
            return cancelled.is_set()

        try:
            result = handle(body, callback)
        except ValueError as exc:
            raise _request_error(str(exc), prompt_param) from exc
        except RuntimeError as exc:
            raise EngineFailure(f"llama.cpp failed: {exc}") from exc
        if isinstance(result, dict) and "error" in result:
            error = result["error"]
        if error is not None:
            raise _llama_error(error, prompt_param)
        if not cancelled.is_set():
            on_event(usage.total())

    # -- tokenizer --------------------------------------------------------------------------

    def tokenize(self, req: TokenizeRequest) -> list[int]:
        text = req.prompt or ""
        add_special = req.add_special_tokens
        if req.messages is not None:
            messages = [_message(m) for m in req.messages]
            text = self._request("/apply-template", {
                "messages": messages, "add_generation_prompt": req.add_generation_prompt,
            })["prompt"]
            add_special = False  # the template already carries the special tokens
        reply = self._request("/tokenize", {"content": text, "add_special": add_special,
                                         "parse_special": True})
        return [int(t) for t in reply["tokens"]]

    def detokenize(self, tokens: list[int]) -> str:
        return str(self._request("/detokenize", {"tokens": tokens})["content"])

    def _request(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """llama.cpp's own HTTP server (keyed, loopback): POST `body`, or GET without one."""
        request = urllib.request.Request(
            self._base_url + path, data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {self._key}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                reply: dict[str, Any] = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            detail = json.loads(exc.read() or b"{}").get("error", {})
            raise _llama_error(detail or {"message": str(exc)}, "tokens") from exc
        return reply

    def close(self) -> None:
        del self._server


def _message(m: ChatMessage) -> dict[str, Any]:
    if not isinstance(m.content, str) and any(isinstance(p, ImagePart) for p in m.content):
        raise InvalidRequest("This model cannot see images.", param="messages")
    return {"role": m.role, "content": m.text()}


class _UsageSum:
    """llama.cpp reports usage once per choice; OpenAI counts the prompt once, output summed."""

    def __init__(self) -> None:
        self.prompt = 0
        self.completion = 0
        self.cached = 0

    def add(self, usage: dict[str, Any]) -> None:
        self.prompt = max(self.prompt, int(usage.get("prompt_tokens", 0)))
        self.completion += int(usage.get("completion_tokens", 0))
        details = usage.get("prompt_tokens_details") or {}
        self.cached = max(self.cached, int(details.get("cached_tokens", 0)))

    def total(self) -> Usage:
        return Usage(self.prompt, self.completion, self.cached)


def _delta(choice: dict[str, Any]) -> TextDelta | None:
    if "delta" in choice:
        text = (choice["delta"] or {}).get("content") or ""
    else:
        text = choice.get("text") or ""
    finish = choice.get("finish_reason")
    raw = (choice.get("logprobs") or {}).get("content")
    if not text and finish is None and not raw:
        return None
    logprobs = None if raw is None else [
        TokenLogprob(
            token=lp["token"], logprob=float(lp["logprob"]), bytes=lp.get("bytes"),
            top=[TopLogprob(t["token"], float(t["logprob"]), t.get("bytes"))
                 for t in lp.get("top_logprobs", ())],
        )
        for lp in raw
    ]
    return TextDelta(index=int(choice.get("index", 0)), text=text, logprobs=logprobs,
                     finish_reason="length" if finish == "length" else finish and "stop")


def _llama_error(error: dict[str, Any], prompt_param: str) -> PocketserveError:
    if error.get("type") == "exceed_context_size_error":
        return ContextLengthExceeded(
            f"This model's maximum context length is {error.get('n_ctx')} tokens, but the "
            f"request has {error.get('n_prompt_tokens')} prompt tokens.",
            param=prompt_param,
        )
    message = str(error.get("message", "the model rejected the request"))
    if int(error.get("code", 400)) >= 500:
        return EngineFailure(message)
    return _request_error(message, prompt_param)


def _request_error(message: str, prompt_param: str) -> InvalidRequest:
    lowered = message.lower()
    if "json schema" in lowered or "grammar" in lowered:
        return InvalidRequest(f"Invalid response_format: {message}", param="response_format")
    if "field 'n'" in lowered:
        return InvalidRequest(message, param="n")
    if "invalid tokens" in lowered:
        return InvalidRequest(message, param=prompt_param)
    return InvalidRequest(message)
