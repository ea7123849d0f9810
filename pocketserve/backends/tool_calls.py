"""Tool calling for llama.cpp: the conversation as the model's template wants it, and the
grammar that makes the calls valid.

One call format, Hermes's (Qwen2.5, Hermes, and many fine-tunes): `<tool_call>` + a JSON object
`{"name": ..., "arguments": {...}}` + `</tool_call>`. A template that writes that format itself
(it supports tools and mentions `<tool_call>`) is given the tools and the history as OpenAI
shapes them; any other template (SmolLM2's has no tools at all) gets the same instructions in
its system message and the earlier calls and results as text, written by us.

llama.cpp in xllamacpp renders tools but neither parses calls nor constrains `required` ones,
and refuses a grammar together with `tools`; so the prompt is rendered here (through its
/apply-template) and decoded as a completion under our own grammar (llguidance's Lark syntax
with `%json` for each tool's schema):
- `required`: the answer is one call (or, where the template supports parallel calls and the
  request allows them, up to MAX_CALLS), every one matching its schema; a named function: one
  call of it;
- `auto`: text, or text then calls, or one call object with no tags, bare or in a Markdown
  fence (what small models such as Qwen2.5-Coder-0.5B write most often); text can never contain
  `<tool_call>` nor start like such an object, so whatever call the model starts is completed
  validly;
- `none`: text without `<tool_call>`.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pocketserve.backends.chat_stream import CALL_CLOSE, CALL_OPEN
from pocketserve.errors import InvalidRequest
from pocketserve.ops.chat import ChatMessage, Tool, ToolChoice

MAX_CALLS = 8  # calls in one answer at most: a small model may otherwise repeat calls forever

# Compact JSON, as OpenAI writes arguments and as Hermes templates render earlier calls.
_COMPACT = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}


def uses_tools(tools: list[Tool], messages: list[ChatMessage]) -> bool:
    """Whether a conversation is rendered here rather than by llama.cpp's chat: it has tools,
    or earlier calls and results."""
    return bool(tools) or any(m.tool_calls or m.role == "tool" for m in messages)


def native_format(template: str, caps: dict[str, Any]) -> bool:
    """Whether the model's own template renders tools and Hermes-style calls."""
    return bool(caps.get("supports_tools")) and CALL_OPEN in template


# A function declared without parameters takes none (OpenAI's reading): its arguments are {}.
_NO_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}


def openai_tool(tool: Tool) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool.name, "parameters": tool.parameters or
                                _NO_PARAMETERS}
    if tool.description:
        function["description"] = tool.description
    return {"type": "function", "function": function}


def template_messages(messages: list[ChatMessage], tools: list[Tool], *, native: bool,
                      text: Any) -> list[dict[str, Any]]:
    """The conversation for /apply-template; `text(message)` gives a message's text.

    Native: OpenAI's shapes (the template writes calls and results). Generic: the tool
    instructions join the system message, earlier calls become `<tool_call>` text and results a
    user turn of `<tool_response>` blocks, which any chat template can render.
    """
    if native:
        return [_openai_message(m, text(m)) for m in messages]
    out: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "tool":
            block = f"<tool_response>\n{text(m)}\n</tool_response>"
            if out and out[-1].get("tool_results"):
                out[-1]["content"] += "\n" + block
            else:
                out.append({"role": "user", "content": block, "tool_results": True})
            continue
        content = text(m)
        if m.tool_calls:
            calls = "\n".join(_call_text(c.name, c.arguments) for c in m.tool_calls)
            content = f"{content}\n{calls}" if content else calls
        out.append({"role": m.role, "content": content})
    for entry in out:
        entry.pop("tool_results", None)
    if tools:
        _add_instructions(out, tools)
    return out


def _openai_message(m: ChatMessage, content: str) -> dict[str, Any]:
    message: dict[str, Any] = {"role": m.role, "content": content}
    if m.tool_calls:
        message["tool_calls"] = [
            {"id": c.id, "type": "function",
             "function": {"name": c.name, "arguments": c.arguments}} for c in m.tool_calls]
    if m.tool_call_id is not None:
        message["tool_call_id"] = m.tool_call_id
    return message


def _call_text(name: str, arguments: str) -> str:
    try:
        args: Any = json.loads(arguments)
    except ValueError:
        args = arguments  # a client's malformed history is shown as it was sent
    body = json.dumps({"name": name, "arguments": args}, ensure_ascii=False)
    return f"{CALL_OPEN}\n{body}\n{CALL_CLOSE}"


def _add_instructions(messages: list[dict[str, Any]], tools: list[Tool]) -> None:
    signatures = "\n".join(json.dumps(openai_tool(t), ensure_ascii=False) for t in tools)
    text = ("# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
            "You are provided with function signatures within <tools></tools> XML tags:\n"
            f"<tools>\n{signatures}\n</tools>\n\n"
            "For each function call, return a json object with function name and arguments "
            "within <tool_call></tool_call> XML tags:\n"
            '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n'
            "</tool_call>")
    if messages and messages[0]["role"] == "system":
        messages[0]["content"] = f"{messages[0]['content']}\n\n{text}"
    else:
        messages.insert(0, {"role": "system", "content": text})


