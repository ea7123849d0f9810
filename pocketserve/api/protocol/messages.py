"""POST /v1/messages and /v1/messages/count_tokens request schemas (Anthropic's Messages API).

Both convert to the engine requests chat builds (`ChatRequest`, `TokenizeRequest`), so tools,
grammar, batching and cancel work here as they do for chat. Content blocks are one permissive
model checked on conversion (blocks.py), so an unsupported block is a 400 naming it rather
than a union error. What cannot be honoured is refused by name (`Unhonoured`); hints that
change nothing for a local model (`cache_control`: llama.cpp reuses every repeated prefix
anyway; `metadata`; `service_tier`: the only tier is standard) are accepted.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from pocketserve.api.protocol.blocks import CacheControl, InputBlock, conversation
from pocketserve.api.protocol.chat import (
    FUNCTION_NAME,
    FunctionDefinition,
    engine_tools,
    forced_function,
    object_schema,
    tool_mode,
)
from pocketserve.api.protocol.common import Body, Request, checked_schema, examples
from pocketserve.errors import InvalidRequest
from pocketserve.images.inputs import ImageInputs
from pocketserve.ops.chat import (
    MAX_NAMED_STOP_CHARS,
    ChatMessage,
    ChatRequest,
    SamplingParams,
    Tool,
    ToolChoice,
)
from pocketserve.ops.chat import TokenizeRequest as EngineTokenize

MAX_STOP_SEQUENCES = 64  # each is looked for in every streamed piece of text

_REFUSED = "Refused with a 400 when set: "

StopSequence = Annotated[str, Field(min_length=1, max_length=MAX_NAMED_STOP_CHARS)]


class InputMessage(Request):
    role: Literal["user", "assistant", "system"]
    content: str | list[InputBlock]


class SystemBlock(Request):
    type: Literal["text"]
    text: str
    cache_control: CacheControl | None = None


class CustomTool(Request):
    name: str = Field(pattern=FUNCTION_NAME)
    description: str | None = None
    input_schema: dict[str, Any] | None = Field(
        default=None, description="The JSON schema of the tool's input (an object); required "
        "for custom tools.")
    type: str | None = Field(default=None, description='"custom" or left out. Server tools '
                             "(web search, bash, code execution, ...) are refused: only the "
                             "client runs tools here.")
    cache_control: CacheControl | None = None
    strict: bool | None = Field(default=None, description="Accepted: a call's input always "
                                "matches its schema where calls are enforced (any, tool).")

    @field_validator("input_schema")
    @classmethod
    def _object_schema(cls, schema: dict[str, Any] | None) -> dict[str, Any] | None:
        return object_schema(schema, "input_schema")


class MessagesToolChoice(Request):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = Field(default=None, description="The tool to call, for type `tool`.")
    disable_parallel_tool_use: bool | None = None


class ThinkingConfig(Request):
    type: Literal["adaptive", "disabled", "enabled", "between_tools"] = Field(
        description="`adaptive` (the default here): a thinking model's thought comes back as "
        "`thinking` blocks; `disabled`: it is left out of the answer. `enabled` and "
        "`between_tools` are refused: a thought cannot be held to a token budget or to the "
        "turns between tool calls here.")
    budget_tokens: int | None = None
    display: Literal["summarized", "omitted"] | None = Field(
        default=None, description="`omitted`: thinking blocks come back empty.")


class MessagesInput(Body):
    """What a message and its token count share: the model, the conversation and its tools."""

    model: str
    messages: list[InputMessage] = Field(min_length=1)
    system: str | list[SystemBlock] | None = None
    tools: list[CustomTool] | None = None
    tool_choice: MessagesToolChoice | None = None
    thinking: ThinkingConfig | None = None
    cache_control: CacheControl | None = Field(
        default=None, description="Accepted as a hint: every repeated prompt prefix is reused "
        "from llama.cpp's cache without it.")
    mcp_servers: Any = Field(default=None, description=_REFUSED + "no MCP connector here.")
    container: Any = Field(default=None, description=_REFUSED + "no code containers here.")
    context_management: Any = Field(default=None,
                                    description=_REFUSED + "no context editing here.")

    def unhonoured(self) -> dict[str, str]:
        """Parameters set that this server cannot honour, with why."""
        refused = {"mcp_servers": "MCP servers are not available on this server.",
                   "container": "Code-execution containers are not available on this server.",
                   "context_management": "Context editing is not available on this server."}
        found = {k: why for k, why in refused.items() if getattr(self, k) is not None}
        thinking = self.thinking
        if thinking is not None and thinking.type in ("enabled", "between_tools"):
            found["thinking.type"] = (
                f"thinking of type {thinking.type!r} cannot be honoured: a local model's "
                "thought cannot be held to a token budget or placed between tool calls. Use "
                "`adaptive` (the model thinks as it does) or `disabled`.")
        return found

    def refuse_unhonoured(self) -> None:
        for param, why in self.unhonoured().items():
            raise InvalidRequest(why, param=param)

    def conversation(self, images: ImageInputs | None = None) -> list[ChatMessage]:
        system = self.system if isinstance(self.system, str) else "\n".join(
            b.text for b in self.system or ())
        head = [ChatMessage(role="system", content=system)] if system else []
        return head + conversation(self.messages, images)

    def engine_tools(self) -> list[Tool]:
        functions = []
        for i, t in enumerate(self.tools or ()):
            if t.type not in (None, "custom"):
                raise InvalidRequest(f"Server tools (type {t.type!r}) are not available on "
                                     "this server: only custom tools, which the client runs.",
                                     param=f"tools[{i}].type")
            if t.input_schema is None:
                raise InvalidRequest(f"Missing required parameter: 'tools[{i}].input_schema'.",
                                     param=f"tools[{i}].input_schema")
            functions.append(FunctionDefinition(name=t.name, description=t.description,
                                                parameters=t.input_schema, strict=t.strict))
        return engine_tools(functions, "tools[{}].name")

    def engine_tool_choice(self, tools: list[Tool]) -> ToolChoice:
        choice = self.tool_choice
        if choice is None or choice.type != "tool":
            modes = {"auto": "auto", "any": "required", "none": "none"}
            return tool_mode(None if choice is None else modes[choice.type], tools)
        if not choice.name:
            raise InvalidRequest("tool_choice of type `tool` needs the tool's `name`.",
                                 param="tool_choice.name")
        return forced_function(choice.name, tools, "tool_choice.name")

    @property
    def thinking_shown(self) -> Literal["shown", "omitted", "hidden"]:
        """How a thinking model's thought comes back: blocks, empty blocks, or not at all."""
        if self.thinking is not None and self.thinking.type == "disabled":
            return "hidden"
        if self.thinking is not None and self.thinking.display == "omitted":
            return "omitted"
        return "shown"


