"""POST /v1/chat/completions request schema (OpenAI's CreateChatCompletionRequest)."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import Field, field_validator

from pocketserve.api.protocol.common import (
    Request,
    ResponseFormat,
    SamplingFields,
    examples,
    unsupported_content,
)
from pocketserve.api.protocol.tooling import (
    FUNCTION_NAME,
    engine_choice,
    object_schema,
    unique_tools,
)
from pocketserve.errors import InvalidRequest
from pocketserve.ops.chat import ChatMessage, ChatRequest, Tool, ToolCall, ToolChoice


class ContentPart(Request):
    type: str
    text: str | None = None


class FunctionCall(Request):
    name: str
    # A JSON string, as OpenAI sends it; an object from a sloppy client is taken as well.
    arguments: str | dict[str, Any] = ""


class MessageToolCall(Request):
    id: str | None = None  # some clients send null; one is made up for them
    type: Literal["function"] = "function"
    function: FunctionCall


class Message(Request):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[MessageToolCall] | None = None
    tool_call_id: str | None = None


class FunctionDefinition(Request):
    name: str = Field(pattern=FUNCTION_NAME)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None  # accepted; calls match their schema whenever it is enforced

    @field_validator("parameters")
    @classmethod
    def _object_schema(cls, schema: dict[str, Any] | None) -> dict[str, Any] | None:
        return object_schema(schema, "parameters")


class ToolDefinition(Request):
    type: Literal["function"]
    function: FunctionDefinition


class ChosenFunction(Request):
    name: str


class NamedToolChoice(Request):
    type: Literal["function"]
    function: ChosenFunction


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
    tools: list[ToolDefinition] | None = None
    tool_choice: Literal["auto", "none", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None

    def to_engine(self, *, split_reasoning: bool = True) -> ChatRequest:
        if self.top_logprobs and not self.logprobs:
            raise InvalidRequest("top_logprobs needs logprobs set to true", param="top_logprobs")
        sampling = self.sampling(
            max_tokens=self.max_completion_tokens or self.max_tokens, logprobs=self.logprobs,
            top_logprobs=self.top_logprobs or 0, response_format=self.response_format,
        )
        messages = [plain_message(i, m) for i, m in enumerate(self.messages)]
        tools = self.engine_tools()
        return ChatRequest(messages=messages, sampling=sampling, tools=tools,
                           tool_choice=self.engine_tool_choice(tools),
                           parallel_tool_calls=self.parallel_tool_calls is not False,
                           split_reasoning=split_reasoning)

    def engine_tools(self) -> list[Tool]:
        return unique_tools(
            (Tool(name=t.function.name, description=t.function.description,
                  parameters=t.function.parameters or {}, strict=bool(t.function.strict))
             for t in self.tools or ()),
            lambda i: f"tools[{i}].function.name")

    def engine_tool_choice(self, tools: list[Tool]) -> ToolChoice:
        """OpenAI's default is `auto` with tools and `none` without."""
        choice = self.tool_choice
        if isinstance(choice, NamedToolChoice):
            return engine_choice("named", choice.function.name, tools, param="tool_choice",
                                 name_param="tool_choice.function.name")
        return engine_choice(choice, None, tools, param="tool_choice",
                             name_param="tool_choice.function.name")


def plain_message(index: int, message: Message) -> ChatMessage:
    """One message with its text parts joined (other part types are refused by name) and its
    tool calls or the call it answers."""
    role = "system" if message.role == "developer" else message.role
    content: Any = message.content
    if isinstance(content, list):
        texts = []
        for j, part in enumerate(content):
            if part.type != "text" or part.text is None:
                raise unsupported_content(part.type, f"messages[{index}].content[{j}]")
            texts.append(part.text)
        content = "".join(texts)
    calls = [ToolCall(id=c.id or f"call_{index}_{j}", name=c.function.name,
                      arguments=c.function.arguments if isinstance(c.function.arguments, str)
                      else json.dumps(c.function.arguments))
             for j, c in enumerate(message.tool_calls or ())]
    return ChatMessage(role=role, content=content or "", name=message.name, tool_calls=calls,
                       tool_call_id=message.tool_call_id)
