"""Splits one choice's raw generated text into content, reasoning and tool calls, as it streams.

Models write their thinking as `<think>...</think>` before the answer, and tool calls as
`<tool_call>{"name": ..., "arguments": {...}}</tool_call>` (Hermes/Qwen2.5, and the generic format
pocketserve teaches models whose template has none); a call object with no tags, bare or in a
Markdown fence, as the whole answer counts too (small models write that; the grammar then holds
it to the schema). The parser turns them into the seam's events: the first delta of a call
carries its id and name with no arguments, later ones only argument text, exactly as the model
wrote it. No tag ever reaches the content. Text that might still become a tag is held back until
the next chunk decides (a few characters at most), so content streams with no visible delay.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable, Collection

from pocketserve.backends.stops import partial_tail
from pocketserve.ops.chat import (
    ChatEvent,
    FinishReason,
    ReasoningDelta,
    TextDelta,
    TokenLogprob,
    ToolCallDelta,
)

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
CALL_OPEN, CALL_CLOSE = "<tool_call>", "</tool_call>"

# The start of a call object whose name comes first (the grammar writes them so): once it has
# been read, the arguments can stream.
_HEAD = re.compile(r'\s*\{\s*"name"\s*:\s*("(?:[^"\\]|\\.)*")\s*,\s*"arguments"\s*:\s*')
FENCE = "```"


def new_call_id() -> str:
    """An id in OpenAI's shape (`call_` and 24 characters)."""
    return "call_" + secrets.token_hex(12)


_UNTAGGED = re.compile(r'(```[a-z]*\s*)?\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"')
_UNTAGGED_SO_FAR = re.compile(  # a start that may still become one
    r'(`{0,2}|```[a-z]*\s*)(\{\s*("(n(a(m(e("\s*(:\s*("[^"]*)?)?)?)?)?)?)?)?)?$')


def untagged_call_start(lead: str, names: Collection[str]) -> bool | None:
    """Whether `lead` begins a call of one of `names` with no tags, bare or in a Markdown
    fence (what small models write when they mean a call): None while too short to tell."""
    done = _UNTAGGED.match(lead)
    if done is not None:
        return json.loads(f'"{done.group(2)}"') in names
    return None if _UNTAGGED_SO_FAR.match(lead) else False


class _JsonValue:
    """Finds where one JSON value ends, character by character (strings, nesting, scalars)."""

    def __init__(self) -> None:
        self.started = False
        self.depth = 0
        self.in_string = False
        self.escaped = False
        self.scalar = False
        self.done = False

    def feed(self, text: str) -> int:
        """Characters of `text` that belong to the value; sets `done` at its end."""
        for i, ch in enumerate(text):
            if not self.started:
                if ch.isspace():
                    continue
                self.started = True
                self.scalar = ch not in '{["'
            if self.scalar:
                if ch in ",}] \n\r\t":
                    self.done = True
                    return i
                continue
            if self.in_string:
                if self.escaped:
                    self.escaped = False
                elif ch == "\\":
                    self.escaped = True
                elif ch == '"':
                    self.in_string = False
                    if self.depth == 0:
                        self.done = True
                        return i + 1
                continue
            if ch == '"':
                self.in_string = True
            elif ch in "{[":
                self.depth += 1
            elif ch in "}]":
                self.depth -= 1
                if self.depth == 0:
                    self.done = True
                    return i + 1
        return len(text)