class OutputFormat(Request):
    type: Literal["json_schema"]
    schema_: dict[str, Any] = Field(alias="schema")

    @field_validator("schema_")
    @classmethod
    def _is_valid_schema(cls, schema: dict[str, Any]) -> dict[str, Any]:
        return checked_schema(schema)


class OutputConfig(Request):
    format: OutputFormat | None = Field(default=None, description="A text answer that is this "
                                        "JSON schema, held to it by a grammar while decoding.")
    effort: Any = Field(default=None, description=_REFUSED + "a local model has one effort.")


class MessagesMetadata(Request):
    user_id: str | None = Field(default=None, max_length=256)


class MessagesRequest(MessagesInput):
    model_config = examples(
        {"model": "smollm2-135m-instruct", "max_tokens": 16, "temperature": 0,
         "system": "You are a concise assistant.",
         "messages": [{"role": "user", "content": "What is the capital of France?"}]},
        {"model": "smollm2-135m-instruct", "max_tokens": 4, "temperature": 0, "stream": True,
         "messages": [{"role": "user", "content": "Say hello."}]},
    )

    max_tokens: int = Field(ge=1)
    stop_sequences: list[StopSequence] | None = Field(default=None,
                                                      max_length=MAX_STOP_SEQUENCES)
    temperature: float | None = Field(default=None, ge=0, le=1)
    top_p: float | None = Field(default=None, ge=0, le=1)
    top_k: int | None = Field(default=None, ge=0)
    metadata: MessagesMetadata | None = None
    stream: bool = False
    service_tier: Literal["auto", "standard_only"] | None = Field(
        default=None, description="Accepted: both are served by the one, standard, tier.")
    output_config: OutputConfig | None = None
    speed: Literal["standard", "fast"] | None = Field(
        default=None, description="`standard` is accepted; `fast` is refused.")
    inference_geo: Any = Field(default=None,
                               description=_REFUSED + "this server runs where it is.")

    def unhonoured(self) -> dict[str, str]:
        found = super().unhonoured()
        if self.speed == "fast":
            found["speed"] = "Fast mode is not available on this server."
        if self.inference_geo is not None:
            found["inference_geo"] = "This server cannot choose where inference runs."
        if self.output_config is not None and self.output_config.effort is not None:
            found["output_config.effort"] = "A local model has no effort levels."
        return found

    def to_engine(self, *, split_reasoning: bool = True,
                  images: ImageInputs | None = None) -> ChatRequest:
        self.refuse_unhonoured()
        tools = self.engine_tools()
        fmt = self.output_config.format if self.output_config is not None else None
        sampling = SamplingParams(
            max_tokens=self.max_tokens, temperature=self.temperature, top_p=self.top_p,
            top_k=self.top_k, stop=list(self.stop_sequences or ()),
            json_schema=fmt.schema_ if fmt is not None else None)
        single = self.tool_choice is not None and self.tool_choice.disable_parallel_tool_use
        return ChatRequest(messages=self.conversation(images), sampling=sampling, tools=tools,
                           tool_choice=self.engine_tool_choice(tools),
                           parallel_tool_calls=not single, split_reasoning=split_reasoning)


class CountTokensRequest(MessagesInput):
    model_config = examples(
        {"model": "smollm2-135m-instruct", "system": "You are a concise assistant.",
         "messages": [{"role": "user", "content": "What is the capital of France?"}]},
    )

    def to_engine(self) -> EngineTokenize:
        """The prompt exactly as /v1/messages would render it, tools included."""
        self.refuse_unhonoured()
        tools = self.engine_tools()
        return EngineTokenize(messages=self.conversation(), tools=tools,
                              tool_choice=self.engine_tool_choice(tools))
