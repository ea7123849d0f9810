"""Shapes the chat engine's events into Anthropic's Messages answers: the whole `message`, or
its server-sent events.

Blocks are made in the order the events come: a `thinking` block for reasoning, a `text` block
for text, a `tool_use` block per call, a new block whenever the kind changes. One `MessageShaper`
both collects the whole message and returns each event's stream events, so a streamed answer
assembles into exactly the message a whole answer gives.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any, Literal

from pocketserve.api.errors import anthropic_error_body
from pocketserve.errors import PocketserveError
from pocketserve.ops.chat import ChatEvent, ReasoningDelta, ToolCallDelta
from pocketserve.ops.common import Usage

Thinking = Literal["shown", "omitted", "hidden"]

_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use",
                 "content_filter": "refusal", "cancelled": "end_turn"}


def new_id(prefix: str) -> str:
    """An id in Anthropic's shape: `msg_`/`toolu_` and 24 characters."""
    return prefix + secrets.token_hex(12)


@dataclass
class _Block:
    kind: Literal["text", "thinking", "tool_use"]
    text: str = ""  # the text, the thought, or a call's input as JSON text
    id: str = ""
    name: str = ""

    def start(self) -> dict[str, Any]:
        if self.kind == "tool_use":
            return {"type": "tool_use", "id": self.id, "name": self.name, "input": {}}
        if self.kind == "thinking":
            return {"type": "thinking", "thinking": "", "signature": ""}
        return {"type": "text", "text": ""}

    def whole(self, thinking: Thinking) -> dict[str, Any]:
        if self.kind == "tool_use":
            return {"type": "tool_use", "id": self.id, "name": self.name,
                    "input": _input(self.text)}
        if self.kind == "thinking":
            return {"type": "thinking", "thinking": "" if thinking == "omitted" else self.text,
                    "signature": ""}
        return {"type": "text", "text": self.text}


def _input(arguments: str) -> dict[str, Any]:
    """A call's input as an object: its JSON text parsed ({} when the answer was cut off
    inside it, or held something else)."""
    try:
        value = json.loads(arguments or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


@dataclass
class MessageShaper:
    model: str
    thinking: Thinking = "shown"
    id: str = field(default_factory=lambda: new_id("msg_"))
    blocks: list[_Block] = field(default_factory=list)
    finish: str | None = None
    stop_sequence: str | None = None
    usage: Usage = field(default_factory=lambda: Usage(0, 0))
    _open: bool = False

    def add(self, event: ChatEvent) -> list[dict[str, Any]]:
        """Take one engine event; the stream events it makes."""
        if isinstance(event, Usage):
            self.usage = event
            return []
        if isinstance(event, ReasoningDelta):
            if self.thinking == "hidden":
                return []
            out = self._block("thinking")
            if event.text and self.thinking == "shown":
                self.blocks[-1].text += event.text
                out.append(self._delta({"type": "thinking_delta", "thinking": event.text}))
            return out
        if isinstance(event, ToolCallDelta):
            out = []
            if event.id is not None:  # a call's first delta: a block of its own
                out = self._block("tool_use", new=True, id="toolu_" + event.id.split("_")[-1],
                                  name=event.name or "")
            if event.arguments and self.blocks and self.blocks[-1].kind == "tool_use":
                self.blocks[-1].text += event.arguments
                out.append(self._delta({"type": "input_json_delta",
                                        "partial_json": event.arguments}))
            return out
        out = []
        if event.text:
            out = self._block("text")
            self.blocks[-1].text += event.text
            out.append(self._delta({"type": "text_delta", "text": event.text}))
        if event.finish_reason is not None:
            self.finish, self.stop_sequence = event.finish_reason, event.stop_sequence
        return out

    def _block(self, kind: Literal["text", "thinking", "tool_use"], *, new: bool = False,
               id: str = "", name: str = "") -> list[dict[str, Any]]:
        """Events that open a block of `kind` unless one is open (`new`: always)."""
        if self._open and not new and self.blocks[-1].kind == kind:
            return []
        out = self._close()
        self.blocks.append(_Block(kind, id=id, name=name))
        self._open = True
        out.append({"type": "content_block_start", "index": len(self.blocks) - 1,
                    "content_block": self.blocks[-1].start()})
        return out

    def _close(self) -> list[dict[str, Any]]:
        if not self._open:
            return []
        self._open = False
        return [{"type": "content_block_stop", "index": len(self.blocks) - 1}]

    def _delta(self, delta: dict[str, Any]) -> dict[str, Any]:
        return {"type": "content_block_delta", "index": len(self.blocks) - 1, "delta": delta}

    # -- the message ----------------------------------------------------------------------

    def stop_reason(self) -> str:
        if self.stop_sequence is not None:
            return "stop_sequence"
        if self.finish in ("stop", "tool_calls") and any(b.kind == "tool_use"
                                                         for b in self.blocks):
            return "tool_use"
        return _STOP_REASONS.get(self.finish or "stop", "end_turn")

    def usage_dict(self) -> dict[str, int]:
        """Anthropic counts prompt tokens read from the cache apart from the others."""
        u = self.usage
        return {"input_tokens": u.prompt_tokens - u.cached_tokens,
                "output_tokens": u.completion_tokens, "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": u.cached_tokens}

    def message(self) -> dict[str, Any]:
        return {"id": self.id, "type": "message", "role": "assistant", "model": self.model,
                "content": [b.whole(self.thinking) for b in self.blocks],
                "stop_reason": self.stop_reason(), "stop_sequence": self.stop_sequence,
                "usage": self.usage_dict()}

    def start(self) -> list[dict[str, Any]]:
        """The stream's first events: the message, empty and without its usage yet (the
        prompt's tokens are known at the end, in `message_delta`), then a ping."""
        head: dict[str, Any] = {
            "id": self.id, "type": "message", "role": "assistant", "model": self.model,
            "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": dict.fromkeys(self.usage_dict(), 0)}
        return [{"type": "message_start", "message": head}, {"type": "ping"}]

    def end(self) -> list[dict[str, Any]]:
        return [*self._close(),
                {"type": "message_delta",
                 "delta": {"stop_reason": self.stop_reason(),
                           "stop_sequence": self.stop_sequence},
                 "usage": self.usage_dict()},
                {"type": "message_stop"}]


async def whole_message(shaper: MessageShaper, source: AsyncIterator[ChatEvent]) -> dict[str, Any]:
    async with aclosing(source):  # type: ignore[type-var]
        async for event in source:
            shaper.add(event)
    return shaper.message()


async def message_events(shaper: MessageShaper,
                         source: AsyncIterator[ChatEvent]) -> AsyncIterator[dict[str, Any]]:
    """The stream's events as the engine's events arrive; a failure after the start ends it
    with an `error` event in Anthropic's envelope."""
    for item in shaper.start():
        yield item
    try:
        async with aclosing(source):  # type: ignore[type-var]
            async for event in source:
                for item in shaper.add(event):
                    yield item
    except PocketserveError as exc:  # after the start: the stream's last event says why
        yield anthropic_error_body(exc.status, exc.message, exc.param)
        return
    for item in shaper.end():
        yield item
