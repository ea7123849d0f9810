"""Chat and completions: the requests, the streamed events and the operations.

The event model carries more than today's backends produce, so the tool-calling, reasoning and
vision work extend engines without changing the seam: tool-call deltas (OpenAI's streamed
shape: the first delta of a call has its id and name, later ones only argument text),
reasoning text, image parts in messages, and finish reasons beyond stop/length.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from pocketserve.ops.common import Usage
from pocketserve.ops.wire import Op


class SamplingParams(msgspec.Struct, kw_only=True):
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    repetition_penalty: float | None = None
    seed: int | None = None
    stop: list[str] = msgspec.field(default_factory=list)
    n: int = 1
    logprobs: bool = False
    top_logprobs: int = 0
    json_schema: dict[str, Any] | None = None
    json_object: bool = False


# The longest stop string whose match a TextDelta names (`stop_sequence`): backends watch
# for those themselves, which costs up to their length per streamed piece.
MAX_NAMED_STOP_CHARS = 512


class TextPart(msgspec.Struct, tag="text"):
    text: str


class ImagePart(msgspec.Struct, tag="image"):
    """An image already fetched and checked by the API process: workers never see URLs."""

    data: bytes
    media_type: str  # sniffed from the bytes, e.g. image/png
    detail: str = "auto"


Part = TextPart | ImagePart


class ToolCall(msgspec.Struct):
    """A call the assistant made, as it appears in the conversation's history."""

    id: str
    name: str
    arguments: str  # JSON text, as OpenAI carries it


class Tool(msgspec.Struct):
    """A function the model may call; `parameters` is a JSON schema."""

    name: str
    description: str | None = None
    parameters: dict[str, Any] = msgspec.field(default_factory=dict)
    strict: bool = False


class ChatMessage(msgspec.Struct, kw_only=True):
    role: str  # system, user, assistant or tool
    content: str | list[Part] = ""
    name: str | None = None
    tool_calls: list[ToolCall] = msgspec.field(default_factory=list)
    tool_call_id: str | None = None  # for role "tool": which call this answers

    def text(self) -> str:
        """The message's text parts joined (images left out)."""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content if isinstance(p, TextPart))


ToolChoice = Literal["auto", "none", "required"] | str  # or a function's name


class ChatRequest(msgspec.Struct, kw_only=True):
    messages: list[ChatMessage]
    sampling: SamplingParams = msgspec.field(default_factory=SamplingParams)
    tools: list[Tool] = msgspec.field(default_factory=list)
    tool_choice: ToolChoice = "auto"
    parallel_tool_calls: bool = True
    # Thinking (`<think>` blocks) as ReasoningDelta events; False leaves it in the text as the
    # model wrote it (the server's `reasoning_content` setting).
    split_reasoning: bool = True


class CompletionRequest(msgspec.Struct, kw_only=True):
    prompt: str | list[int]
    sampling: SamplingParams = msgspec.field(default_factory=SamplingParams)
    echo: bool = False
    suffix: str | None = None  # fill-in-the-middle, for models with FIM tokens


class TokenizeRequest(msgspec.Struct, kw_only=True):
    """A prompt's tokens; `messages` are rendered exactly as a ChatRequest with the same
    `tools` and `tool_choice` would be (the tools change the prompt), so counting them before
    a call gives the prompt tokens the call reports."""

    prompt: str | None = None
    messages: list[ChatMessage] | None = None
    add_special_tokens: bool = True
    add_generation_prompt: bool = True
    tools: list[Tool] = msgspec.field(default_factory=list)
    tool_choice: ToolChoice = "auto"


class Tokens(msgspec.Struct):
    tokens: list[int]
    max_model_len: int


class DetokenizeRequest(msgspec.Struct):
    tokens: list[int]


class Detokenized(msgspec.Struct):
    prompt: str


class TopLogprob(msgspec.Struct):
    token: str
    logprob: float
    bytes: list[int] | None


class TokenLogprob(msgspec.Struct):
    token: str
    logprob: float
    bytes: list[int] | None
    top: list[TopLogprob]


FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "cancelled"]


class TextDelta(msgspec.Struct, tag="delta"):
    """New text for choice `index`; `finish_reason` is set on the choice's last delta, and
    `stop_sequence` there too when one of the request's stop strings ended it (Anthropic's
    answer names it; the string itself is never part of the text)."""

    index: int
    text: str
    logprobs: list[TokenLogprob] | None = None
    finish_reason: FinishReason | None = None
    stop_sequence: str | None = None


class ReasoningDelta(msgspec.Struct, tag="reasoning"):
    """Thinking text (a `<think>` block) of choice `index`, kept out of its content."""

    index: int
    text: str


class ToolCallDelta(msgspec.Struct, tag="tool_call"):
    """Part of tool call `call_index` of choice `index`: its first delta carries `id` and
    `name` (and maybe no arguments yet), later ones only more `arguments` text."""

    index: int
    call_index: int
    arguments: str = ""
    id: str | None = None
    name: str | None = None


ChatEvent = TextDelta | ReasoningDelta | ToolCallDelta | Usage

CHAT: Op[ChatRequest, ChatEvent] = Op("chat", ChatRequest, ChatEvent)
COMPLETE: Op[CompletionRequest, ChatEvent] = Op("complete", CompletionRequest, ChatEvent)
TOKENIZE: Op[TokenizeRequest, Tokens] = Op("tokenize", TokenizeRequest, Tokens)
DETOKENIZE: Op[DetokenizeRequest, Detokenized] = Op("detokenize", DetokenizeRequest,
                                                    Detokenized)
