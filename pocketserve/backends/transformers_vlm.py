"""Vision-language chat on transformers: Qwen2-VL, Qwen2.5-VL, Qwen3-VL and SmolVLM folders.

An optional backend (`pip install 'pocketserve[vision]'`: torch, transformers, Pillow); torch is
imported only in the worker. Requests that arrive together are generated as one batch (padded
on the left), each streaming its own tokens; one that finishes, or is cancelled, leaves the
batch at once while the others go on. CUDA is used where torch sees it.

Options: `max_batch` (requests generated together, default 8), `batch_window_ms` (how long
the first request of a batch waits for company, default 0: requests that arrive while a batch
runs form the next one anyway, and a lone request should not wait; a 10 ms window tripled a
tiny model's served latency), `n_ctx` (the longest prompt plus
answer; default the model's own), `dtype` (float32, bfloat16 or float16; default float32 on
the CPU, bfloat16 on CUDA), `device` (cpu, cuda; default cuda when there is one), and
`threads` (read by the server for every backend).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pocketserve.backends.images import images_of, open_image, with_detail
from pocketserve.backends.vlm_generate import Job, Row, run_group
from pocketserve.backends.vlm_processors import PROCESSORS, load_processor
from pocketserve.config import ModelSpec
from pocketserve.engines.batching import Batcher
from pocketserve.engines.chat import ChatEngine, OnEvent
from pocketserve.errors import ContextLengthExceeded, EngineFailure, InvalidRequest
from pocketserve.ops.chat import (
    ChatMessage,
    ChatRequest,
    CompletionRequest,
    ImagePart,
    SamplingParams,
    TokenizeRequest,
)
from pocketserve.ops.common import Usage

log = logging.getLogger("pocketserve.transformers_vlm")

OPTIONS = ("max_batch", "batch_window_ms", "n_ctx", "dtype", "device", "threads")


def build_engine(spec: ModelSpec, path: Path, threads: int) -> ChatEngine:
    unknown = sorted(set(spec.options) - set(OPTIONS))
    if unknown:  # a misspelt option must not pass silently
        raise ValueError(f"unknown option(s) {', '.join(unknown)} for the transformers_vlm "
                         f"backend; it takes {', '.join(OPTIONS)}")
    return ChatEngine(VisionBackend(path, threads, spec.options, spec.default_sampling))


class VisionBackend:
    def __init__(self, path: Path, threads: int, options: dict[str, Any],
                 default_sampling: dict[str, Any]):
        import torch
        from transformers import AutoModelForImageTextToText

        torch.set_num_threads(max(1, threads))
        config = json.loads((path / "config.json").read_text("utf-8"))
        model_type = str(config.get("model_type", ""))
        if model_type not in PROCESSORS:
            raise ValueError(f"{path.name}: model type {model_type!r} is not one this backend "
                             f"serves ({', '.join(PROCESSORS)})")
        self.device = str(options.get("device") or (
            "cuda" if torch.cuda.is_available() else "cpu"))
        dtype = str(options.get("dtype") or ("bfloat16" if self.device == "cuda" else "float32"))
        self.model = AutoModelForImageTextToText.from_pretrained(
            str(path), dtype=getattr(torch, dtype), local_files_only=True).to(self.device).eval()
        self.processor = load_processor(path, model_type)
        self.tokenizer = self.processor.tokenizer
        self.tokenizer.padding_side = "left"
        text_config = config.get("text_config") or config
        self.context_length = int(options.get("n_ctx") or
                                  text_config.get("max_position_embeddings") or 4096)
        self.max_sequences = int(options.get("max_batch", 8))
        self.vocab_size = len(self.tokenizer)
        self.weights_file = path.name
        self._defaults = default_sampling
        self._eos = _eos_ids(self.model.generation_config, self.tokenizer)
        self._batcher: Batcher[Job, None] = Batcher(
            self._run_batch, max_batch=self.max_sequences,
            window_s=float(options.get("batch_window_ms", 0)) / 1000, name="vlm-batch")

    # -- the chat operations ----------------------------------------------------------------

    def chat(self, req: ChatRequest, on_event: OnEvent, cancelled: threading.Event) -> None:
        if req.tools:
            raise InvalidRequest("This model cannot take tools.", param="tools")
        text, images = self._chat_prompt(req.messages)
        self._generate(text, images, req.sampling, req.split_reasoning, on_event, cancelled)

    def complete(self, req: CompletionRequest, on_event: OnEvent,
                 cancelled: threading.Event) -> None:
        if req.suffix is not None:
            raise InvalidRequest("This model has no fill-in-the-middle tokens, so it cannot "
                                 "take a suffix.", param="suffix")
        if not isinstance(req.prompt, str):  # its processor takes text, not token ids
            raise InvalidRequest("This model takes a prompt as text, not token ids.",
                                 param="prompt")
        self._generate(req.prompt, [], req.sampling, False, on_event, cancelled)

    def tokenize(self, req: TokenizeRequest) -> list[int]:
        if req.tools:
            raise InvalidRequest("This model cannot take tools.", param="tools")
        if req.messages is None:
            ids: list[int] = self.tokenizer(
                req.prompt or "", add_special_tokens=req.add_special_tokens)["input_ids"]
            return ids
        text, images = self._chat_prompt(req.messages, req.add_generation_prompt)
        inputs = self.processor(text=[text], images=[images] if images else None)
        return [int(t) for t in inputs["input_ids"][0]]

    def detokenize(self, tokens: list[int]) -> str:
        return str(self.tokenizer.decode(tokens))

    def close(self) -> None:
        self._batcher.close()
        del self.model

    # -- the work ---------------------------------------------------------------------------

    def _chat_prompt(self, messages: list[ChatMessage],
                     generation: bool = True) -> tuple[str, list[Any]]:
        """The conversation rendered by the model's template, and its images decoded (here, in
        the request's thread, so a bad image fails only its own request)."""
        rendered: list[dict[str, Any]] = []
        for m in messages:
            if m.tool_calls or m.role == "tool":
                raise InvalidRequest("This model cannot take tools or tool results.",
                                     param="messages")
            if isinstance(m.content, str):
                rendered.append({"role": m.role, "content": m.content})
                continue
            rendered.append({"role": m.role, "content": [
                {"type": "image"} if isinstance(p, ImagePart) else
                {"type": "text", "text": p.text} for p in m.content]})
        images = [open_image(with_detail(p)) for p in images_of(messages)]
        try:
            text = self.processor.apply_chat_template(
                rendered, add_generation_prompt=generation, tokenize=False)
        except Exception as exc:  # the template's own checks (roles, order)
            raise InvalidRequest(f"The model's chat template refused the messages: {exc}",
                                 param="messages") from None
        return str(text), images

    def _generate(self, text: str, images: list[Any], s: SamplingParams, reasoning: bool,
                  on_event: OnEvent, cancelled: threading.Event) -> None:
        job = Job(text=text, images=images, sampling=self._sampling(s), reasoning=reasoning,
                  stops=list(s.stop), max_tokens=s.max_tokens,
                  rows=[Row(i) for i in range(s.n)], on_event=on_event, cancelled=cancelled)
        future = self._batcher.enqueue(job, cancelled)
        # Its rows done (even mid-batch), or its batch over: failed, or dropped as cancelled.
        future.add_done_callback(lambda _: job.finished.set())
        job.finished.wait()
        if cancelled.is_set():
            return
        if future.done() and future.exception() is not None:
            raise future.exception()  # type: ignore[misc]
        if job.error is not None:
            raise job.error
        on_event(Usage(job.prompt_tokens, sum(r.generated for r in job.rows)))

    def _sampling(self, s: SamplingParams) -> dict[str, Any]:
        """generate()'s sampling arguments; what transformers cannot do is refused by name."""
        for name in ("presence_penalty", "frequency_penalty"):
            if getattr(s, name) not in (None, 0, 0.0):
                raise InvalidRequest(f"This model does not support {name}; use "
                                     "repetition_penalty.", param=name)
        if s.logprobs:
            raise InvalidRequest("This model does not return logprobs.", param="logprobs")
        if s.json_schema is not None or s.json_object:
            raise InvalidRequest("This model has no JSON mode.", param="response_format")
        values = {**self._defaults, **{k: v for k, v in {
            "temperature": s.temperature, "top_p": s.top_p, "top_k": s.top_k, "min_p": s.min_p,
            "repetition_penalty": s.repetition_penalty, "seed": s.seed}.items()
            if v is not None}}
        out: dict[str, Any] = {}
        if "temperature" in values:
            temperature = float(values["temperature"])
            out["do_sample"] = temperature > 0
            if temperature > 0:
                out["temperature"] = temperature
        for name in ("top_p", "top_k", "min_p", "repetition_penalty", "seed"):
            if name in values:
                out[name] = values[name]
        return out

    def _run_batch(self, jobs: list[Job]) -> Sequence[None]:
        """One batch from the queue: jobs that can share a generate() call run together
        (same sampling, all with images or none); seeded ones alone, so they repeat."""
        groups: dict[str, list[Job]] = {}
        for job in jobs:
            key = json.dumps([job.sampling, bool(job.images)], sort_keys=True, default=str)
            if "seed" in job.sampling:
                key += f"#{id(job)}"
            groups.setdefault(key, []).append(job)
        try:
            for group in groups.values():
                try:
                    run_group(self, group)
                except Exception as exc:  # this group's failure, not the other groups'
                    log.exception("generate() failed for a batch of %d", len(group))
                    for job in group:
                        job.error = job.error or EngineFailure(
                            f"the model failed: {type(exc).__name__}: {exc}")
        finally:
            for job in jobs:
                job.finished.set()
        return [None] * len(jobs)

    def check_length(self, job: Job, prompt_tokens: int) -> int:
        """The most new tokens the job may have; a 400 when its prompt leaves no room."""
        room = self.context_length - prompt_tokens
        if room <= 0:
            raise ContextLengthExceeded(
                f"This model's maximum context length is {self.context_length} tokens, but "
                f"the request has {prompt_tokens} prompt tokens.")
        return room if job.max_tokens is None else min(room, job.max_tokens)

    @property
    def eos_ids(self) -> set[int]:
        return self._eos


def _eos_ids(generation_config: Any, tokenizer: Any) -> set[int]:
    eos = getattr(generation_config, "eos_token_id", None)
    ids = set(eos if isinstance(eos, list) else [] if eos is None else [eos])
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    return ids
