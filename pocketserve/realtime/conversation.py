"""The conversation a session keeps: its items as clients see them, and as chat history.

User audio becomes an item as soon as its turn is committed, before Whisper has heard it; its
transcript is a future that a response waits for, so "commit, then response.create" answers
what was said even though transcription finishes later.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import secrets
from dataclasses import dataclass, field
from typing import Any

from pocketserve.ops.chat import ChatMessage
from pocketserve.realtime.errors import ClientError
from pocketserve.realtime.errors import field as get


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"


@dataclass
class Item:
    """A message item: `kind` is its content part's type (input_text, input_audio,
    output_text, output_audio)."""

    id: str
    role: str
    kind: str
    text: str | None = None  # None: an audio transcript not yet known
    status: str = "completed"
    transcript: asyncio.Future[str] | None = field(default=None, repr=False)

    def wire(self) -> dict[str, Any]:
        part: dict[str, Any] = {"type": self.kind}
        if self.kind in ("input_audio", "output_audio"):
            part.update(audio=None, transcript=self.text)
        else:
            part["text"] = self.text or ""
        return {"id": self.id, "object": "realtime.item", "type": "message",
                "status": self.status, "role": self.role, "content": [part]}


class Conversation:
    def __init__(self) -> None:
        self.items: list[Item] = []

    def add(self, item: Item, previous_item_id: str | None = None) -> str | None:
        """Insert after `previous_item_id` (default: at the end); returns the id before it."""
        at = len(self.items)
        if previous_item_id is not None:
            at = self.index(previous_item_id, "previous_item_id") + 1
        self.items.insert(at, item)
        return self.items[at - 1].id if at else None

    def index(self, item_id: str, param: str = "item_id") -> int:
        for i, item in enumerate(self.items):
            if item.id == item_id:
                return i
        raise ClientError(f"Item with item_id '{item_id}' not found in the conversation.",
                          code="item_not_found", param=param)

    def last_id(self) -> str | None:
        return self.items[-1].id if self.items else None

    async def transcripts(self) -> None:
        """Wait until every user audio item has its transcript."""
        pending = [i.transcript for i in self.items if i.transcript is not None]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    def messages(self, instructions: str) -> list[ChatMessage]:
        out = [ChatMessage(role="system", content=instructions)] if instructions else []
        for item in self.items:
            if item.text:
                out.append(ChatMessage(role=item.role, content=item.text))
        return out


def client_item(data: Any) -> tuple[Item, bytes | None]:
    """The item of `conversation.item.create`, and for a user's `input_audio` part its PCM
    (24 kHz PCM16), which the caller has transcribed."""
    where = "item"
    kind = get(data, "type", str, where, required=True)
    if kind != "message":
        raise ClientError(f"Items of type {kind!r} are not supported yet; send a 'message'.",
                          code="unsupported_item_type", param="item.type")
    role = get(data, "role", str, where, required=True)
    if role not in ("user", "assistant", "system"):
        raise ClientError(f"Invalid value for 'item.role': {role!r}.", param="item.role")
    content = get(data, "content", list, where, required=True)
    texts = []
    for i, part in enumerate(content):
        where_part = f"item.content[{i}]"
        part_type = get(part, "type", str, where_part, required=True)
        if part_type in ("input_text", "output_text", "text"):
            texts.append(get(part, "text", str, where_part, required=True))
        elif part_type in ("input_audio", "output_audio", "audio"):
            transcript = get(part, "transcript", str, where_part)
            audio = get(part, "audio", str, where_part)
            if transcript is None and audio is not None and role == "user" and len(content) == 1:
                return (Item(id=get(data, "id", str, where) or new_id("item"), role="user",
                             kind="input_audio"), pcm16(audio, f"{where_part}.audio"))
            if transcript is None:
                raise ClientError("An audio part needs its 'transcript', or base64 'audio' as "
                                  "the only part of a user message.",
                                  code="unsupported_content_type", param=f"{where_part}.audio")
            texts.append(transcript)
        else:
            raise ClientError(f"Content of type {part_type!r} is not supported.",
                              code="unsupported_content_type", param=f"{where_part}.type")
    item_id = get(data, "id", str, where) or new_id("item")
    kind_out = "output_text" if role == "assistant" else "input_text"
    return Item(id=item_id, role=role, kind=kind_out, text="".join(texts)), None


def pcm16(data: str, param: str) -> bytes:
    """Base64 PCM16 as bytes; a ClientError naming `param` when it is not."""
    try:
        pcm = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ClientError(f"Invalid '{param}': it must be base64-encoded PCM16.",
                          code="invalid_base64", param=param) from None
    if len(pcm) % 2:
        raise ClientError(f"Invalid '{param}': PCM16 needs an even number of bytes.",
                          param=param)
    return pcm
