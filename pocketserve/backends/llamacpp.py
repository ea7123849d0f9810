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

from pocketserve.backends import tool_calls
from pocketserve.backends.chat_stream import THINK_OPEN
from pocketserve.backends.gguf_parts import display_name, join_parts
from pocketserve.backends.images import data_url, images_of, with_detail
from pocketserve.backends.llamacpp_chunks import (
    ChoiceParsers,
    StopWatch,
    UsageSum,
    own_stops,
    plain_events,
)
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
    TokenizeRequest,
    Tool,
    ToolChoice,
)

log = logging.getLogger("pocketserve.llamacpp")


def prepare_weights(spec: ModelSpec, path: Path, cache_dir: Path) -> Path:
    """The GGUF to load: `path`, the `gguf_parts` joined, or a cached copy re-encoded as the
    `requantize` option asks.

    `gguf_parts` lists sources (`package:...`) whose bytes concatenate into one GGUF, checked
    against `gguf_bytes` (see gguf_parts). `requantize` maps GGUF tensor types to new ones, e.g.
    {"Q4_1": "Q8_0"} (see gguf_requant).
    """
    parts = spec.options.get("gguf_parts")
    if parts:
        from pocketserve.catalog import resolve_source

        expected = spec.options.get("gguf_bytes")
        path = join_parts(f"{spec.id}.gguf", [resolve_source(str(p)) for p in parts],
                          cache_dir, None if expected is None else int(expected))
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
    `verbosity`, `chat_template` (a Jinja template instead of the GGUF's own), `mmproj` (the
    multimodal projector GGUF, a path or `package:` source: with it the model sees images).
    """
    import xllamacpp

    from pocketserve.catalog import resolve_source

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
    if options.get("chat_template"):
        params.chat_template = str(options["chat_template"])
    if options.get("mmproj"):
        params.mmproj.path = str(resolve_source(str(options["mmproj"])))
    return params


class LlamaCppBackend:
    def __init__(self, path: Path, threads: int, options: dict[str, Any],
                 default_sampling: dict[str, Any]):
        import xllamacpp

        params = llama_params(path, threads, options)
        self.weights_file = display_name(path)
        self.max_sequences = int(params.n_parallel)
        # What one request may use: its slot's share of the cache, or all of a unified one.
        self.context_length = int(params.n_ctx) // (1 if params.kv_unified
                                                    else self.max_sequences)
        self.takes_tools = bool(options.get("tools", True))
        self.sees = bool(options.get("mmproj"))
        # xllamacpp also opens llama.cpp's HTTP server on loopback; a secret key closes it to
        # everyone but us (we use it for tokenize/detokenize/apply-template/props).
        self._key = secrets.token_hex(24)
        params.api_keys = [self._key]
        self._defaults = default_sampling
        self._server = xllamacpp.Server(params)
        self._base_url = str(self._server.listening_address).rstrip("/")
        self.vocab_size = int(self._http("/v1/models")["data"][0]["meta"]["n_vocab"])
        props = self._http("/props")
        caps = props.get("chat_template_caps") or {}
        self.native_tools = tool_calls.native_format(str(props.get("chat_template", "")), caps)
        self.parallel_tools = self.native_tools and bool(caps.get("supports_parallel_tool_calls"))
        # A thinking model's template may open the thought itself: its answers then start
        # inside it, with no <think> of their own.
        self.opens_thought = self._opens_thought(
            self._http("/apply-template", {"messages": [{"role": "user", "content": "Hi"}],
                                           "add_generation_prompt": True})["prompt"])
        self._fim: list[int] | None = None

    # -- generation -------------------------------------------------------------------------

    def chat(self, req: ChatRequest, on_event: OnEvent, cancelled: threading.Event) -> None:
        if req.tools and not self.takes_tools:
            raise InvalidRequest("This model cannot take tools.", param="tools")
        structured = req.sampling.json_schema is not None or req.sampling.json_object
        if (tool_calls.uses_tools(req.tools, req.messages)
                or (structured and self.opens_thought)):  # the JSON comes after the thought
            self._chat_with_tools(req, on_event, cancelled)
            return
        body = self._sampling_body(req.sampling)
        body["messages"] = [_message(m, self.sees) for m in req.messages]
        if not req.split_reasoning:
            body["reasoning_format"] = "none"
        parsers = ChoiceParsers(reasoning=req.split_reasoning, in_thought=self.opens_thought)
        self._stream(self._server.handle_chat_completions, body, on_event, cancelled,
                     "messages", parsers if req.split_reasoning else None,
                     stops=own_stops(req.sampling))

    def _chat_with_tools(self, req: ChatRequest, on_event: OnEvent,
                         cancelled: threading.Event) -> None:
        """Render the conversation with the model's template, decode under the tool grammar
        (see tool_calls) and split the calls out of the text as they stream."""
        choice = req.tool_choice if req.tools else "none"  # only history, or only JSON
        prompt, shown = self._tool_prompt(req.messages, req.tools, choice)
        in_thought = req.split_reasoning and self._opens_thought(prompt)
        body = self._sampling_body(req.sampling)
        body.pop("response_format", None)
        s = req.sampling
        answer = s.json_schema if s.json_schema is not None else (
            {"type": "object"} if s.json_object else None)
        body["prompt"] = prompt
        body["grammar"] = tool_calls.grammar(
            req.tools, choice, answer_schema=answer,
            parallel=req.parallel_tool_calls and self.parallel_tools,
            in_thought=self._opens_thought(prompt))
        parsers = ChoiceParsers(reasoning=req.split_reasoning, in_thought=in_thought,
                                tools=[t.name for t in shown])
        self._stream(self._server.handle_completions, body, on_event, cancelled, "messages",
                     parsers, grammar_param="tools", stops=own_stops(req.sampling))

    def _tool_prompt(self, messages: list[ChatMessage], tools: list[Tool], choice: ToolChoice,
                     generation: bool = True) -> tuple[str, list[Tool]]:
        """The prompt of a conversation with tools or tool history, and the tools it shows
        (none for `none`): what `_chat_with_tools` decodes from and TOKENIZE counts."""
        shown = [] if choice == "none" else tools
        template: dict[str, Any] = {"add_generation_prompt": generation, "messages":
                                    tool_calls.template_messages(
                                        messages, shown, native=self.native_tools, text=_text)}
        if shown and self.native_tools:
            template["tools"] = [tool_calls.openai_tool(t) for t in shown]
        return str(self._http("/apply-template", template)["prompt"]), shown

    @staticmethod
    def _opens_thought(prompt: str) -> bool:
        return prompt.rstrip().endswith(THINK_OPEN)

    def complete(self, req: CompletionRequest, on_event: OnEvent,
                 cancelled: threading.Event) -> None:
        body = self._sampling_body(req.sampling)
        body["prompt"] = req.prompt if req.suffix is None else self._fill_in(req)
        self._stream(self._server.handle_completions, body, on_event, cancelled, "prompt",
                     stops=own_stops(req.sampling))

    def _fill_in(self, req: CompletionRequest) -> list[int]:
        """The prompt and `suffix` around the model's fill-in-the-middle tokens; the user's
        text is tokenized as text, so it cannot smuggle in special tokens."""
        if self._fim is None:
            self._fim = self._fim_tokens()
        if not self._fim:
            raise InvalidRequest("This model has no fill-in-the-middle tokens, so it cannot "
                                 "take a suffix.", param="suffix")
        begin, hole, end = self._fim
        prefix = req.prompt if isinstance(req.prompt, list) else self._tokens(req.prompt)
        return [begin, *prefix, hole, *self._tokens(req.suffix or ""), end]

    def _fim_tokens(self) -> list[int]:
        """The first family of FIM markers that are single tokens in this vocabulary."""
        for markers in _FIM_MARKERS:
            ids = [self._tokens(m, special=True) for m in markers]
            if all(len(t) == 1 for t in ids):
                return [t[0] for t in ids]
        return []

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
        if own_stops(s):
            body["timings_per_token"] = True  # the usage, should we stop it (see StopWatch)
        elif s.stop:
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
                cancelled: threading.Event, prompt_param: str,
                parsers: ChoiceParsers | None = None,
                grammar_param: str = "response_format", stops: list[str] | None = None) -> None:
        usage = UsageSum()
        error: dict[str, Any] | None = None
        watch = StopWatch(stops) if stops else None

        def callback(chunk: dict[str, Any]) -> bool:
            nonlocal error
            if "error" in chunk:
                error = chunk["error"]
                return True
            for choice in chunk.get("choices", ()):
                if watch is not None:
                    choice = watch.choice(choice)
                events = plain_events(choice) if parsers is None else parsers.events(choice)
                if watch is not None:
                    watch.mark(events)
                for event in events:
                    on_event(event)
            if chunk.get("usage"):
                usage.add(chunk["usage"])
            if watch is not None:
                watch.observe(chunk)
                return cancelled.is_set() or watch.done
            return cancelled.is_set()

        try:
            result = handle(body, callback)
        except ValueError as exc:
            raise _request_error(str(exc), prompt_param, grammar_param) from exc
        except RuntimeError as exc:
            raise EngineFailure(f"llama.cpp failed: {exc}") from exc
        if isinstance(result, dict) and "error" in result:
            error = result["error"]
        if error is not None:
            raise _llama_error(error, prompt_param, grammar_param)
        if not cancelled.is_set():
            on_event(watch.usage() if watch is not None and watch.done else usage.total())

    # -- tokenizer --------------------------------------------------------------------------

    def tokenize(self, req: TokenizeRequest) -> list[int]:
        text = req.prompt or ""
        add_special = req.add_special_tokens
        if req.messages is not None and tool_calls.uses_tools(req.tools, req.messages):
            choice = req.tool_choice if req.tools else "none"
            text, _ = self._tool_prompt(req.messages, req.tools, choice,
                                        req.add_generation_prompt)
            add_special = False
        elif req.messages is not None:
            if images_of(req.messages):
                raise InvalidRequest("Counting the tokens of images is not supported; count "
                                     "the text alone.", param="messages")
            messages = [_message(m) for m in req.messages]
            text = self._http("/apply-template", {
                "messages": messages, "add_generation_prompt": req.add_generation_prompt,
            })["prompt"]
            add_special = False  # the template already carries the special tokens
        return self._tokens(text, special=True, add_special=add_special)

    def _tokens(self, text: str, *, special: bool = False,
                add_special: bool = False) -> list[int]:
        reply = self._http("/tokenize", {"content": text, "add_special": add_special,
                                         "parse_special": special})
        return [int(t) for t in reply["tokens"]]

    def detokenize(self, tokens: list[int]) -> str:
        return str(self._http("/detokenize", {"tokens": tokens})["content"])

    def _http(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """A call to llama.cpp's own loopback server (GET without a body, else POST)."""
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


