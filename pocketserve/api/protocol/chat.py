"""POST /v1/chat/completions request schema (OpenAI's CreateChatCompletionRequest)."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import Field, field_validator

from pocketserve.api.protocol.common import (
    Request,
    ResponseFormat,
    SamplingFields,
    checked_schema,
    examples,
)
from pocketserve.errors import InvalidRequest
from pocketserve.images.inputs import ImageInputs
from pocketserve.ops.chat import (
    ChatMessage,
    ChatRequest,
    ImagePart,
    Part,
    TextPart,
    Tool,
    ToolCall,
    ToolChoice,
)

# OpenAI's rule for function names.
FUNCTION_NAME = r"^[a-zA-Z0-9_-]{1,64}$"


class ImageURL(Request):
    url: str = Field(description="A base64 `data:` URL, or an http(s) URL where the server "
                     "fetches images (image_fetch_enabled).")
    detail: Literal["auto", "low", "high"] = "auto"


class ContentPart(Request):
    type: str
    text: str | None = None
    image_url: str | ImageURL | None = Field(
        default=None, description="For `image_url` parts: `{url, detail}`, or the URL alone.")


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

    def to_engine(self, *, split_reasoning: bool = True,
                  images: ImageInputs | None = None) -> ChatRequest:
        """The engine's request; its image parts are recorded in `images` (to be loaded by the
        route), and refused when `images` is None."""
        if self.top_logprobs and not self.logprobs:
            raise InvalidRequest("top_logprobs needs logprobs set to true", param="top_logprobs")
        sampling = self.sampling(
            max_tokens=self.max_completion_tokens or self.max_tokens, logprobs=self.logprobs,
            top_logprobs=self.top_logprobs or 0, response_format=self.response_format,
        )
        messages = [plain_message(i, m, images) for i, m in enumerate(self.messages)]
        tools = self.engine_tools()
        return ChatRequest(messages=messages, sampling=sampling, tools=tools,
                           tool_choice=self.engine_tool_choice(tools),
                           parallel_tool_calls=self.parallel_tool_calls is not False,
                           split_reasoning=split_reasoning)

    def engine_tools(self) -> list[Tool]:
        return engine_tools([t.function for t in self.tools or ()], "tools[{}].function.name")

    def engine_tool_choice(self, tools: list[Tool]) -> ToolChoice:
        choice = self.tool_choice
        if isinstance(choice, NamedToolChoice):
            return forced_function(choice.function.name, tools, "tool_choice.function.name")
        return tool_mode(choice, tools)


def engine_tools(functions: list[FunctionDefinition], name_param: str) -> list[Tool]:
    """The declared functions as the engine's tools; a name declared twice is a 400 naming
    the second (`name_param` with `{}` for its index)."""
    tools: list[Tool] = []
    for i, f in enumerate(functions):
        if any(seen.name == f.name for seen in tools):
            raise InvalidRequest(f"The function name {f.name!r} is declared twice.",
                                 param=name_param.format(i))
        tools.append(Tool(name=f.name, description=f.description,
                          parameters=f.parameters or {}, strict=bool(f.strict)))
    return tools


def tool_mode(choice: str | None, tools: list[Tool], param: str = "tool_choice") -> ToolChoice:
    """OpenAI's default is `auto` with tools and `none` without; `required` needs tools."""
    if choice is None:
        return "auto" if tools else "none"
    if choice in ("auto", "none"):
        return choice
    if not tools:
        raise InvalidRequest(f"{param} asks for a tool call, but no tools are given.",
                             param=param)
    return "required"


def forced_function(name: str, tools: list[Tool], param: str) -> ToolChoice:
    """A named function to call, which must be declared."""
    if not tools:
        raise InvalidRequest("tool_choice asks for a tool call, but no tools are given.",
                             param="tool_choice")
    if all(t.name != name for t in tools):
        raise InvalidRequest(f"tool_choice names the function {name!r}, which is not declared "
                             "in tools.", param=param)
    return name


def plain_message(index: int, message: Message, images: ImageInputs | None = None) -> ChatMessage:
    """One message with its text parts joined, its images (user messages only) recorded in
    `images` (other part types are refused by name), and its tool calls or the call it
    answers."""
    role = "system" if message.role == "developer" else message.role
    content: Any = message.content
    if isinstance(content, list):
        parts: list[Part] = []
        for j, part in enumerate(content):
            where = f"messages[{index}].content[{j}]"
            if part.type == "text" and part.text is not None:
                parts.append(TextPart(part.text))
            elif part.type == "image_url" and images is not None:
                parts.append(_image(part, role, where, images))
            else:
                raise refused_part(part.type, where)
        content = joined(parts)
    calls = [ToolCall(id=c.id or f"call_{index}_{j}", name=c.function.name,
                      arguments=c.function.arguments if isinstance(c.function.arguments, str)
                      else json.dumps(c.function.arguments))
             for j, c in enumerate(message.tool_calls or ())]
    return ChatMessage(role=role, content=content or "", name=message.name, tool_calls=calls,
                       tool_call_id=message.tool_call_id)


def _image(part: ContentPart, role: str, where: str, images: ImageInputs) -> ImagePart:
    if part.image_url is None:
        raise InvalidRequest(f"Missing required parameter: '{where}.image_url'.",
                             param=f"{where}.image_url", code="missing")
    check_image_role(role, where)
    url = part.image_url
    if isinstance(url, ImageURL):
        return images.from_url(url.url, url.detail, where)
    return images.from_url(url, "auto", where)


def check_image_role(role: str, where: str) -> None:
    """Images come from the user: chat templates place them only in user turns."""
    if role != "user":
        raise InvalidRequest(f"Images are taken only in user messages; {where} is in a "
                             f"{role} message.", param=where)


def joined(parts: list[Part], sep: str = "") -> str | list[Part]:
    """Text parts as one string (`sep` between them) when there is no image; else the parts in
    order, neighbouring texts joined."""
    if not any(isinstance(p, ImagePart) for p in parts):
        return sep.join(p.text for p in parts if isinstance(p, TextPart))
    out: list[Part] = []
    for part in parts:
        last = out[-1] if out else None
        if isinstance(part, TextPart) and isinstance(last, TextPart):
            out[-1] = TextPart(last.text + sep + part.text)
        else:
            out.append(part)
    return out


def object_schema(schema: dict[str, Any] | None, field: str) -> dict[str, Any] | None:
    """A tool's parameters (`field`): a valid JSON schema of an object, else ValueError,
    which the API answers as a 400 naming the field."""
    if schema is None:
        return None
    if schema.get("type", "object") != "object":
        raise ValueError(f"{field} must be the JSON schema of an object")
    return checked_schema(schema)


def refused_part(kind: str, param: str) -> InvalidRequest:
    """The 400 for a content part the server cannot read here (audio, files; images where
    they cannot go, e.g. inside a tool result)."""
    return InvalidRequest(f"content part of type {kind!r} is not supported here",
                          param=param)
