"""Shapes the chat engine's events into a Responses API `response` and its streamed events.

One `ResponseBuilder` per request holds the response as it grows: output items open as the
engine's events change kind (reasoning, then text, then function calls) and close when the
next kind starts or generation ends. Each engine event yields the stream events OpenAI sends
for it, numbered by `sequence_number`; the whole answer is the same builder read at the end,
so the streamed and the whole response cannot disagree.
"""

from __future__ import annotations

import copy
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from typing import Any

from pocketserve.api.protocol.common import Request
from pocketserve.api.protocol.response_items import new_id, parse_items, stored_items
from pocketserve.api.protocol.responses import CreateResponse
from pocketserve.errors import InvalidRequest, NotFound, PocketserveError, RetryLater
from pocketserve.ops.chat import ChatEvent, ReasoningDelta, TextDelta, TokenLogprob, ToolCallDelta
from pocketserve.ops.common import Usage
from pocketserve.store.responses import ResponseStore, StoredResponse

Event = dict[str, Any]


class ResponseBuilder:
    def __init__(self, model: str, settings: dict[str, Any], *, logprobs: bool = False):
        self.id = new_id("resp")
        self.created_at = int(time.time())
        self.model = model
        self.settings = settings
        self.logprobs = logprobs
        self.output: list[dict[str, Any]] = []
        self.status = "in_progress"
        self.completed_at: int | None = None
        self.error: dict[str, Any] | None = None
        self.incomplete: dict[str, Any] | None = None
        self.usage: dict[str, Any] | None = None
        self._open: dict[str, Any] | None = None
        self._call_index: int | None = None
        self._reasoning_deltas = 0
        self._sequence = 0

    def response(self) -> dict[str, Any]:
        """The response object as it stands (a copy: later events do not change it)."""
        return {
            "id": self.id, "object": "response", "created_at": self.created_at,
            "status": self.status, "background": False, "completed_at": self.completed_at,
            "error": self.error, "incomplete_details": self.incomplete, "model": self.model,
            "output": copy.deepcopy(self.output), **copy.deepcopy(self.settings),
            "usage": self.usage,
        }

    # -- the stream's events ------------------------------------------------------------------

    def start(self) -> list[Event]:
        return [self._event("response.created", response=self.response()),
                self._event("response.in_progress", response=self.response())]

    def feed(self, event: ChatEvent) -> list[Event]:
        if isinstance(event, Usage):
            self._usage(event)
            return []
        if isinstance(event, ReasoningDelta):
            return self._reasoning(event.text)
        if isinstance(event, ToolCallDelta):
            return self._tool_call(event)
        out = self._text(event) if event.text or (self.logprobs and event.logprobs) else []
        if event.finish_reason == "length":
            self.incomplete = {"reason": "max_output_tokens"}
        return out

    def finish(self) -> list[Event]:
        """The last events: the open item done, then response.completed or .incomplete."""
        out = [] if self.output else self._open_message()
        out += self._close()
        if self.incomplete is not None:
            self.status = "incomplete"
            return [*out, self._event("response.incomplete", response=self.response())]
        self.status, self.completed_at = "completed", int(time.time())
        return [*out, self._event("response.completed", response=self.response())]

    def fail(self, exc: PocketserveError) -> list[Event]:
        """A failure after the stream began: response.failed with the error, the output so
        far marked incomplete."""
        if self._open is not None:
            self._open["status"] = "incomplete"
            self._open = None
        code = "rate_limit_exceeded" if isinstance(exc, RetryLater) else "server_error"
        self.status, self.error = "failed", {"code": code, "message": exc.message}
        return [self._event("response.failed", response=self.response())]

    # -- items --------------------------------------------------------------------------------

    def _reasoning(self, text: str) -> list[Event]:
        out: list[Event] = []
        if self._open is None or self._open["type"] != "reasoning":
            out += self._close()
            item = {"id": new_id("rs"), "type": "reasoning", "summary": [], "content": [],
                    "status": "in_progress"}
            out += self._add(item, {"type": "reasoning_text", "text": ""})
        self._reasoning_deltas += 1
        assert self._open is not None
        self._open["content"][0]["text"] += text
        return [*out, self._event("response.reasoning_text.delta", **self._where(),
                                  delta=text)]

    def _text(self, delta: TextDelta) -> list[Event]:
        out: list[Event] = []
        if self._open is None or self._open["type"] != "message":
            out += self._close() + self._open_message()
        assert self._open is not None
        part = self._open["content"][0]
        part["text"] += delta.text
        logprobs = [_logprob(t) for t in delta.logprobs or ()] if self.logprobs else []
        part["logprobs"] += logprobs
        return [*out, self._event("response.output_text.delta", **self._where(),
                                  delta=delta.text, logprobs=_brief(logprobs))]

    def _open_message(self) -> list[Event]:
        item = {"id": new_id("msg"), "type": "message", "status": "in_progress",
                "content": [], "role": "assistant"}
        return self._add(item, {"type": "output_text", "annotations": [], "logprobs": [],
                                "text": ""})

    def _tool_call(self, delta: ToolCallDelta) -> list[Event]:
        out: list[Event] = []
        if self._open is None or self._call_index != delta.call_index:
            out += self._close()
            self._call_index = delta.call_index
            out += self._add({"id": new_id("fc"), "type": "function_call",
                              "status": "in_progress", "arguments": "",
                              "call_id": delta.id or new_id("call"), "name": delta.name or ""})
        assert self._open is not None
        if delta.arguments:
            self._open["arguments"] += delta.arguments
            out.append(self._event("response.function_call_arguments.delta",
                                   item_id=self._open["id"], output_index=len(self.output) - 1,
                                   delta=delta.arguments))
        return out

    def _add(self, item: dict[str, Any], part: dict[str, Any] | None = None) -> list[Event]:
        self.output.append(item)
        self._open = item
        out = [self._event("response.output_item.added", output_index=len(self.output) - 1,
                           item=copy.deepcopy(item))]
        if part is not None:
            item["content"].append(part)
            out.append(self._event("response.content_part.added", **self._where(),
                                   part=copy.deepcopy(part)))
        return out

    def _close(self) -> list[Event]:
        item, self._open, self._call_index = self._open, None, None
        if item is None:
            return []
        where = {"item_id": item["id"], "output_index": self.output.index(item)}
        out: list[Event] = []
        if item["type"] == "function_call":
            out.append(self._event("response.function_call_arguments.done", **where,
                                   name=item["name"], arguments=item["arguments"]))
        else:
            part = item["content"][0]
            where["content_index"] = 0
            if item["type"] == "message":
                out.append(self._event("response.output_text.done", **where, text=part["text"],
                                       logprobs=_brief(part["logprobs"])))
            else:
                out.append(self._event("response.reasoning_text.done", **where,
                                       text=part["text"]))
            out.append(self._event("response.content_part.done", **where,
                                   part=copy.deepcopy(part)))
        item["status"] = "incomplete" if self.incomplete else "completed"
        out.append(self._event("response.output_item.done", output_index=where["output_index"],
                               item=copy.deepcopy(item)))
        return out

    # -- helpers ------------------------------------------------------------------------------

    def _where(self) -> dict[str, Any]:
        assert self._open is not None
        return {"item_id": self._open["id"], "output_index": len(self.output) - 1,
                "content_index": 0}

    def _event(self, kind: str, **fields: Any) -> Event:
        event = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return event

    def _usage(self, u: Usage) -> None:
        self.usage = {
            "input_tokens": u.prompt_tokens,
            "input_tokens_details": {"cached_tokens": u.cached_tokens, "cache_write_tokens": 0},
            "output_tokens": u.completion_tokens,
            # Thinking arrives a token per delta from llama.cpp, so this counts its tokens.
            "output_tokens_details": {"reasoning_tokens": min(self._reasoning_deltas,
                                                              u.completion_tokens)},
            "total_tokens": u.prompt_tokens + u.completion_tokens,
        }


