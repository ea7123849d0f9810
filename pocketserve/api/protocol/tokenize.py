"""POST /tokenize and /detokenize, in the shape vLLM uses."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from pocketserve.api.protocol.chat import Message, plain_message
from pocketserve.api.protocol.common import Body, examples
from pocketserve.api.protocol.wire import MAX_TOKEN_ID
from pocketserve.ops.chat import TokenizeRequest as EngineTokenize


class TokenizeRequest(Body):
    model_config = examples(
        {"model": "smollm2-135m-instruct", "prompt": "Hello, world!"},
        {"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "Hi"}]},
    )

    model: str
    prompt: str | None = None
    messages: list[Message] | None = None
    add_special_tokens: bool = True
    add_generation_prompt: bool = True

    @model_validator(mode="after")
    def _one_input(self) -> TokenizeRequest:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give exactly one of `prompt` or `messages`")
        return self

    def to_engine(self) -> EngineTokenize:
        messages = None if self.messages is None else [
            plain_message(i, m) for i, m in enumerate(self.messages)]
        return EngineTokenize(prompt=self.prompt, messages=messages,
                              add_special_tokens=self.add_special_tokens,
                              add_generation_prompt=self.add_generation_prompt)


class DetokenizeRequest(Body):
    model_config = examples({"model": "smollm2-135m-instruct", "tokens": [19556, 28, 905, 17]})

    model: str
    tokens: list[Annotated[int, Field(ge=0, le=MAX_TOKEN_ID)]] = Field(min_length=1)
