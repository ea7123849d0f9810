"""The shapes of Anthropic's Messages answers, for /openapi.json only (see answers.py: the routes
build plain dicts, these describe them, and an undocumented key fails the schema fuzzer)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from pocketserve.api.protocol.answers import Answer


class AnthropicErrorDetail(Answer):
    type: str = Field(description="invalid_request_error (400), authentication_error (401), "
                      "not_found_error (404), request_too_large (413), rate_limit_error (429), "
                      "api_error (500), overloaded_error (503), timeout_error (504).")
    message: str = Field(description="What went wrong; the parameter at fault comes first.")


class AnthropicError(Answer):
    """Anthropic's error envelope: every failure on /v1/messages routes has this body, also as
    the data of a stream's `error` event."""

    type: Literal["error"]
    error: AnthropicErrorDetail
    request_id: str | None = Field(description="The X-Request-ID of the request.")


class TextBlock(Answer):
    type: Literal["text"]
    text: str


class ThinkingBlock(Answer):
    type: Literal["thinking"]
    thinking: str
    signature: str = Field(description="Always empty: local thoughts are not signed.")


class ToolUseBlock(Answer):
    type: Literal["tool_use"]
    id: str
    name: str
    input: dict[str, Any]


ContentBlock = TextBlock | ThinkingBlock | ToolUseBlock
StopReason = Literal["end_turn", "max_tokens", "stop_sequence", "tool_use", "refusal"]


class AnthropicUsage(Answer):
    input_tokens: int = Field(description="Prompt tokens not read from the prompt cache.")
    output_tokens: int
    cache_creation_input_tokens: int
    cache_read_input_tokens: int = Field(description="Prompt tokens llama.cpp reused from an "
                                         "earlier request with the same prefix.")


class AnthropicMessage(Answer):
    id: str
    type: Literal["message"]
    role: Literal["assistant"]
    model: str
    content: list[ContentBlock]
    stop_reason: StopReason | None
    stop_sequence: str | None
    usage: AnthropicUsage


class MessageTokensCount(Answer):
    input_tokens: int


# -- stream events (each `data:` of an SSE event named by its `type`) ---------------------


class MessageStartEvent(Answer):
    type: Literal["message_start"]
    message: AnthropicMessage


class PingEvent(Answer):
    type: Literal["ping"]


class ContentBlockStartEvent(Answer):
    type: Literal["content_block_start"]
    index: int
    content_block: ContentBlock


class TextBlockDelta(Answer):
    type: Literal["text_delta"]
    text: str


class InputJsonDelta(Answer):
    type: Literal["input_json_delta"]
    partial_json: str


class ThinkingBlockDelta(Answer):
    type: Literal["thinking_delta"]
    thinking: str


class ContentBlockDeltaEvent(Answer):
    type: Literal["content_block_delta"]
    index: int
    delta: TextBlockDelta | InputJsonDelta | ThinkingBlockDelta


class ContentBlockStopEvent(Answer):
    type: Literal["content_block_stop"]
    index: int


class MessageDeltaBody(Answer):
    stop_reason: StopReason
    stop_sequence: str | None


class MessageDeltaEvent(Answer):
    type: Literal["message_delta"]
    delta: MessageDeltaBody
    usage: AnthropicUsage = Field(description="The totals: input tokens are known only here.")


class MessageStopEvent(Answer):
    type: Literal["message_stop"]


MESSAGE_EVENTS = (MessageStartEvent, PingEvent, ContentBlockStartEvent, ContentBlockDeltaEvent,
                 ContentBlockStopEvent, MessageDeltaEvent, MessageStopEvent, AnthropicError)
