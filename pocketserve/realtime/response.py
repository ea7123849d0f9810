"""One response: chat text streamed as deltas, and in audio mode spoken as it is written.

In audio mode the transcript deltas go out as the chat model writes them; each run of complete
sentences is handed to the speech model (`SPEECH`, raw 24 kHz PCM) while the chat model goes
on, so the first audio leaves after the first sentence instead of after the whole answer.
Cancelling the task (response.cancel, or the user speaking over it) closes both streams, which
stops both workers at their next step, and still sends the closing events with status
`cancelled`: clients wait for `response.done`.

With tools, each call the model makes is an output item of its own (`function_call`, its
arguments streamed as `response.function_call_arguments.delta`), and the message item is opened
only when text comes, so an answer that only calls a function has no empty message.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pocketserve.errors import PocketserveError
from pocketserve.ops.chat import ChatRequest, SamplingParams, Tool, ToolCallDelta, ToolChoice
from pocketserve.ops.common import Usage
from pocketserve.realtime.conversation import CALL, Conversation, Item, new_id
from pocketserve.voice.reply import Models, Speaking, SpokenReply

__all__ = ["Models", "ResponseParams", "ResponseRun", "Send", "error_event"]

Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass
class ResponseParams:
    chat_model: str
    speech_model: str
    audio: bool
    instructions: str
    max_output_tokens: int | None
    voice: str
    speed: float
    in_conversation: bool = True
    token_cap: int = 1024
    temperature: float | None = None
    tools: list[Tool] = field(default_factory=list)
    tool_choice: ToolChoice = "auto"


class ResponseRun:
    def __init__(self, models: Models, send: Send, conversation: Conversation,
                 params: ResponseParams):
        self.models = models
        self.send = send
        self.conversation = conversation
        self.params = params
        self.id = new_id("resp")
        self.item = Item(id=new_id("item"), role="assistant",
                         kind="output_audio" if params.audio else "output_text", text="",
                         status="in_progress")
        self.cancel_reason: str | None = None
        self.finishing = False
        self._usage = Usage(0)
        self._audio_tokens = 0
        self._item_sent = False
        self.outputs: list[Item] = []  # output items in order: the message, function calls
        self._calls: dict[int, Item] = {}  # by the model's call index

    async def run(self) -> None:
        status: str = "completed"
        details: dict[str, Any] | None = None
        await self.send({"type": "response.created", "response": self._wire("in_progress")})
        try:
            await self.conversation.transcripts()
            messages = self.conversation.messages(self.params.instructions)
            if not self.params.tools:
                await self._open_item()
            limit = self.params.max_output_tokens or self.params.token_cap
            await self._generate(ChatRequest(
                messages=messages, tools=self.params.tools,
                tool_choice=self.params.tool_choice if self.params.tools else "none",
                sampling=SamplingParams(max_tokens=limit, temperature=self.params.temperature)))
        except asyncio.CancelledError:
            status = "cancelled"
            details = {"type": "cancelled", "reason": self.cancel_reason or "client_cancelled"}
        except PocketserveError as exc:
            status = "failed"
            details = {"type": "failed", "error": {"type": exc.kind, "code": exc.code}}
            await self.send(error_event(exc.message, exc.kind, exc.code or "response_failed",
                                        exc.param))
        self.finishing = True
        await self._close_item(status)
        for call in self._calls.values():
            await self._close_call(call, status)
        await self.send({"type": "response.done", "response": self._wire(status, details)})

    async def _open_item(self) -> None:
        if self.params.in_conversation:
            self.conversation.add(self.item)
        self._item_sent = True
        self.outputs.append(self.item)
        await self.send({"type": "response.output_item.added", "response_id": self.id,
                         "output_index": self._index(self.item), "item": self.item.wire()})
        if self.params.in_conversation:
            await self.send({"type": "conversation.item.added", "item": self.item.wire(),
                             "previous_item_id": self._previous_id()})
        await self.send({**self._where(), "type": "response.content_part.added",
                         "part": self._part()})

    async def _close_item(self, status: str) -> None:
        if not self._item_sent:
            return
        self.item.status = "completed" if status == "completed" else "incomplete"
        text = self.item.text or ""
        if self.params.audio:
            await self.send({**self._where(), "type": "response.output_audio.done"})
            await self.send({**self._where(), "type": "response.output_audio_transcript.done",
                             "transcript": text})
        else:
            await self.send({**self._where(), "type": "response.output_text.done",
                             "text": text})
        await self.send({**self._where(), "type": "response.content_part.done",
                         "part": self._part()})
        await self._item_done(self.item)

    async def _item_done(self, item: Item) -> None:
        await self.send({"type": "response.output_item.done", "response_id": self.id,
                         "output_index": self._index(item), "item": item.wire()})
        if self.params.in_conversation:
            await self.send({"type": "conversation.item.done", "item": item.wire(),
                             "previous_item_id": self._previous_id(item)})

    async def _call_delta(self, event: ToolCallDelta) -> None:
        call = self._calls.get(event.call_index)
        if call is None:
            call = Item(id=new_id("item"), role="assistant", kind=CALL, text="",
                        status="in_progress", call_id=event.id or new_id("call"),
                        name=event.name or "")
            self._calls[event.call_index] = call
            self.outputs.append(call)
            if self.params.in_conversation:
                self.conversation.add(call)
            await self.send({"type": "response.output_item.added", "response_id": self.id,
                             "output_index": self._index(call), "item": call.wire()})
            if self.params.in_conversation:
                await self.send({"type": "conversation.item.added", "item": call.wire(),
                                 "previous_item_id": self._previous_id(call)})
        if event.arguments:
            call.text = (call.text or "") + event.arguments
            await self.send({"type": "response.function_call_arguments.delta",
                             "response_id": self.id, "item_id": call.id,
                             "output_index": self._index(call), "call_id": call.call_id,
                             "delta": event.arguments})

    async def _close_call(self, call: Item, status: str) -> None:
        call.status = "completed" if status == "completed" else "incomplete"
        await self.send({"type": "response.function_call_arguments.done",
                         "response_id": self.id, "item_id": call.id,
                         "output_index": self._index(call), "call_id": call.call_id,
                         "name": call.name, "arguments": call.text or ""})
        await self._item_done(call)

    async def _generate(self, request: ChatRequest) -> None:
        """The shared spoken-reply pipeline (voice/reply.py), sent as realtime events."""
        delta_type = ("response.output_audio_transcript.delta" if self.params.audio
                      else "response.output_text.delta")

        async def text(delta: str) -> None:
            if not self._item_sent:  # with tools, the message opens with its first text
                await self._open_item()
            self.item.text = (self.item.text or "") + delta
            await self.send({**self._where(), "type": delta_type, "delta": delta})

        async def audio(pcm: bytes) -> None:
            await self.send({**self._where(), "type": "response.output_audio.delta",
                             "delta": base64.b64encode(pcm).decode()})

        reply = SpokenReply(self.models, text, audio, on_call=self._call_delta,
                            spoken=self.item.spoken)
        speaking = (Speaking(self.params.speech_model, self.params.voice, self.params.speed)
                    if self.params.audio else None)
        try:
            await reply.run(self.params.chat_model, request, speaking)
        finally:
            self._usage = reply.usage
            self._audio_tokens = reply.audio_tokens

    def _where(self) -> dict[str, Any]:
        return {"response_id": self.id, "item_id": self.item.id,
                "output_index": self._index(self.item), "content_index": 0}

    def _index(self, item: Item) -> int:
        return next(i for i, out in enumerate(self.outputs) if out is item)

    def _part(self) -> dict[str, Any]:
        if self.params.audio:
            return {"type": "audio", "transcript": self.item.text or ""}
        return {"type": "text", "text": self.item.text or ""}

    def _previous_id(self, item: Item | None = None) -> str | None:
        items = self.conversation.items
        wanted = (item or self.item).id
        at = next((i for i, candidate in enumerate(items) if candidate.id == wanted), 0)
        return items[at - 1].id if at else None

    def _wire(self, status: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
        done = status != "in_progress"
        text_out = self._usage.completion_tokens
        usage = None if not done else {
            "total_tokens": self._usage.prompt_tokens + text_out + self._audio_tokens,
            "input_tokens": self._usage.prompt_tokens,
            "output_tokens": text_out + self._audio_tokens,
            "input_token_details": {"text_tokens": self._usage.prompt_tokens,
                                    "audio_tokens": 0, "image_tokens": 0,
                                    "cached_tokens": self._usage.cached_tokens},
            "output_token_details": {"text_tokens": text_out,
                                     "audio_tokens": self._audio_tokens},
        }
        return {
            "object": "realtime.response", "id": self.id, "status": status,
            "status_details": details,
            "output": [item.wire() for item in self.outputs] if done else [],
            "conversation_id": "conv_default" if self.params.in_conversation else None,
            "output_modalities": ["audio"] if self.params.audio else ["text"],
            "max_output_tokens": self.params.max_output_tokens or "inf",
            "audio": {"output": {"format": {"type": "audio/pcm", "rate": 24_000},
                                 "voice": self.params.voice}},
            "usage": usage, "metadata": None,
        }


def error_event(message: str, kind: str = "invalid_request_error", code: str | None = None,
                param: str | None = None, event_id: str | None = None) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "code": code, "message": message,
                                       "param": param, "event_id": event_id}}