# Fill-in-the-middle markers (prefix, suffix, middle), in prefix-suffix-middle order: Qwen2.5-
# Coder and CodeGemma, StarCoder, DeepSeek-Coder.
_FIM_MARKERS = (("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"),
                ("<fim_prefix>", "<fim_suffix>", "<fim_middle>"),
                ("<\uff5cfim\u2581begin\uff5c>", "<\uff5cfim\u2581hole\uff5c>",
                 "<\uff5cfim\u2581end\uff5c>"))


def _text(m: ChatMessage) -> str:
    """A message's text, for paths that render the prompt as text (tools, token counts)."""
    if not isinstance(m.content, str) and any(isinstance(p, ImagePart) for p in m.content):
        raise InvalidRequest("This model cannot see images here: images reach a model with a "
                             "multimodal projector (mmproj) only in chats without tools.",
                             param="messages")
    return m.text()


def _message(m: ChatMessage, sees: bool = False) -> dict[str, Any]:
    """The message as llama.cpp's chat API takes it: images as OpenAI `image_url` parts with
    `data:` URLs, which its server decodes (only with a projector loaded)."""
    if not sees or isinstance(m.content, str) or not images_of([m]):
        return {"role": m.role, "content": _text(m)}
    parts: list[dict[str, Any]] = []
    for part in m.content:
        if isinstance(part, ImagePart):
            parts.append({"type": "image_url",
                          "image_url": {"url": data_url(with_detail(part))}})
        else:
            parts.append({"type": "text", "text": part.text})
    return {"role": m.role, "content": parts}


def _llama_error(error: dict[str, Any], prompt_param: str,
                 grammar_param: str = "response_format") -> PocketserveError:
    if error.get("type") == "exceed_context_size_error":
        return ContextLengthExceeded(
            f"This model's maximum context length is {error.get('n_ctx')} tokens, but the "
            f"request has {error.get('n_prompt_tokens')} prompt tokens.",
            param=prompt_param,
        )
    message = str(error.get("message", "the model rejected the request"))
    if int(error.get("code", 400)) >= 500:
        return EngineFailure(message)
    return _request_error(message, prompt_param, grammar_param)


def _request_error(message: str, prompt_param: str,
                   grammar_param: str = "response_format") -> InvalidRequest:
    lowered = message.lower()
    if "json schema" in lowered or "grammar" in lowered:
        what = "tool schema" if grammar_param == "tools" else "response_format"
        return InvalidRequest(f"Invalid {what}: {message}", param=grammar_param)
    if "field 'n'" in lowered:
        return InvalidRequest(message, param="n")
    if "invalid tokens" in lowered:
        return InvalidRequest(message, param=prompt_param)
    return InvalidRequest(message)
