"""One Realtime session: client events in, server events out, over an abstract transport.

Every outgoing event goes through one queue and one writer task, so a response's deltas, the
listener's turn events and the answers to client events never interleave inside a message, and
cancelling a task never cuts a send in half. A client event that cannot be served is answered
with an `error` event naming its `event_id`, and the session goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from pocketserve.errors import PocketserveError
from pocketserve.realtime.audio_input import AudioInput
from pocketserve.realtime.config import SessionConfig, max_tokens
from pocketserve.realtime.conversation import Conversation, Item, client_item, new_id, pcm16
from pocketserve.realtime.errors import ClientError, parse_event
from pocketserve.realtime.errors import field as get
from pocketserve.realtime.response import Models, ResponseParams, ResponseRun, error_event
from pocketserve.realtime.tools import check_choice, parse_choice, parse_tools

log = logging.getLogger("pocketserve.realtime")

# Server events the beta (`OpenAI-Beta: realtime=v1`) named otherwise; the rest kept their names.
BETA_NAMES = {
    "response.output_text.delta": "response.text.delta",
    "response.output_text.done": "response.text.done",
    "response.output_audio.delta": "response.audio.delta",
    "response.output_audio.done": "response.audio.done",
    "response.output_audio_transcript.delta": "response.audio_transcript.delta",
    "response.output_audio_transcript.done": "response.audio_transcript.done",
    "conversation.item.added": "conversation.item.created",
}


class Transport(Protocol):
    async def receive(self) -> str | bytes | None:
        """The next message; None once the client has gone."""
        ...

    async def send(self, text: str) -> None: ...

    async def close(self, code: int, reason: str) -> None: ...


Handler = Callable[[dict[str, Any]], Awaitable[None]]


class RealtimeSession:
    def __init__(self, models: Models, transport: Transport, config: SessionConfig,
                 idle_timeout_s: float | None = None, beta: bool = False):
        self.models = models
        self.beta = beta  # send the beta's event names
        self.transport = transport
        self.config = config
        self.idle_timeout_s = idle_timeout_s
        self.conversation = Conversation()
        self.audio = AudioInput(models, self.send, self.conversation, self._speech_started,
                                self._turn_done)
        self._outbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._run: ResponseRun | None = None
        self._response: asyncio.Task[None] | None = None
        self._idle = False
        self._handlers: dict[str, Handler] = {
            "session.update": self._session_update,
            "transcription_session.update": self._session_update,  # the beta's name
            "input_audio_buffer.append": self._append,
            "input_audio_buffer.commit": lambda e: self.audio.commit(),
            "input_audio_buffer.clear": self._clear,
            "conversation.item.create": self._item_create,
            "conversation.item.delete": self._item_delete,
            "conversation.item.retrieve": self._item_retrieve,
            "conversation.item.truncate": self._item_truncate,
            "response.create": self._response_create,
            "response.cancel": self._response_cancel,
        }

    async def send(self, event: dict[str, Any]) -> None:
        if self.beta and event["type"] in BETA_NAMES:
            event = {**event, "type": BETA_NAMES[event["type"]]}
        self._outbox.put_nowait({"event_id": new_id("event"), **event})

    async def run(self) -> None:
        """Serve until the client leaves or the session is idle too long."""
        writer = asyncio.create_task(self._write())
        await self.send({"type": "session.created", "session": self.config.wire()})
        try:
            while (message := await self._next()) is not None:
                await self.handle(message)
        finally:
            await self._stop_response("client_cancelled")
            await self.audio.close()
            self._outbox.put_nowait(None)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer, timeout=5)
            if self._idle:  # after the writer has flushed the error event
                await self.transport.close(1000, "idle timeout")

    async def _next(self) -> str | bytes | None:
        incoming = asyncio.ensure_future(self.transport.receive())
        while True:
            done, _ = await asyncio.wait({incoming}, timeout=self.idle_timeout_s)
            if done:
                return incoming.result()
            if self._run is None:  # idle: nothing asked, nothing being answered
                incoming.cancel()
                await self.send(error_event(
                    f"The session was idle for {self.idle_timeout_s:g} s and is closed.",
                    code="session_idle_timeout"))
                self._idle = True
                return None

    async def _write(self) -> None:
        while (event := await self._outbox.get()) is not None:
            try:
                await self.transport.send(json.dumps(event, separators=(",", ":")))
            except Exception:  # the client has gone; the reader will see it
                return

    async def handle(self, message: str | bytes) -> None:
        event_id = None
        try:
            event = _parse(message)
            event_id = event.get("event_id") if isinstance(event.get("event_id"), str) else None
            kind = event["type"]
            handler = self._handlers.get(kind)
            if handler is None:
                raise ClientError(f"Invalid value: '{kind}'. Supported values are: "
                                  f"{', '.join(self._handlers)}.", code="invalid_value",
                                  param="type")
            await handler(event)
        except ClientError as exc:
            await self.send(error_event(exc.message, exc.kind, exc.code, exc.param, event_id))
        except PocketserveError as exc:
            await self.send(error_event(exc.message, exc.kind, exc.code, exc.param, event_id))
        except Exception:  # a bug here must not end the session
            log.exception("realtime event failed")
            await self.send(error_event("The server had an error while processing the event.",
                                        "server_error", "server_error", None, event_id))

    # -- session and audio -----------------------------------------------------------------

    async def _session_update(self, event: dict[str, Any]) -> None:
        c = self.config
        before = (c.turn_detection, c.language, c.prompt, c.transcription_model)
        c.update(event.get("session"))
        if (c.turn_detection, c.language, c.prompt, c.transcription_model) != before:
            await self.audio.clear()  # the next append opens a stream with the new settings
        kind = ("transcription_session.updated" if event["type"].startswith("transcription")
                else "session.updated")
        await self.send({"type": kind, "session": c.wire()})

    async def _append(self, event: dict[str, Any]) -> None:
        pcm = pcm16(get(event, "audio", str, "", required=True), "audio")
        if pcm:
            await self.audio.append(pcm, self.config)

    async def _clear(self, event: dict[str, Any]) -> None:
        await self.audio.clear()
        await self.send({"type": "input_audio_buffer.cleared"})

    async def _speech_started(self) -> None:
        vad = self.config.turn_detection
        if vad is not None and vad.interrupt_response:
            await self._stop_response("turn_detected")

    async def _turn_done(self, item: Item) -> None:
        vad = self.config.turn_detection
        if (vad is not None and vad.create_response and self._run is None
                and self.config.type == "realtime"):
            self._start(self._params({}))

    # -- conversation ----------------------------------------------------------------------

    async def _item_create(self, event: dict[str, Any]) -> None:
        item, pcm = client_item(event.get("item"))
        previous = get(event, "previous_item_id", str, "")
        if pcm is not None:
            item.transcript = asyncio.get_running_loop().create_future()
        previous = self.conversation.add(item, previous)
        await self.send({"type": "conversation.item.added", "item": item.wire(),
                         "previous_item_id": previous})
        if pcm is None:
            await self.send({"type": "conversation.item.done", "item": item.wire(),
                             "previous_item_id": previous})
        else:  # done once transcribed, as a committed turn is
            await self.audio.transcribe(item, pcm, self.config)

    async def _item_delete(self, event: dict[str, Any]) -> None:
        item_id = get(event, "item_id", str, "", required=True)
        del self.conversation.items[self.conversation.index(item_id)]
        await self.send({"type": "conversation.item.deleted", "item_id": item_id})

    async def _item_retrieve(self, event: dict[str, Any]) -> None:
        item_id = get(event, "item_id", str, "", required=True)
        item = self.conversation.items[self.conversation.index(item_id)]
        await self.send({"type": "conversation.item.retrieved", "item": item.wire()})

    async def _item_truncate(self, event: dict[str, Any]) -> None:
        """The client played an answer up to `audio_end_ms`: an answer still being made stops
        there, and the history keeps only the words heard."""
        item_id = get(event, "item_id", str, "", required=True)
        item = self.conversation.items[self.conversation.index(item_id)]
        if get(event, "content_index", int, "", required=True) != 0:
            raise ClientError("'content_index' must be 0: an item here has one content part.",
                              param="content_index")
        end_ms = get(event, "audio_end_ms", int, "", required=True)
        if end_ms < 0:
            raise ClientError("'audio_end_ms' must not be negative.", param="audio_end_ms")
        if self._run is not None and self._run.item is item:
            item.truncate(end_ms)  # checked before the answer is stopped for it
            await self._stop_response("client_cancelled")
        item.truncate(end_ms)
        await self.send({"type": "conversation.item.truncated", "item_id": item_id,
                         "content_index": 0, "audio_end_ms": end_ms})

    # -- responses -------------------------------------------------------------------------

    async def _response_create(self, event: dict[str, Any]) -> None:
        if self.config.type == "transcription":
            raise ClientError("A transcription session makes no responses; open a realtime "
                              "session for answers.", code="unsupported_event", param="type")
        if self._run is not None:
            raise ClientError(f"Conversation already has an active response in progress: "
                              f"{self._run.id}. Wait until the response is finished before "
                              "creating a new one.",
                              code="conversation_already_has_active_response")
        self._start(self._params(get(event, "response", dict, "") or {}))

    async def _response_cancel(self, event: dict[str, Any]) -> None:
        if not await self._stop_response("client_cancelled"):
            raise ClientError("Cancellation failed: no active response found.",
                              code="response_cancel_not_active")

    def _params(self, r: dict[str, Any]) -> ResponseParams:
        c = self.config
        modalities = get(r, "output_modalities", list, "response") or get(
            r, "modalities", list, "response") or c.output_modalities
        output = get(get(r, "audio", dict, "response") or {}, "output", dict,
                     "response.audio") or {}
        voice = get(output, "voice", (str, dict), "response.audio.output") or get(
            r, "voice", str, "response") or c.voice
        limit = c.max_output_tokens
        for name in ("max_output_tokens", "max_response_output_tokens"):
            if name in r:
                limit = max_tokens(r[name], f"response.{name}")
        conversation = get(r, "conversation", str, "response") or "auto"
        tools = c.tools
        if (declared := get(r, "tools", list, "response")) is not None:
            if declared and not c.takes_tools:
                raise ClientError(f"The chat model {c.model!r} cannot call functions.",
                                  code="unsupported_parameter", param="response.tools")
            tools = parse_tools(declared, "response.tools")
        choice = c.tool_choice
        if "tool_choice" in r:
            choice = parse_choice(r["tool_choice"], "response.tool_choice")
        choice = check_choice(choice, tools, "response.tool_choice" if "tool_choice" in r
                              else "session.tool_choice")
        if get(r, "input", list, "response") is not None:
            raise ClientError("'response.input' is not supported yet; responses answer the "
                              "session's conversation.", code="unsupported_parameter",
                              param="response.input")
        return ResponseParams(
            chat_model=c.model, speech_model=c.speech_model, audio="audio" in modalities,
            instructions=get(r, "instructions", str, "response") or c.instructions,
            max_output_tokens=limit, voice=voice if isinstance(voice, str) else
            str(voice.get("id", c.voice)), speed=c.speed,
            in_conversation=conversation != "none", token_cap=c.token_cap,
            temperature=c.temperature, tools=tools, tool_choice=choice)

    def _start(self, params: ResponseParams) -> None:
        run = ResponseRun(self.models, self.send, self.conversation, params)
        self._run = run
        self._response = asyncio.create_task(self._respond(run))

    async def _respond(self, run: ResponseRun) -> None:
        try:
            await run.run()
        except Exception:
            log.exception("realtime response %s failed", run.id)
        finally:
            if self._run is run:
                self._run, self._response = None, None

    async def _stop_response(self, reason: str) -> bool:
        """Cancel the response in progress; True if there was one to cancel."""
        run, task = self._run, self._response
        if run is None or task is None or run.finishing:
            return False
        run.cancel_reason = reason
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return True


def _parse(message: str | bytes) -> dict[str, Any]:
    if isinstance(message, bytes):
        raise ClientError("Binary messages are not supported; send JSON text events.",
                          code="invalid_message")
    return parse_event(message)
