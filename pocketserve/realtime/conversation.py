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

from pocketserve.ops.chat import ChatMessage, ToolCall
from pocketserve.realtime.errors import ClientError
from pocketserve.realtime.errors import field as get


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"


CALL, OUTPUT = "function_call", "function_call_output"
SPOKEN_MS_PER_CHAR = 65.0  # Piper at speed 1.0 says about 15 characters a second


@dataclass
class Item:
    """A message item, where `kind` is its content part's type (input_text, input_audio,
    output_text, output_audio); or a function call (`kind` CALL, `text` its arguments) or a
    call's result (`kind` OUTPUT, `text` the output), both with `call_id`."""

    id: str
    role: str
    kind: str
    text: str | None = None  # None: an audio transcript not yet known
    status: str = "completed"
    call_id: str | None = None
    name: str | None = None  # a function call's function
    transcript: asyncio.Future[str] | None = field(default=None, repr=False)
    # An answer's audio: [text handed to speech, ms of audio made of it, all made], in order.
    spoken: list[list[Any]] = field(default_factory=list, repr=False)

    def truncate(self, audio_end_ms: int) -> None:
        """Keep only the text whose audio was heard, up to `audio_end_ms`; in the sentence
        being said then, the share of its words that share of its audio carried. A sentence
        whose audio is still being made counts `SPOKEN_MS_PER_CHAR` for its length."""
        if self.kind != "output_audio":
            raise ClientError("Only an assistant's audio item can be truncated.",
                              param="item_id")
        lengths = [ms if done else max(ms, len(text.strip()) * SPOKEN_MS_PER_CHAR)
                   for text, ms, done in self.spoken]
        made = sum(ms for _, ms, _ in self.spoken)
        if audio_end_ms > made + 1:
            raise ClientError(f"'audio_end_ms' ({audio_end_ms}) is past the end of the item's "
                              f"audio ({made:.0f} ms).", param="audio_end_ms")
        heard, at = [], 0.0
        for (text, _, _), ms in zip(self.spoken, lengths, strict=True):
            if at + ms <= audio_end_ms:
                heard.append(text)
            else:
                words = str(text).split()
                share = (audio_end_ms - at) / ms if ms else 0.0
                lead = " " if str(text)[:1].isspace() else ""
                heard.append(lead + " ".join(words[:int(len(words) * share)]))
                break
            at += ms
        self.text = "".join(heard).strip()
        self.spoken = [[self.text, float(audio_end_ms), True]]

    def wire(self) -> dict[str, Any]:
        common = {"id": self.id, "object": "realtime.item", "status": self.status}
        if self.kind == CALL:
            return {**common, "type": CALL, "call_id": self.call_id, "name": self.name,
                    "arguments": self.text or ""}
        if self.kind == OUTPUT:
            return {**common, "type": OUTPUT, "call_id": self.call_id, "output": self.text or ""}
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
        """The chat history: calls join the assistant message before them (or one of their
        own), and each output answers its call as a `tool` message."""
        out = [ChatMessage(role="system", content=instructions)] if instructions else []
        for item in self.items:
            if item.kind == CALL:
                call = ToolCall(id=item.call_id or item.id, name=item.name or "",
                                arguments=item.text or "{}")
                if out and out[-1].role == "assistant":
                    out[-1].tool_calls.append(call)
                else:
                    out.append(ChatMessage(role="assistant", tool_calls=[call]))
            elif item.kind == OUTPUT:
                out.append(ChatMessage(role="tool", content=item.text or "",
                                       tool_call_id=item.call_id))
            elif item.text:
                out.append(ChatMessage(role=item.role, content=item.text))
        return out


def client_item(data: Any) -> tuple[Item, bytes | None]:
    """The item of `conversation.item.create`, and for a user's `input_audio` part its PCM
    (24 kHz PCM16), which the caller has transcribed."""
    where = "item"
    kind = get(data, "type", str, where, required=True)
    if kind in (CALL, OUTPUT):
        return _call_item(data, kind), None
    if kind != "message":
        raise ClientError(f"Invalid value for 'item.type': {kind!r}; use 'message', "
                          f"'{CALL}' or '{OUTPUT}'.", code="unsupported_item_type",
                          param="item.type")
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


def _call_item(data: dict[str, Any], kind: str) -> Item:
    """A function call (the client replaying one) or a call's output (its result)."""
    call_id = get(data, "call_id", str, "item", required=True)
    item_id = get(data, "id", str, "item") or new_id("item")
    if kind == OUTPUT:
        return Item(id=item_id, role="tool", kind=OUTPUT, call_id=call_id,
                    text=get(data, "output", str, "item", required=True))
    return Item(id=item_id, role="assistant", kind=CALL, call_id=call_id,
                name=get(data, "name", str, "item", required=True),
                text=get(data, "arguments", str, "item") or "{}")


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
