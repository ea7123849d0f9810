"""POST /v1/responses request schema (OpenAI's CreateResponse), and its conversion to the same
chat engine request /v1/chat/completions builds: the tool, schema and sampling checks are chat's.

Every parameter of OpenAI's request is declared. Those pocketserve cannot honour (built-in
tools, background runs, automatic truncation, reasoning effort, conversations, ...) are a 400
naming the parameter, never silently dropped; see `refuse_unsupported`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, PlainValidator, field_validator

from pocketserve.api.protocol.chat import (
    FunctionDefinition,
    engine_tools,
    forced_function,
    tool_mode,
)
from pocketserve.api.protocol.common import (
    JsonSchemaFormat,
    Request,
    ResponseFormat,
    SamplingKnobs,
    checked_schema,
    examples,
)
from pocketserve.api.protocol.response_items import InputItem, parse_items, to_messages
from pocketserve.errors import InvalidRequest
from pocketserve.images.inputs import ImageInputs
from pocketserve.ops.chat import ChatMessage, ChatRequest, Tool, ToolChoice

BUILTIN_TOOLS = ("file_search", "web_search", "web_search_preview", "computer",
                 "computer_use_preview", "code_interpreter", "image_generation", "mcp",
                 "local_shell", "shell", "custom", "apply_patch", "namespace", "tool_search")
LOGPROBS = "message.output_text.logprobs"
Include = Literal["file_search_call.results", "web_search_call.results",
                  "web_search_call.action.sources", "message.input_image.image_url",
                  "computer_call_output.output.image_url", "code_interpreter_call.outputs",
                  "reasoning.encrypted_content", "message.output_text.logprobs"]


class _Typed(Request):
    type: Literal["function"]

    @field_validator("type", mode="before")
    @classmethod
    def _only_functions(cls, kind: Any) -> Any:
        if kind in BUILTIN_TOOLS or (isinstance(kind, str) and kind.startswith("web_search")):
            raise ValueError(f"the built-in tool {kind!r} is not served here; only tools of "
                             "type 'function' are")
        return kind


class FunctionTool(FunctionDefinition, _Typed):
    """A function, in the Responses API's flat shape (no nested `function`); `type` is checked
    first, so a built-in tool is refused by its type rather than for a missing name."""


class ToolChoiceFunction(Request):
    type: Literal["function"]
    name: str


class AllowedTool(Request):
    type: Literal["function"]
    name: str


class ToolChoiceAllowed(Request):
    """Only these of the declared tools, called freely (`auto`) or necessarily (`required`)."""

    type: Literal["allowed_tools"]
    mode: Literal["auto", "required"]
    tools: list[AllowedTool] = Field(min_length=1)


ToolChoiceParam = Literal["auto", "none", "required"] | ToolChoiceFunction | ToolChoiceAllowed


class TextFormat(Request):
    type: Literal["text", "json_object", "json_schema"]
    name: str | None = Field(default=None, max_length=64)
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None

    @field_validator("schema_")
    @classmethod
    def _is_valid_schema(cls, schema: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if schema is None else checked_schema(schema)


class TextParam(Request):
    format: TextFormat | None = None
    verbosity: Literal["low", "medium", "high"] | None = None


class ReasoningParam(Request):
    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None
    generate_summary: Literal["auto", "concise", "detailed"] | None = None


class ResponseStreamOptions(Request):
    include_obfuscation: bool | None = None


def _input(value: Any) -> Any:
    """`input` is checked item by item in `items()` (400s naming the exact place); here only
    its outer shape."""
    if value is not None and not isinstance(value, str | list):
        raise ValueError("input must be a string or a list of input items")
    return value


InputParam = Annotated[str | list[Any] | None, PlainValidator(
    _input, json_schema_input_type=str | list[InputItem] | None)]


class CreateResponse(SamplingKnobs):
    model_config = examples(
        {"model": "smollm2-135m-instruct", "input": "What is the capital of France?",
         "instructions": "Answer in one short sentence.", "max_output_tokens": 16,
         "temperature": 0},
        {"model": "smollm2-135m-instruct", "input": "What is the capital of France?",
         "instructions": "Answer in one short sentence.", "max_output_tokens": 16,
         "temperature": 0, "stream": True, "store": False},
    )

    model: str
    input: InputParam = None
    instructions: str | None = None
    previous_response_id: str | None = None
    store: bool | None = None
    stream: bool | None = None
    stream_options: ResponseStreamOptions | None = None
    tools: list[FunctionTool] | None = None
    tool_choice: ToolChoiceParam | None = None
    parallel_tool_calls: bool | None = None
    text: TextParam | None = None
    max_output_tokens: int | None = Field(default=None, ge=16)
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    include: list[Include] | None = None
    metadata: dict[Annotated[str, Field(max_length=64)],
                   Annotated[str, Field(max_length=512)]] | None = Field(default=None,
                                                                           max_length=16)
    user: str | None = None
    safety_identifier: str | None = Field(default=None, max_length=64)
    prompt_cache_key: str | None = None
    prompt_cache_retention: Literal["in_memory", "24h"] | None = None
    reasoning: ReasoningParam | None = None
    background: bool | None = None
    truncation: Literal["auto", "disabled"] | None = None
    service_tier: Literal["auto", "default", "flex", "scale", "priority", "fast",
                          "ultrafast"] | None = None
    max_tool_calls: int | None = Field(default=None, ge=1)
    conversation: str | dict[str, Any] | None = None
    prompt: dict[str, Any] | None = None
    context_management: list[dict[str, Any]] | None = None
    moderation: dict[str, Any] | None = None

    @property
    def keep(self) -> bool:
        return self.store is not False

    @property
    def logprobs(self) -> bool:
        return LOGPROBS in (self.include or ())

    def items(self, history: list[Any]) -> list[Any]:
        """The earlier conversation (a previous response's) and this request's input, checked."""
        if self.input is None and not history:
            raise InvalidRequest("Missing required parameter: 'input'.", param="input")
        return [*history, *parse_items(self.input if self.input is not None else [])]

    def to_engine(self, items: list[Any], *, split_reasoning: bool = True,
                  images: ImageInputs | None = None) -> ChatRequest:
        refuse_unsupported(self)
        messages = to_messages(items, where="input", images=images)
        if self.instructions:  # not carried over from a previous response, as OpenAI's
            messages.insert(0, ChatMessage(role="system", content=self.instructions))
        if not messages:
            raise InvalidRequest("The input holds no message for the model.", param="input")
        if self.top_logprobs and not self.logprobs:
            raise InvalidRequest(f"top_logprobs needs include=['{LOGPROBS}'].",
                                 param="top_logprobs")
        sampling = self.sampling_params(
            max_tokens=self.max_output_tokens, logprobs=self.logprobs,
            top_logprobs=self.top_logprobs or 0, response_format=self._format(),
            format_param="text.format")
        tools = engine_tools(list(self.tools or ()), "tools[{}].name")
        tools, choice = self._choice(tools)
        return ChatRequest(messages=messages, sampling=sampling, tools=tools,
                           tool_choice=choice,
                           parallel_tool_calls=self.parallel_tool_calls is not False,
                           split_reasoning=split_reasoning)

    def _format(self) -> ResponseFormat | None:
        fmt = self.text.format if self.text else None
        if fmt is None or fmt.type != "json_schema":
            return None if fmt is None else ResponseFormat(type=fmt.type)
        for field in ("name", "schema_"):
            if getattr(fmt, field) is None:
                name = field.rstrip("_")
                raise InvalidRequest(f"Missing required parameter: 'text.format.{name}'.",
                                     param=f"text.format.{name}")
        return ResponseFormat(type="json_schema", json_schema=JsonSchemaFormat(
            name=fmt.name or "response", description=fmt.description, schema=fmt.schema_,
            strict=fmt.strict))

    def _choice(self, tools: list[Tool]) -> tuple[list[Tool], ToolChoice]:
        choice = self.tool_choice
        if isinstance(choice, ToolChoiceFunction):
            return tools, forced_function(choice.name, tools, "tool_choice.name")
        if isinstance(choice, ToolChoiceAllowed):
            for i, allowed in enumerate(choice.tools):
                forced_function(allowed.name, tools, f"tool_choice.tools[{i}].name")
            names = {a.name for a in choice.tools}
            return [t for t in tools if t.name in names], choice.mode
        return tools, tool_mode(choice, tools)


# What each parameter pocketserve cannot honour would need; None, false or the default pass.
_REFUSED: dict[str, str] = {
    "background": "background runs are not supported; leave out `background` or set it to "
                  "false",
    "truncation": "automatic truncation is not supported: an input longer than the context is "
                  "a 400 (truncation 'disabled')",
    "conversation": "conversations are not supported; chain responses with "
                    "previous_response_id",
    "prompt": "stored prompt templates are not supported",
    "context_management": "context management (compaction) is not supported",
    "moderation": "moderation is not supported",
    "reasoning.effort": "the served models' thinking cannot be steered by an effort",
    "reasoning.summary": "reasoning summaries are not made; the model's thinking, when it "
                         "thinks, comes as reasoning_text in a reasoning item",
    "text.verbosity": "verbosity cannot be steered; only 'medium' (the default) is taken",
    "service_tier": "there is one service tier ('default'); 'auto' and 'default' are taken",
    "prompt_cache_retention": "the prompt cache lives in memory only ('in_memory')",
    "stream_options.include_obfuscation": "stream obfuscation is not done; set it to false",
}


def refuse_unsupported(body: CreateResponse) -> None:
    """A 400 naming the first parameter that asks for something pocketserve cannot do."""
    reasoning = body.reasoning or ReasoningParam()
    asked = {
        "background": bool(body.background),
        "truncation": body.truncation == "auto",
        "conversation": body.conversation is not None,
        "prompt": body.prompt is not None,
        "context_management": body.context_management is not None,
        "moderation": body.moderation is not None,
        "reasoning.effort": reasoning.effort is not None,
        "reasoning.summary": (reasoning.summary or reasoning.generate_summary) is not None,
        "text.verbosity": body.text is not None and body.text.verbosity not in (None,
                                                                                "medium"),
        "service_tier": body.service_tier not in (None, "auto", "default"),
        "prompt_cache_retention": body.prompt_cache_retention == "24h",
        "stream_options.include_obfuscation": bool(
            body.stream_options and body.stream_options.include_obfuscation),
    }
    for param, refused in asked.items():
        if refused:
            raise InvalidRequest(f"Unsupported parameter '{param}': {_REFUSED[param]}.",
                                 param=param, code="unsupported_parameter")
    for i, value in enumerate(body.include or ()):
        if value != LOGPROBS:
            raise InvalidRequest(f"Unsupported value for 'include[{i}]': {value!r} belongs to "
                                 f"a tool or feature not served here; only '{LOGPROBS}' is.",
                                 param=f"include[{i}]", code="unsupported_value")
