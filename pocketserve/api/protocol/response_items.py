"""The Responses API's input items, checked one by one and turned into the chat engine's messages.

Items arrive as a list of differently shaped objects (messages with text parts, function calls,
function call outputs, earlier reasoning, and many kinds pocketserve cannot serve). Each is
checked against its own model by hand, so a 400 names the exact place (`input[2].call_id`) and
an unsupported kind is refused by name (`input[1].type`). The models double as the schema
/openapi.json documents for `input`.
"""

from __future__ import annotations

import secrets
from typing import Any, Literal

from pydantic import Field, ValidationError

from pocketserve.api.protocol.chat import check_image_role, joined, refused_part
from pocketserve.api.protocol.common import Request
from pocketserve.errors import InvalidRequest
from pocketserve.images.inputs import ImageInputs
from pocketserve.ops import chat as ops
from pocketserve.ops.chat import ChatMessage, ImagePart, TextPart, ToolCall

Status = Literal["in_progress", "completed", "incomplete"]


class InputText(Request):
    type: Literal["input_text"]
    text: str


class OutputText(Request):
    """Text the assistant wrote earlier (as a response's output gives it back)."""

    type: Literal["output_text"]
    text: str
    annotations: list[Any] = Field(default_factory=list)


class Refusal(Request):
    type: Literal["refusal"]
    refusal: str


class InputImage(Request):
    """An image for a model that sees: `image_url` a base64 data: URL or an http(s) URL
    (fetched where the server allows it). `file_id` is refused: there is no Files API."""

    type: Literal["input_image"]
    image_url: str | None = None
    file_id: str | None = None
    detail: Literal["low", "high", "auto", "original"] = "auto"


class InputFile(Request):
    type: Literal["input_file"]
    file_id: str | None = None
    file_data: str | None = None
    file_url: str | None = None
    filename: str | None = None


Part = InputText | OutputText | Refusal | InputImage | InputFile
_PARTS: dict[str, type[Request]] = {"input_text": InputText, "output_text": OutputText,
                                      "refusal": Refusal, "input_image": InputImage,
                                      "input_file": InputFile}


class MessageItem(Request):
    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[Part]
    id: str | None = None
    status: Status | None = None


class FunctionCallItem(Request):
    type: Literal["function_call"]
    call_id: str = Field(min_length=1)
    name: str
    arguments: str
    id: str | None = None
    status: Status | None = None


class FunctionCallOutputItem(Request):
    type: Literal["function_call_output"]
    call_id: str = Field(min_length=1, max_length=64)
    output: str | list[InputText | InputImage | InputFile]
    id: str | None = None
    status: Status | None = None


class ReasoningItem(Request):
    """Earlier thinking: accepted, and left out of the prompt, as chat templates drop the
    thoughts of earlier turns."""

    type: Literal["reasoning"]
    id: str | None = None
    summary: list[dict[str, Any]] = Field(default_factory=list)
    content: list[dict[str, Any]] | None = None


InputItem = MessageItem | FunctionCallItem | FunctionCallOutputItem | ReasoningItem
_ITEMS: dict[str, type[Request]] = {"message": MessageItem, "function_call": FunctionCallItem,
                                    "function_call_output": FunctionCallOutputItem,
                                    "reasoning": ReasoningItem}
_PREFIX = {"message": "msg", "function_call": "fc", "function_call_output": "fco",
           "reasoning": "rs"}


def new_id(kind: str) -> str:
    """An id in OpenAI's style: a kind prefix and 48 hex digits."""
    return f"{kind}_{secrets.token_hex(24)}"


def parse_items(raw: str | list[Any], where: str = "input") -> list[Request]:
    """The input as checked items: a string is one user message."""
    if isinstance(raw, str):
        return [MessageItem(role="user", content=raw)]
    return [_item(item, f"{where}[{i}]") for i, item in enumerate(raw)]


def _item(raw: Any, where: str) -> Request:
    if not isinstance(raw, dict):
        raise InvalidRequest(f"Invalid value for '{where}': an input item must be an object.",
                             param=where)
    kind = raw.get("type", "message" if "role" in raw else None)
    model = _ITEMS.get(kind) if isinstance(kind, str) else None
    if kind is None:
        raise InvalidRequest(f"Missing required parameter: '{where}.type' (or a `role`, for "
                             "a message).", param=f"{where}.type")
    if model is None:
        raise InvalidRequest(
            f"Input items of type {kind!r} are not supported: pocketserve takes messages, "
            "function_call, function_call_output and reasoning items.", param=f"{where}.type")
    if model is MessageItem and isinstance(raw.get("content"), list):
        for j, part in enumerate(raw["content"]):
            _part(part, f"{where}.content[{j}]")
    return _validated(model, raw, where)