class ChoiceParser:
    """One choice's text → events. `feed` each chunk as it comes, then `finish` once."""

    def __init__(self, index: int, *, reasoning: bool, tools: Collection[str] = (),
                 in_thought: bool = False, new_id: Callable[[], str] = new_call_id):
        """`tools`: the functions the model may call (none: tags are plain text)."""
        self.index = index
        self.reasoning = reasoning
        self.tools = bool(tools)
        self.names = frozenset(tools)
        self.new_id = new_id
        self.state = "think" if reasoning and in_thought else "start"
        self.buf = ""
        self.calls = 0
        self.bare = False
        self.fenced = False
        self.value: _JsonValue | None = None
        self.logprobs: list[TokenLogprob] = []
        self.out: list[ChatEvent] = []

    # -- driving ------------------------------------------------------------------------------

    def feed(self, text: str, logprobs: list[TokenLogprob] | None = None) -> list[ChatEvent]:
        self.buf += text
        self.logprobs.extend(logprobs or ())
        while self.buf and self._step():
            pass
        return self._take()

    def finish(self, finish_reason: FinishReason | None) -> list[ChatEvent]:
        """Flush what is held back and end the choice; a choice that called a tool and
        stopped by itself finishes with "tool_calls"."""
        if self.state in ("start", "text", "after_think"):
            self._content(self.buf)
        elif self.state == "think":
            self._reason(self.buf)
        elif self.state == "call" and self.value is None:
            # an unusual key order
            self._whole_call(self.buf.rstrip().removesuffix(CALL_CLOSE).removesuffix(FENCE))
        self.buf = ""
        reason = "tool_calls" if self.calls and finish_reason == "stop" else finish_reason
        self.out.append(TextDelta(self.index, "", self._logprobs(), reason))
        return self._take()

    def _step(self) -> bool:
        """Consume what the buffer allows in the current state; False when it must wait."""
        return {"start": self._start, "after_think": self._start, "think": self._think,
                "text": self._text, "call": self._call, "call_end": self._call_end,
                "after_call": self._after_call}[self.state]()

    # -- states -------------------------------------------------------------------------------

    def _start(self) -> bool:
        lead = self.buf.lstrip()
        if not lead:
            return False  # only whitespace yet
        if self.reasoning and self.state == "start":
            if lead.startswith(THINK_OPEN):
                self.buf = lead[len(THINK_OPEN):]
                self.state = "think"
                return True
            if THINK_OPEN.startswith(lead):
                return False
        if self.tools:
            if lead.startswith(CALL_OPEN):
                return self._open_call(lead[len(CALL_OPEN):], bare=False)
            untagged = untagged_call_start(lead, self.names)
            if untagged:
                self.fenced = lead.startswith(FENCE)
                return self._open_call(lead[lead.index("{"):], bare=True)
            if untagged is None or CALL_OPEN.startswith(lead):
                return False
        if self.state == "after_think":
            self.buf = lead  # the blank lines between the thought and the answer
        self.state = "text"
        return True

    def _think(self) -> bool:
        end = self.buf.find(THINK_CLOSE)
        if end >= 0:
            self._reason(self.buf[:end])
            self.buf = self.buf[end + len(THINK_CLOSE):]
            self.state = "after_think"
            return True
        keep = partial_tail(self.buf, (THINK_CLOSE,))
        self._reason(self.buf[:len(self.buf) - keep])
        self.buf = self.buf[len(self.buf) - keep:]
        return False

    def _text(self) -> bool:
        if self.tools:
            at = self.buf.find(CALL_OPEN)
            if at >= 0:
                self._content(self.buf[:at].rstrip())
                return self._open_call(self.buf[at + len(CALL_OPEN):], bare=False)
            keep = partial_tail(self.buf, (CALL_OPEN,))
            body = self.buf[:len(self.buf) - keep]
            keep += len(body) - len(body.rstrip())  # spaces before a call are not content
        else:
            keep = 0
        self._content(self.buf[:len(self.buf) - keep])
        self.buf = self.buf[len(self.buf) - keep:]
        return False

    def _open_call(self, rest: str, *, bare: bool) -> bool:
        self.state, self.buf, self.bare, self.value = "call", rest, bare, None
        self.fenced = self.fenced and bare
        return True

    def _call(self) -> bool:
        if self.value is None:
            head = _HEAD.match(self.buf)
            if head is None:
                if not self.bare and CALL_CLOSE in self.buf:  # keys in another order
                    inner, _, self.buf = self.buf.partition(CALL_CLOSE)
                    self._whole_call(inner)
                    self.state = "after_call"
                    return True
                return False
            self._tool(ToolCallDelta(self.index, self.calls, "", self.new_id(),
                                     json.loads(head.group(1))))
            self.buf = self.buf[head.end():]
            self.value = _JsonValue()
        fresh = not self.value.started
        used = self.value.feed(self.buf)
        piece = self.buf[:used].lstrip() if fresh else self.buf[:used]
        if piece:
            self._tool(ToolCallDelta(self.index, self.calls, piece))
        self.buf = self.buf[used:]
        if not self.value.done:
            return False
        self.calls += 1
        self.state = "call_end"
        return True

    def _call_end(self) -> bool:
        """Past the call object's closing brace to its closing tag or fence."""
        closer = FENCE if self.fenced else "}" if self.bare else CALL_CLOSE
        at = self.buf.find(closer)
        if at < 0:
            return False
        self.buf = self.buf[at + len(closer):]
        self.state = "after_call"
        return True

    def _after_call(self) -> bool:
        lead = self.buf.lstrip()
        if lead.startswith(CALL_OPEN):
            return self._open_call(lead[len(CALL_OPEN):], bare=False)
        if not lead or CALL_OPEN.startswith(lead):
            return False
        self.buf = lead
        self.state = "text"
        return True

    # -- output -------------------------------------------------------------------------------

    def _whole_call(self, inner: str) -> None:
        """A call read only once complete: its keys were not name-first."""
        try:
            call = json.loads(inner)
        except ValueError:
            call = None
        if not (isinstance(call, dict) and isinstance(call.get("name"), str)
                and "arguments" in call):
            return  # cut off or not a call: dropped, never shown as markup
        args = call["arguments"]
        text = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
        self._tool(ToolCallDelta(self.index, self.calls, "", self.new_id(), call["name"]))
        self._tool(ToolCallDelta(self.index, self.calls, text))
        self.calls += 1

    def _content(self, text: str) -> None:
        if text:
            self.out.append(TextDelta(self.index, text, self._logprobs()))

    def _reason(self, text: str) -> None:
        if text:
            self.logprobs.clear()
            self.out.append(ReasoningDelta(self.index, text))

    def _tool(self, delta: ToolCallDelta) -> None:
        self.logprobs.clear()
        self.out.append(delta)

    def _logprobs(self) -> list[TokenLogprob] | None:
        taken, self.logprobs = self.logprobs, []
        return taken or None

    def _take(self) -> list[ChatEvent]:
        out, self.out = self.out, []
        return out
