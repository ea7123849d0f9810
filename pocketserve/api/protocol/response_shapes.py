"""The Responses API's answers and stream events, for /openapi.json only (as answers.py is for
the other routes): `extra="forbid"`, so the schema fuzzer fails on any key sent but not here.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from pocketserve.api.protocol.answers import Answer

ItemStatus = Literal["in_progress", "completed", "incomplete"]


class ResponseTopLogprob(Answer):
    token: str
    logprob: float
    bytes: list[int]


class ResponseLogprob(ResponseTopLogprob):
    top_logprobs: list[ResponseTopLogprob]


class ResponseOutputText(Answer):
    type: Literal["output_text"]
    annotations: list[Any] = Field(description="Always empty: no citations are made.")
    logprobs: list[ResponseLogprob] = Field(
        description="Filled with include=['message.output_text.logprobs'].")
    text: str


class ReasoningText(Answer):
    type: Literal["reasoning_text"]
    text: str


class ResponseOutputMessage(Answer):
    id: str
    type: Literal["message"]
    status: ItemStatus
    content: list[ResponseOutputText]
    role: Literal["assistant"]


class ResponseFunctionCall(Answer):
    id: str
    type: Literal["function_call"]
    status: ItemStatus
    arguments: str = Field(description="JSON text; held to the function's schema by a "
                           "grammar when the call is required or named.")
    call_id: str
    name: str


class ResponseReasoning(Answer):
    id: str
    type: Literal["reasoning"]
    summary: list[Any] = Field(description="Always empty: no summaries are made.")
    content: list[ReasoningText]
    status: ItemStatus


OutputItem = ResponseOutputMessage | ResponseFunctionCall | ResponseReasoning


class InputTokensDetails(Answer):
    cached_tokens: int
    cache_write_tokens: int


class OutputTokensDetails(Answer):
    reasoning_tokens: int


class ResponseUsage(Answer):
    input_tokens: int
    input_tokens_details: InputTokensDetails
    output_tokens: int
    output_tokens_details: OutputTokensDetails
    total_tokens: int


class ResponseErrorObject(Answer):
    code: Literal["server_error", "rate_limit_exceeded"]
    message: str


class IncompleteDetails(Answer):
    reason: Literal["max_output_tokens"]


class FunctionToolEcho(Answer):
    type: Literal["function"]
    name: str
    description: str | None
    parameters: dict[str, Any] | None
    strict: bool


class TextFormatEcho(Answer):
    type: Literal["text", "json_object", "json_schema"]
    name: str | None = None
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class TextEcho(Answer):
    format: TextFormatEcho
    verbosity: Literal["medium"]


class ReasoningEcho(Answer):
    effort: None
    summary: None


class NamedFunction(Answer):
    type: Literal["function"]
    name: str


class AllowedToolsEcho(Answer):
    type: Literal["allowed_tools"]
    mode: Literal["auto", "required"]
    tools: list[NamedFunction]


class Response(Answer):
    """OpenAI's response object; the request's settings are repeated as it gives them."""

    id: str
    object: Literal["response"]
    created_at: int
    status: Literal["completed", "incomplete", "failed", "in_progress"]
    background: bool
    completed_at: int | None
    error: ResponseErrorObject | None
    incomplete_details: IncompleteDetails | None
    model: str
    output: list[OutputItem]
    instructions: str | None
    max_output_tokens: int | None
    max_tool_calls: int | None
    metadata: dict[str, str]
    parallel_tool_calls: bool
    previous_response_id: str | None
    prompt_cache_key: str | None
    reasoning: ReasoningEcho
    safety_identifier: str | None
    service_tier: Literal["default"]
    store: bool
    temperature: float | None
    text: TextEcho
    tool_choice: Literal["auto", "none", "required"] | NamedFunction | AllowedToolsEcho
    tools: list[FunctionToolEcho]
    top_logprobs: int
    top_p: float | None
    truncation: Literal["disabled"]
    user: str | None
    usage: ResponseUsage | None


class ResponseDeleted(Answer):
    id: str
    object: Literal["response"]
    deleted: Literal[True]


# -- input items, as stored ---------------------------------------------------------------


class StoredPart(Answer):
    type: Literal["input_text", "output_text", "refusal"]
    text: str | None = None
    annotations: list[Any] | None = None
    refusal: str | None = None


class StoredMessage(Answer):
    id: str
    type: Literal["message"]
    role: Literal["user", "assistant", "system", "developer"]
    content: list[StoredPart]
    status: ItemStatus


class StoredFunctionCallOutput(Answer):
    id: str
    type: Literal["function_call_output"]
    call_id: str
    output: str | list[StoredPart]
    status: ItemStatus


class StoredReasoning(Answer):
    id: str
    type: Literal["reasoning"]
    summary: list[Any]
    content: list[ReasoningText] | None = None


class ResponseItemList(Answer):
    object: Literal["list"]
    data: list[StoredMessage | ResponseFunctionCall | StoredFunctionCallOutput
               | StoredReasoning]
    first_id: str | None
    last_id: str | None
    has_more: bool


# -- stream events ------------------------------------------------------------------------


class _Event(Answer):
    sequence_number: int


class ResponseCreatedEvent(_Event):
    type: Literal["response.created"]
    response: Response


class ResponseInProgressEvent(_Event):
    type: Literal["response.in_progress"]
    response: Response


class ResponseCompletedEvent(_Event):
    type: Literal["response.completed"]
    response: Response


class ResponseIncompleteEvent(_Event):
    type: Literal["response.incomplete"]
    response: Response


class ResponseFailedEvent(_Event):
    """A failure after the stream began (the model crashed, the deadline passed)."""

    type: Literal["response.failed"]
    response: Response


class ResponseOutputItemAddedEvent(_Event):
    type: Literal["response.output_item.added"]
    output_index: int
    item: OutputItem


class ResponseOutputItemDoneEvent(_Event):
    type: Literal["response.output_item.done"]
    output_index: int
    item: OutputItem


class _InPart(_Event):
    item_id: str
    output_index: int
    content_index: int


class ResponseContentPartAddedEvent(_InPart):
    type: Literal["response.content_part.added"]
    part: ResponseOutputText | ReasoningText


class ResponseContentPartDoneEvent(_InPart):
    type: Literal["response.content_part.done"]
    part: ResponseOutputText | ReasoningText


class StreamTopLogprob(Answer):
    token: str
    logprob: float


class StreamLogprob(StreamTopLogprob):
    top_logprobs: list[StreamTopLogprob]


class ResponseTextDeltaEvent(_InPart):
    type: Literal["response.output_text.delta"]
    delta: str
    logprobs: list[StreamLogprob]


class ResponseTextDoneEvent(_InPart):
    type: Literal["response.output_text.done"]
    text: str
    logprobs: list[StreamLogprob]


class ResponseReasoningTextDeltaEvent(_InPart):
    type: Literal["response.reasoning_text.delta"]
    delta: str


class ResponseReasoningTextDoneEvent(_InPart):
    type: Literal["response.reasoning_text.done"]
    text: str


class ResponseFunctionCallArgumentsDeltaEvent(_Event):
    type: Literal["response.function_call_arguments.delta"]
    item_id: str
    output_index: int
    delta: str


class ResponseFunctionCallArgumentsDoneEvent(_Event):
    type: Literal["response.function_call_arguments.done"]
    item_id: str
    output_index: int
    name: str
    arguments: str


STREAM_EVENTS: tuple[type[Answer], ...] = (
    ResponseCreatedEvent, ResponseInProgressEvent, ResponseOutputItemAddedEvent,
    ResponseContentPartAddedEvent, ResponseTextDeltaEvent, ResponseTextDoneEvent,
    ResponseReasoningTextDeltaEvent, ResponseReasoningTextDoneEvent,
    ResponseContentPartDoneEvent, ResponseFunctionCallArgumentsDeltaEvent,
    ResponseFunctionCallArgumentsDoneEvent, ResponseOutputItemDoneEvent,
    ResponseCompletedEvent, ResponseIncompleteEvent, ResponseFailedEvent)