def _logprob(t: TokenLogprob) -> dict[str, Any]:
    return {"token": t.token, "logprob": t.logprob, "bytes": t.bytes or [],
            "top_logprobs": [{"token": x.token, "logprob": x.logprob, "bytes": x.bytes or []}
                             for x in t.top]}


def _brief(logprobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A stream event's logprobs: tokens and logprobs, without bytes (OpenAI's shape)."""
    return [{"token": t["token"], "logprob": t["logprob"],
             "top_logprobs": [{"token": x["token"], "logprob": x["logprob"]}
                              for x in t["top_logprobs"]]} for t in logprobs]


def settings_echo(body: CreateResponse, defaults: dict[str, Any]) -> dict[str, Any]:
    """The request's settings as the response object repeats them (a model's own sampling
    defaults where the request left temperature or top_p out)."""
    fmt = body.text.format if body.text and body.text.format else None
    text_format = ({"type": "text"} if fmt is None else
                   fmt.model_dump(by_alias=True, exclude_none=True))
    choice = body.tool_choice or "auto"
    return {
        "instructions": body.instructions, "max_output_tokens": body.max_output_tokens,
        "max_tool_calls": body.max_tool_calls, "metadata": body.metadata or {},
        "parallel_tool_calls": body.parallel_tool_calls is not False,
        "previous_response_id": body.previous_response_id,
        "prompt_cache_key": body.prompt_cache_key,
        "reasoning": {"effort": None, "summary": None},
        "safety_identifier": body.safety_identifier, "service_tier": "default",
        "store": body.keep,
        "temperature": body.temperature if body.temperature is not None
        else defaults.get("temperature"),
        "text": {"format": text_format, "verbosity": "medium"},
        "tool_choice": choice if isinstance(choice, str) else choice.model_dump(),
        "tools": [{"type": "function", "name": t.name, "description": t.description,
                   "parameters": t.parameters,
                   "strict": True if t.strict is None else t.strict} for t in body.tools or ()],
        "top_logprobs": body.top_logprobs or 0,
        "top_p": body.top_p if body.top_p is not None else defaults.get("top_p"),
        "truncation": "disabled", "user": body.user,
    }


# -- running a request ----------------------------------------------------------------------

Source = AsyncIterator[ChatEvent]
OnEnd = Callable[[dict[str, Any]], Awaitable[None]]


async def whole_response(builder: ResponseBuilder, events: Source) -> dict[str, Any]:
    async with aclosing(events):  # type: ignore[type-var]
        async for event in events:
            builder.feed(event)
    builder.finish()
    return builder.response()


async def stream_events(builder: ResponseBuilder, events: Source,
                        on_end: OnEnd | None = None) -> AsyncIterator[Event]:
    """The stream's events in OpenAI's order; a failure once it has begun becomes
    response.failed (a failure before it begins is the HTTP answer: see `primed`)."""
    async with aclosing(events):  # type: ignore[type-var]
        for out in builder.start():
            yield out
        try:
            async for event in events:
                for out in builder.feed(event):
                    yield out
            closing = builder.finish()
        except PocketserveError as exc:
            closing = builder.fail(exc)
    if on_end is not None:
        try:
            await on_end(builder.response())
        except PocketserveError as exc:  # not stored: the answer must not claim success
            last = closing.pop()
            failed = builder.fail(exc)[0]
            closing.append({**failed, "sequence_number": last["sequence_number"]})
    for out in closing:
        yield out


# -- stored responses -----------------------------------------------------------------------


async def earlier_items(store: ResponseStore, previous_id: str | None) -> list[Request]:
    """What a previous response read and wrote: the history a follow-up continues."""
    if previous_id is None:
        return []
    record = await store.get(previous_id)
    if record is None:
        raise InvalidRequest(f"Previous response with id {previous_id!r} not found (it was "
                             "not stored, was deleted or has expired).",
                             param="previous_response_id")
    return parse_items([*record.input_items, *record.response["output"]],
                       where="previous_response_id")


def keeper(store: ResponseStore, items: list[Request]) -> OnEnd:
    """Stores a finished response with everything it read (ids given to new items now)."""
    input_items = stored_items(items)

    async def keep(response: dict[str, Any]) -> None:
        await store.put(StoredResponse(response["id"], response["created_at"], response,
                                       input_items))
    return keep


async def stored(store: ResponseStore, response_id: str) -> StoredResponse:
    record = await store.get(response_id)
    if record is None:
        raise unknown(response_id)
    return record


def unknown(response_id: str) -> NotFound:
    return NotFound(f"Response with id {response_id!r} not found.", param="response_id")


def item_page(items: list[dict[str, Any]], limit: int, order: str,
              after: str | None) -> dict[str, Any]:
    """One page of a response's input items, OpenAI's list shape."""
    if order == "desc":
        items = items[::-1]
    if after is not None:
        ids = [item["id"] for item in items]
        if after not in ids:
            raise InvalidRequest(f"No input item with id {after!r} in this response.",
                                 param="after")
        items = items[ids.index(after) + 1:]
    page = items[:limit]
    return {"object": "list", "data": page, "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None, "has_more": len(items) > limit}