def grammar(tools: list[Tool], choice: ToolChoice, *, parallel: bool,
            answer_schema: dict[str, Any] | None = None, in_thought: bool = False) -> str:
    """The llguidance grammar for a request with tools (see the module's docstring).

    `answer_schema` (response_format) makes a text answer that JSON instead. `in_thought`: the
    prompt opened a `<think>` block, which the answer must close before anything else.

    llguidance lexes greedily and picks a JSON lexeme class at a JSON value's first byte, so
    the ways an answer may go are lexemes that part only where the text decides: an untagged
    call is a header lexeme (up to `"arguments":`) that text may not match, then the arguments'
    JSON; the text before a tagged call is one lazy lexeme ending at the first `<tool_call>`;
    the thought is lazy up to `</think>`.
    """
    lines = ["%llguidance {}"]
    opening = "thought BLANK? " if in_thought else ""
    if in_thought:
        lines += [r"thought[lazy]: /(?s:.*)<\/think>/", r"BLANK: /\s+/"]
    if answer_schema is not None:
        lines.append(f"answer: %json {json.dumps(answer_schema)}")
    if choice == "none":
        body = "TEXT?" if answer_schema is None else "answer"
        lines.append(r"TEXT: /(?s:.+)/ & ~/(?s:.*<tool_call>.*)/")
    else:
        chosen = _chosen(tools, choice)
        several = parallel and choice in ("auto", "required")  # a named function: one call
        lines += _tagged_calls(chosen, several)
        if choice != "auto":
            body = "calls"
        elif answer_schema is not None:
            body = "answer | calls"
        else:
            body = "TEXT? | head calls_rest | loose"
            lines += _untagged_call(chosen)
    lines.insert(1, f"start: {opening}({body})")
    return "\n".join(lines) + "\n"


def _chosen(tools: list[Tool], choice: ToolChoice) -> list[Tool]:
    chosen = tools if choice in ("auto", "required") else [t for t in tools if t.name == choice]
    if not chosen:
        raise InvalidRequest(f"tool_choice {choice!r} needs a declared function to call.",
                             param="tool_choice")
    return chosen


def _tagged_calls(chosen: list[Tool], several: bool) -> list[str]:
    """`calls`: one tagged call (or up to MAX_CALLS); `calls_rest`: what follows the first tag."""
    more = f' ("\\n{CALL_OPEN}\\n" fn "\\n{CALL_CLOSE}"){{0,{MAX_CALLS - 1}}}' if several else ""
    lines = [f'calls: "{CALL_OPEN}\\n" calls_rest',
             f'calls_rest: fn "\\n{CALL_CLOSE}"{more}',
             "fn: " + " | ".join(f"fn{i}" for i in range(len(chosen)))]
    return lines + [f"fn{i}: %json {json.dumps(call_schema(t))}" for i, t in enumerate(chosen)]


def _untagged_call(chosen: list[Tool]) -> list[str]:
    """`auto`'s other ways: text (never `<tool_call>`, never the start of an untagged call of
    a declared function), the text before a tagged call, and `loose`: one untagged call, bare
    or in a Markdown fence, in the model's own layout."""
    names = "|".join(re.escape(t.name) for t in chosen)
    header = r'\{\s*"name"\s*:\s*"(' + names + r')"'
    not_call = rf" & ~/(?s:\s*(```[a-z]*\s*)?{header}.*)/"
    lines = [r"TEXT: /(?s:.+)/ & ~/(?s:.*<tool_call>.*)/" + not_call,
             f'head[lazy]: PRE "{CALL_OPEN}\\n"', r"PRE: /(?s:.*)/" + not_call,
             r"BARE_END: /\s*\}/", r"FENCE_END: /\s*\}\s*```/"]
    ways = []
    for i, t in enumerate(chosen):
        head = r'\{\s*"name"\s*:\s*"' + re.escape(t.name) + r'"\s*,\s*"arguments"\s*:\s*'
        lines += [rf"BARE{i}: /\s*{head}/", rf"FENCED{i}: /\s*```[a-z]*\s*{head}/",
                  f"args{i}: %json {json.dumps(arguments_schema(t))}"]
        ways += [f"BARE{i} args{i} BARE_END", f"FENCED{i} args{i} FENCE_END"]
    return [*lines, "loose: " + " | ".join(ways)]


def arguments_schema(tool: Tool) -> dict[str, Any]:
    """The schema a call's arguments are held to: the tool's parameters, where objects get no
    undeclared keys unless their schema asks for them (`additionalProperties`): every such
    answer is valid under the schema, and small models otherwise invent keys."""
    params = dict(_closed(tool.parameters or _NO_PARAMETERS))
    params.pop("$schema", None)
    return params


def call_schema(tool: Tool, *, compact: bool = True) -> dict[str, Any]:
    """One call of `tool` as a JSON schema: its name, then arguments matching its parameters.

    The parameters' definitions move to the root, where their `#/$defs/...` references point.
    """
    params = arguments_schema(tool)
    defs: dict[str, Any] = {key: params.pop(key) for key in ("$defs", "definitions")
                            if key in params}
    return {"type": "object",
            "properties": {"name": {"const": tool.name}, "arguments": params},
            "required": ["name", "arguments"], "additionalProperties": False,
            **({"x-guidance": _COMPACT} if compact else {}), **defs}


def _closed(schema: Any) -> Any:
    """A copy of `schema` whose objects with `properties` default to no other keys."""
    if isinstance(schema, list):
        return [_closed(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: (_closed(v) if k in _SUBSCHEMAS else v) for k, v in schema.items()}
    for key in ("properties", "$defs", "definitions"):
        if isinstance(out.get(key), dict):
            out[key] = {name: _closed(s) for name, s in out[key].items()}
    if "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


_SUBSCHEMAS = ("items", "anyOf", "oneOf", "allOf", "not", "prefixItems")
