"""Anthropic's content blocks in a conversation, as the engine's chat messages.

One permissive `InputBlock` model holds every block type's fields; `conversation()` checks each
block for its role and turns it into the engine's shapes: text joins the message's text,
`tool_use` becomes an assistant's tool call (its `input` as JSON arguments), each `tool_result`
a `tool` message answering its call, and earlier `thinking` is left out of the prompt (as
Anthropic leaves out the thinking of earlier turns). Images and documents get the refusal chat
gives for a model that cannot read them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from pocketserve.api.protocol.chat import refused_part
from pocketserve.api.protocol.common import Request
from pocketserve.errors import InvalidRequest
from pocketserve.ops.chat import ChatMessage, ToolCall

if TYPE_CHECKING:
    from pocketserve.api.protocol.messages import InputMessage

_MEDIA = ("image", "document", "search_result", "container_upload")
_SKIPPED = ("thinking", "redacted_thinking")


class CacheControl(Request):
    type: Literal["ephemeral"]
    ttl: Literal["5m", "1h"] | None = None


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
    cache_control: CacheControl | None = Field(default=None, description="Accepted as a hint.")


def conversation(messages: Sequence[InputMessage]) -> list[ChatMessage]:
    out: list[ChatMessage] = []
    for i, message in enumerate(messages):
        out += _converted(i, message.role, message.content)
    return out


def _converted(i: int, role: str, content: str | list[InputBlock]) -> list[ChatMessage]:
    """One message as chat messages: a user turn's tool results come first, as `tool`
    messages, then its text."""
    if isinstance(content, str):
        return [ChatMessage(role=role, content=content)]
    texts: list[str] = []
    calls: list[ToolCall] = []
    results: list[ChatMessage] = []
    for j, block in enumerate(content):
        where = f"messages[{i}].content[{j}]"
        if block.type == "text":
            texts.append(_required(block.text, f"{where}.text"))
        elif block.type in _MEDIA:
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
    text = "\n".join(texts)
    if role == "assistant" or text or not results:
        results.append(ChatMessage(role=role, content=text, tool_calls=calls))
    return results


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
