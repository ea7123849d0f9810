"""POST /v1/completions request schema (OpenAI's legacy CreateCompletionRequest)."""

from __future__ import annotations

from pydantic import Field, field_validator

from pocketserve.api.protocol.common import SamplingFields, examples
from pocketserve.api.protocol.wire import MAX_TOKEN_ID
from pocketserve.errors import InvalidRequest
from pocketserve.ops.chat import CompletionRequest as EngineCompletion

Prompt = str | list[str] | list[int] | list[list[int]]


class CompletionRequest(SamplingFields):
    model_config = examples(
        {"model": "smollm2-135m-instruct", "prompt": "The capital of France is",
         "max_tokens": 8, "temperature": 0},
        {"model": "smollm2-135m-instruct", "prompt": "The capital of France is",
         "max_tokens": 3, "temperature": 0, "stream": True},
    )

    prompt: Prompt
    max_tokens: int | None = Field(default=16, ge=1)
    echo: bool = False
    logprobs: int | None = Field(default=None, ge=0, le=20)
    suffix: str | None = None

    @field_validator("prompt")
    @classmethod
    def _not_empty(cls, prompt: Prompt) -> Prompt:
        if isinstance(prompt, list) and (not prompt or any(p == [] for p in prompt)):
            raise ValueError("prompt must not be an empty list")
        bad = next((i for i in _token_ids(prompt) if not 0 <= i <= MAX_TOKEN_ID), None)
        if bad is not None:
            raise ValueError(f"token id {bad} is outside 0..{MAX_TOKEN_ID}")
        return prompt

    def prompts(self) -> list[str | list[int]]:
        """The prompt as a list of single prompts (text or token ids)."""
        p = self.prompt
        if isinstance(p, str):
            return [p]
        if all(isinstance(x, int) for x in p):
            return [[int(x) for x in p if isinstance(x, int)]]
        return [x for x in p if isinstance(x, str | list)]

    def to_engine(self) -> list[EngineCompletion]:
        if self.echo and self.logprobs is not None:
            raise InvalidRequest(
                "echo together with logprobs is not supported: the backend gives no prompt "
                "logprobs", param="echo")
        sampling = self.sampling(max_tokens=self.max_tokens, logprobs=self.logprobs is not None,
                                 top_logprobs=self.logprobs or 0)
        # `suffix` (fill in the middle) needs the model's FIM tokens: its worker says if not.
        return [EngineCompletion(prompt=p, sampling=sampling, echo=self.echo,
                                 suffix=self.suffix or None)
                for p in self.prompts()]


def _token_ids(prompt: Prompt) -> list[int]:
    if not isinstance(prompt, list):
        return []
    flat = [x for p in prompt for x in (p if isinstance(p, list) else [p])]
    return [x for x in flat if isinstance(x, int)]
