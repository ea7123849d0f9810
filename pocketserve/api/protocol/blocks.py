"""Anthropic's content blocks in a conversation, as the engine's chat messages.

One permissive `InputBlock` model holds every block type's fields; `conversation()` checks each
block for its role and turns it into the engine's shapes: text joins the message's text,
`tool_use` becomes an assistant's tool call (its `input` as JSON arguments), each `tool_result`
a `tool` message answering its call, and earlier `thinking` is left out of the prompt (as
Anthropic leaves out the thinking of earlier turns). A user's `image` blocks (base64 or URL
sources) become image parts; documents, and images inside tool results, are refused by name.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from pocketserve.api.protocol.chat import check_image_role, joined, refused_part
from pocketserve.api.protocol.common import Request
from pocketserve.errors import InvalidRequest
from pocketserve.images.inputs import ImageInputs
from pocketserve.ops.chat import ChatMessage, ImagePart, Part, TextPart, ToolCall

if TYPE_CHECKING:
    from pocketserve.api.protocol.messages import InputMessage

_MEDIA = ("document", "search_result", "container_upload")
_SKIPPED = ("thinking", "redacted_thinking")


class CacheControl(Request):
    type: Literal["ephemeral"]
    ttl: Literal["5m", "1h"] | None = None


class ImageSource(Request):
    """An image block's source: `base64` (`data`; the format is sniffed from the bytes, so
    `media_type` is only a label) or `url`. Other types (`file`) are refused."""

    type: str
    media_type: str | None = None
    data: str | None = None
    url: str | None = None


class InputBlock(Request):
    """One content block; which fields count depends on `type`: text (`text`), tool_use
    (`id`, `name`, `input`), tool_result (`tool_use_id`, `content`, `is_error`), thinking."""

    type: str
    text: str | None = None
    id: str | None = None
    name: str | None = None
    input: dict[str, Any] | None = None
    tool_use_id: str | None = None
    content: str | list[InputBlock] | None = None
    is_error: bool | None = None
    thinking: str | None = None
    signature: str | None = None
    source: ImageSource | None = None
    cache_control: CacheControl | None = Field(default=None, description="Accepted as a hint.")


def conversation(messages: Sequence[InputMessage],
                 images: ImageInputs | None = None) -> list[ChatMessage]:
    """The messages for the engine; image blocks go to `images` (refused when it is None)."""
    out: list[ChatMessage] = []
    for i, message in enumerate(messages):
        out += _converted(i, message.role, message.content, images)
    return out


def _converted(i: int, role: str, content: str | list[InputBlock],
               images: ImageInputs | None) -> list[ChatMessage]:
    """One message as chat messages: a user turn's tool results come first, as `tool`
    messages, then its text and images."""
    if isinstance(content, str):
        return [ChatMessage(role=role, content=content)]
    texts: list[Part] = []
    calls: list[ToolCall] = []
    results: list[ChatMessage] = []
    for j, block in enumerate(content):
        where = f"messages[{i}].content[{j}]"
        if block.type == "text":
            texts.append(TextPart(_required(block.text, f"{where}.text")))
        elif block.type == "image" and images is not None:
            texts.append(_image(block, role, where, images))
        elif block.type in (*_MEDIA, "image"):
            raise refused_part(block.type, where)
        elif block.type in _SKIPPED and role == "assistant":
            continue
        elif block.type == "tool_use" and role == "assistant":
            calls.append(ToolCall(id=_required(block.id, f"{where}.id"),
                                  name=_required(block.name, f"{where}.name"),
                                  arguments=json.dumps(block.input or {}, ensure_ascii=False)))
        elif block.type == "tool_result" and role == "user":
            results.append(ChatMessage(role="tool", content=_result_text(block, where),
                                       tool_call_id=_required(block.tool_use_id,
                                                              f"{where}.tool_use_id")))
        else:
            raise InvalidRequest(f"A {role} message cannot hold a content block of type "
                                 f"{block.type!r} here.", param=f"{where}.type")
    text = joined(texts, "\n")
    if role == "assistant" or text or not results:
        results.append(ChatMessage(role=role, content=text, tool_calls=calls))
    return results


def _image(block: InputBlock, role: str, where: str, images: ImageInputs) -> ImagePart:
    source = block.source
    if source is None:
        raise InvalidRequest(f"Missing required parameter: '{where}.source'.",
                             param=f"{where}.source")
    check_image_role(role, where)
    if source.type == "base64":
        return images.from_base64(_required(source.data, f"{where}.source.data"), "auto", where)
    if source.type == "url":
        return images.from_url(_required(source.url, f"{where}.source.url"), "auto", where)
    raise InvalidRequest(f"Image sources of type {source.type!r} are not supported: send "
                         "base64 or url.", param=f"{where}.source.type")


def _result_text(block: InputBlock, where: str) -> str:
    """A tool result's content as text; an error result says so, as the model must know."""
    content = block.content
    if isinstance(content, list):
        parts = []
        for k, inner in enumerate(content):
            if inner.type != "text":
                raise refused_part(inner.type, f"{where}.content[{k}]")
            parts.append(_required(inner.text, f"{where}.content[{k}].text"))
        content = "\n".join(parts)
    text = content or ""
    return f"Error: {text}" if block.is_error else text


def _required(value: str | None, param: str) -> str:
    if value is None:
        raise InvalidRequest(f"Missing required parameter: '{param}'.", param=param)
    return value