def _part(raw: Any, where: str) -> None:
    kind = raw.get("type") if isinstance(raw, dict) else None
    model = _PARTS.get(kind) if isinstance(kind, str) else None
    if model is None:
        raise InvalidRequest(f"Invalid value for '{where}.type': content parts are "
                             "input_text, output_text, refusal, input_image or input_file.",
                             param=f"{where}.type")
    _validated(model, raw, where)


def _validated(model: type[Request], raw: dict[str, Any], where: str) -> Request:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        param = where + "".join(f"[{p}]" if isinstance(p, int) else f".{p}"
                                for p in error["loc"] if not _branch(p))
        if error["type"] == "missing":
            raise InvalidRequest(f"Missing required parameter: '{param}'.", param=param,
                                 code="missing") from None
        raise InvalidRequest(f"Invalid value for '{param}': {error['msg']}.", param=param,
                             code=error["type"]) from None


def _branch(part: Any) -> bool:
    """Pydantic's union-branch labels in an error location (`list[...]`, `str`, a model's
    class name); field names are lower case."""
    return isinstance(part, str) and (any(c in part for c in "[]()") or part == "str"
                                      or part[:1].isupper())


# -- to the chat engine ---------------------------------------------------------------------


def to_messages(items: list[Request], where: str = "input",
                images: ImageInputs | None = None) -> list[ChatMessage]:
    """The items as chat messages: function calls join the assistant message before them,
    outputs become `tool` messages, reasoning is left out; images go to `images` (refused
    when it is None)."""
    messages: list[ChatMessage] = []
    names: dict[str, str] = {}
    for i, item in enumerate(items):
        if isinstance(item, MessageItem):
            role = "system" if item.role == "developer" else item.role
            messages.append(ChatMessage(role=role,
                                        content=_content(item, f"{where}[{i}]", images)))
        elif isinstance(item, FunctionCallItem):
            names[item.call_id] = item.name
            call = ToolCall(id=item.call_id, name=item.name, arguments=item.arguments)
            last = messages[-1] if messages else None
            if last is not None and last.role == "assistant" and last.tool_call_id is None:
                last.tool_calls.append(call)
            else:
                messages.append(ChatMessage(role="assistant", content="", tool_calls=[call]))
        elif isinstance(item, FunctionCallOutputItem):
            messages.append(ChatMessage(role="tool", content=_output(item, f"{where}[{i}]"),
                                        name=names.get(item.call_id),
                                        tool_call_id=item.call_id))
    return messages


def _content(item: MessageItem, where: str,
             images: ImageInputs | None) -> str | list[ops.Part]:
    if isinstance(item.content, str):
        return item.content
    parts: list[ops.Part] = []
    for j, part in enumerate(item.content):
        if isinstance(part, InputText | OutputText):
            parts.append(TextPart(part.text))
        elif isinstance(part, Refusal):
            parts.append(TextPart(part.refusal))
        elif isinstance(part, InputImage) and images is not None:
            parts.append(_image(part, item.role, f"{where}.content[{j}]", images))
        else:
            raise refused_part(part.type, f"{where}.content[{j}]")
    return joined(parts)


def _image(part: InputImage, role: str, where: str, images: ImageInputs) -> ImagePart:
    if part.file_id is not None:
        raise InvalidRequest(f"{where}.file_id cannot be read: this server has no Files API; "
                             "send the image as image_url.", param=f"{where}.file_id")
    if part.image_url is None:
        raise InvalidRequest(f"Missing required parameter: '{where}.image_url'.",
                             param=f"{where}.image_url", code="missing")
    check_image_role(role, where)
    return images.from_url(part.image_url, part.detail, where)


def _output(item: FunctionCallOutputItem, where: str) -> str:
    if isinstance(item.output, str):
        return item.output
    texts = []
    for j, part in enumerate(item.output):
        if not isinstance(part, InputText):
            raise refused_part(part.type, f"{where}.output[{j}]")
        texts.append(part.text)
    return "".join(texts)


# -- as stored ------------------------------------------------------------------------------


def stored_items(items: list[Request]) -> list[dict[str, Any]]:
    """The items as input_items lists them (and a later previous_response_id reads them back):
    each with an id and a status, message text as parts."""
    out = []
    for item in items:
        data = item.model_dump(exclude_none=True)
        kind = data["type"]
        data["id"] = data.get("id") or new_id(_PREFIX[kind])
        if kind != "reasoning":
            data["status"] = data.get("status") or "completed"
        if kind == "message" and isinstance(data["content"], str):
            part = "output_text" if data["role"] == "assistant" else "input_text"
            data["content"] = [{"type": part, "text": data["content"],
                                **({"annotations": []} if part == "output_text" else {})}]
        out.append(data)
    return out
