"""POST /v1/chat/completions request schema (OpenAI's CreateChatCompletionRequest)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from pocketserve.api.protocol.common import Request, ResponseFormat, SamplingFields, examples
from pocketserve.errors import InvalidRequest
from pocketserve.ops.chat import ChatMessage, ChatRequest


class ContentPart(Request):
    type: str
    text: str | None = None


class Message(Request):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None


class ChatCompletionRequest(SamplingFields):
    model_config = examples(
        {"model": "smollm2-135m-instruct", "messages": [
            {"role": "system", "content": "You are a concise assistant."},
            {"role": "user", "content": "What is the capital of France?"}],
         "max_completion_tokens": 16, "temperature": 0},
        {"model": "smollm2-135m-instruct",
         "messages": [{"role": "user", "content": "Say hello."}],
         "max_completion_tokens": 4, "temperature": 0, "stream": True,
         "stream_options": {"include_usage": True}},
    )

    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    response_format: ResponseFormat | None = None

    # Not served yet (tool calling is being built, issue 11): refused by name, not ignored.
    tools: list[Any] | None = None
    tool_choice: Any = None

    def to_engine(self) -> ChatRequest:
        for name in ("tools", "tool_choice"):
            if getattr(self, name) is not None:
                raise InvalidRequest(f"`{name}` is not supported by this server yet: no model "
                                     "here can call tools.", param=name)
        if self.top_logprobs and not self.logprobs:
            raise InvalidRequest("top_logprobs needs logprobs set to true", param="top_logprobs")
        sampling = self.sampling(
            max_tokens=self.max_completion_tokens or self.max_tokens, logprobs=self.logprobs,
            top_logprobs=self.top_logprobs or 0, response_format=self.response_format,
        )
        messages = [plain_message(i, m) for i, m in enumerate(self.messages)]
        return ChatRequest(messages=messages, sampling=sampling)


def plain_message(index: int, message: Message) -> ChatMessage:
    """One message with its text parts joined; other part types are refused by name."""
    role = "system" if message.role == "developer" else message.role
    content: Any = message.content
    if isinstance(content, list):
        texts = []
        for j, part in enumerate(content):
            if part.type != "text" or part.text is None:
                raise InvalidRequest(
                    f"content part of type {part.type!r} is not supported by this model",
                    param=f"messages[{index}].content[{j}]")
            texts.append(part.text)
        content = "".join(texts)
    return ChatMessage(role=role, content=content or "")
