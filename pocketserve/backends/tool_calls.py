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
- `required` / a named function: the answer is one call (or, where the template supports
  parallel calls and the request allows them, up to MAX_CALLS), every one matching its schema;
- `auto`: text, or text then calls, or a bare call object; text can never contain `<tool_call>`
  (nor start like a bare call), so whatever call the model starts is completed validly;
- `none`: text without `<tool_call>`.
"""

from __future__ import annotations

import json
from typing import Any

from pocketserve.backends.chat_stream import CALL_CLOSE, CALL_OPEN, THINK_CLOSE
from pocketserve.errors import InvalidRequest
from pocketserve.ops.chat import ChatMessage, Tool, ToolChoice

MAX_CALLS = 8  # calls in one answer at most: a small model may otherwise repeat calls forever

# Compact JSON, as OpenAI writes arguments and as Hermes templates render earlier calls.
_COMPACT = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}


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
    """
    if choice == "none":
        start = "TEXT?" if answer_schema is None else "answer"
    elif choice == "auto":
        start = "TEXT? calls? | fn" if answer_schema is None else "answer | calls"
    else:
        start = "calls"
    if in_thought:
        start = f'THOUGHT? "{THINK_CLOSE}" BLANK? ({start})'
    lines = ["%llguidance {}", f"start: {start}"]
    if in_thought:
        lines += [r"THOUGHT: /(?s:.+)/ & ~/(?s:.*<\/think>.*)/", r"BLANK: /\s+/"]
    if choice != "none":
        chosen = tools if choice in ("auto", "required") else [t for t in tools
                                                               if t.name == choice]
        if not chosen:
            raise InvalidRequest(f"tool_choice {choice!r} needs a declared function to call.",
                                 param="tool_choice")
        lines.append(f'calls: call ("\\n" call){{0,{MAX_CALLS - 1}}}' if parallel
                     else "calls: call")
        lines.append(f'call: "{CALL_OPEN}\\n" fn "\\n{CALL_CLOSE}"')
        lines.append("fn: " + " | ".join(f"fn{i}" for i in range(len(chosen))))
        lines += [f"fn{i}: %json {json.dumps(call_schema(t))}" for i, t in enumerate(chosen)]
    if answer_schema is not None:
        lines.append(f"answer: %json {json.dumps(answer_schema)}")
    elif choice in ("auto", "none"):
        like_call = r' & ~/(?s:\s*\{\s*"name".*)/' if choice == "auto" else ""
        lines.append(r"TEXT: /(?s:.+)/ & ~/(?s:.*<tool_call>.*)/" + like_call)
    return "\n".join(lines) + "\n"


def call_schema(tool: Tool) -> dict[str, Any]:
    """One call of `tool` as a JSON schema: its name, then arguments matching its parameters.

    The parameters' definitions move to the root, where their `#/$defs/...` references point.
    Objects get no undeclared keys unless their schema asks for them (`additionalProperties`):
    every such answer is valid under the schema, and small models otherwise invent keys.
    """
    params = _closed(tool.parameters or _NO_PARAMETERS)
    defs: dict[str, Any] = {key: params.pop(key) for key in ("$defs", "definitions")
                            if key in params}
    params.pop("$schema", None)
    return {"type": "object",
            "properties": {"name": {"const": tool.name}, "arguments": params},
            "required": ["name", "arguments"], "additionalProperties": False,
            "x-guidance": _COMPACT, **defs}


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
