"""Shapes the engine's text events into OpenAI chat and completions answers.

One `Shaper` per request knows the family (chat or legacy completions) and builds either the
whole response or each SSE chunk. Choice indices may be shifted (`offset`) so several prompts of
one completions request can share one response.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any, Literal

from pocketserve.ops.chat import ChatEvent, ReasoningDelta, TextDelta, TokenLogprob, ToolCallDelta
from pocketserve.ops.common import Usage

Family = Literal["chat", "completion"]


@dataclass
class _Choice:
    text: list[str] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finish_reason: str | None = None
    text_offset: int = 0  # characters already emitted, for legacy `text_offset`
    started: bool = False
    reasoning: list[str] = field(default_factory=list)
    tool_calls: dict[int, dict[str, Any]] = field(default_factory=dict)  # by call_index


class Shaper:
    def __init__(self, family: Family, model: str, *, logprobs: bool):
        self.family = family
        self.model = model
        self.logprobs = logprobs
        prefix = "chatcmpl" if family == "chat" else "cmpl"
        self.id = f"{prefix}-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.choices: dict[int, _Choice] = {}
        self.usage = Usage(0, 0)

    # -- whole response ---------------------------------------------------------------------

    def add(self, delta: TextDelta | ReasoningDelta | ToolCallDelta, offset: int = 0) -> None:
        choice = self.choices.setdefault(delta.index + offset, _Choice())
        if isinstance(delta, ReasoningDelta):
            choice.reasoning.append(delta.text)
            return
        if isinstance(delta, ToolCallDelta):
            call = choice.tool_calls.setdefault(delta.call_index, {
                "id": delta.id, "type": "function",
                "function": {"name": delta.name, "arguments": ""}})
            call["function"]["arguments"] += delta.arguments
            return
        choice.text.append(delta.text)
        choice.logprobs.extend(delta.logprobs or ())
        choice.finish_reason = delta.finish_reason or choice.finish_reason

    def add_usage(self, usage: Usage) -> None:
        self.usage = Usage(self.usage.prompt_tokens + usage.prompt_tokens,
                           self.usage.completion_tokens + usage.completion_tokens,
                           self.usage.cached_tokens + usage.cached_tokens)

    def response(self) -> dict[str, Any]:
        choices = []
        for index in sorted(self.choices):
            choice = self.choices[index]
            text = "".join(choice.text)
            entry: dict[str, Any] = {"index": index, "finish_reason": choice.finish_reason}
            lps = self._logprobs(choice, choice.logprobs) if self.logprobs else None
            if self.family == "chat":
                entry["message"] = _message(choice, text)
            else:
                entry["text"] = text
            entry["logprobs"] = lps
            choices.append(entry)
        body = self._envelope("chat.completion" if self.family == "chat" else "text_completion")
        body["choices"] = choices
        body["usage"] = self.usage_dict()
        return body

    # -- streaming --------------------------------------------------------------------------

    def chunk(self, delta: TextDelta | ReasoningDelta | ToolCallDelta, offset: int = 0, *,
              with_usage: bool) -> dict[str, Any]:
        index = delta.index + offset
        choice = self.choices.setdefault(index, _Choice())
        text = delta.text if isinstance(delta, TextDelta) else ""
        finish = delta.finish_reason if isinstance(delta, TextDelta) else None
        entry: dict[str, Any] = {"index": index, "finish_reason": finish}
        logprobs = delta.logprobs if isinstance(delta, TextDelta) else None
        lps = self._logprobs(choice, logprobs or []) if self.logprobs else None
        if self.family == "chat":
            entry["delta"] = _chat_delta(delta)
            if not choice.started:
                entry["delta"] = {"role": "assistant", "content": text, **entry["delta"]}
        else:
            entry["text"] = text
        entry["logprobs"] = lps
        choice.started = True
        kind = "chat.completion.chunk" if self.family == "chat" else "text_completion"
        body = self._envelope(kind)
        body["choices"] = [entry]
        if with_usage:
            body["usage"] = None
        return body

    def usage_chunk(self) -> dict[str, Any]:
        body = self._envelope("chat.completion.chunk" if self.family == "chat"
                              else "text_completion")
        body["choices"] = []
        body["usage"] = self.usage_dict()
        return body

    # -- helpers ----------------------------------------------------------------------------

    def usage_dict(self) -> dict[str, Any]:
        u = self.usage
        return {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
                "total_tokens": u.prompt_tokens + u.completion_tokens,
                "prompt_tokens_details": {"cached_tokens": u.cached_tokens}}

    def _envelope(self, kind: str) -> dict[str, Any]:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model,
                "system_fingerprint": "pocketserve"}

    def _logprobs(self, choice: _Choice, tokens: list[TokenLogprob]) -> dict[str, Any]:
        if self.family == "chat":
            return {"content": [_chat_logprob(t) for t in tokens], "refusal": None}
        offsets = []
        for t in tokens:
            offsets.append(choice.text_offset)
            choice.text_offset += len(t.token)
        return {
            "tokens": [t.token for t in tokens],
            "token_logprobs": [t.logprob for t in tokens],
            "top_logprobs": [{top.token: top.logprob for top in t.top} for t in tokens],
            "text_offset": offsets,
        }


def _message(choice: _Choice, text: str) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
    if choice.reasoning:  # DeepSeek's and llama.cpp's name, and vLLM's newer one
        message["reasoning_content"] = message["reasoning"] = "".join(choice.reasoning)
    if choice.tool_calls:
        message["tool_calls"] = [choice.tool_calls[i] for i in sorted(choice.tool_calls)]
        message["content"] = text or None
    return message


def _chat_delta(delta: TextDelta | ReasoningDelta | ToolCallDelta) -> dict[str, Any]:
    """OpenAI's streamed delta: a tool call's first delta names it, later ones only add
    argument text."""
    if isinstance(delta, ReasoningDelta):
        return {"reasoning_content": delta.text, "reasoning": delta.text}
    if isinstance(delta, ToolCallDelta):
        call: dict[str, Any] = {"index": delta.call_index,
                                "function": {"arguments": delta.arguments}}
        if delta.id is not None:
            call["id"] = delta.id
            call["type"] = "function"
        if delta.name is not None:
            call["function"]["name"] = delta.name
        return {"tool_calls": [call]}
    return {"content": delta.text} if delta.text else {}


def _chat_logprob(t: TokenLogprob) -> dict[str, Any]:
    return {
        "token": t.token, "logprob": t.logprob, "bytes": t.bytes,
        "top_logprobs": [{"token": x.token, "logprob": x.logprob, "bytes": x.bytes}
                         for x in t.top],
    }


# -- running requests -----------------------------------------------------------------------

Source = AsyncIterator[ChatEvent]


async def whole_response(shaper: Shaper, sources: list[Source], n: int) -> dict[str, Any]:
    """Wait for every choice of every prompt and build one response."""
    async for which, event in _merged(sources):
        if isinstance(event, Usage):
            shaper.add_usage(event)
        else:
            shaper.add(event, offset=which * n)
    return shaper.response()


async def stream_chunks(shaper: Shaper, sources: list[Source], n: int,
                        include_usage: bool) -> AsyncIterator[dict[str, Any]]:
    """SSE chunks as deltas arrive; the usage chunk last, when asked for."""
    async for which, event in _merged(sources):
        if isinstance(event, Usage):
            shaper.add_usage(event)
        else:
            yield shaper.chunk(event, offset=which * n, with_usage=include_usage)
    if include_usage:
        yield shaper.usage_chunk()


_DONE = object()


async def _merged(sources: list[Source]) -> AsyncIterator[tuple[int, ChatEvent]]:
    """Events of several requests as they come, tagged with the request's position."""
    if len(sources) == 1:
        async with aclosing(sources[0]):  # type: ignore[type-var]
            async for event in sources[0]:
                yield 0, event
        return
    queue: asyncio.Queue[tuple[int, Any]] = asyncio.Queue()

    async def pump(which: int, source: Source) -> None:
        try:
            async with aclosing(source):  # type: ignore[type-var]
                async for event in source:
                    queue.put_nowait((which, event))
        except Exception as exc:
            queue.put_nowait((which, exc))
        finally:
            queue.put_nowait((which, _DONE))

    tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(sources)]
    try:
        remaining = len(tasks)
        while remaining:
            which, item = await queue.get()
            if item is _DONE:
                remaining -= 1
            elif isinstance(item, Exception):
                raise item
            else:
                yield which, item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
