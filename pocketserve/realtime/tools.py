"""Function tools in a session: `session.tools` / `tool_choice` (or a response's own) checked
and turned into the chat engine's `Tool`s, and shown back in OpenAI's shape."""

from __future__ import annotations

from typing import Any

from pocketserve.ops.chat import Tool, ToolChoice
from pocketserve.realtime.errors import ClientError
from pocketserve.realtime.errors import field as get


def parse_tools(value: list[Any], where: str) -> list[Tool]:
    tools: list[Tool] = []
    for i, tool in enumerate(value):
        at = f"{where}[{i}]"
        kind = get(tool, "type", str, at, required=True)
        if kind != "function":
            raise ClientError(f"Invalid value for '{at}.type': {kind!r}; only 'function' "
                              "tools are served here.", code="unsupported_tool_type",
                              param=f"{at}.type")
        name = get(tool, "name", str, at, required=True)
        if any(t.name == name for t in tools):
            raise ClientError(f"The function name {name!r} is declared twice.",
                              param=f"{at}.name")
        tools.append(Tool(name=name, description=get(tool, "description", str, at),
                          parameters=get(tool, "parameters", dict, at) or {}))
    return tools


def parse_choice(value: Any, where: str) -> ToolChoice:
    """`auto`, `none`, `required`, or `{"type": "function", "name": ...}` (a name)."""
    if value in ("auto", "none", "required"):
        return str(value)
    if isinstance(value, dict) and value.get("type") == "function":
        return str(get(value, "name", str, where, required=True))
    raise ClientError(f"Invalid value for '{where}': use 'auto', 'none', 'required' or "
                      "{'type': 'function', 'name': ...}.", param=where)


def check_choice(choice: ToolChoice, tools: list[Tool], where: str) -> ToolChoice:
    """A choice that asks for a call needs tools, and a named one a declared function."""
    if choice in ("auto", "none"):
        return choice
    if not tools:
        raise ClientError(f"'{where}' asks for a tool call, but no tools are declared.",
                          param=where)
    if choice != "required" and all(t.name != choice for t in tools):
        raise ClientError(f"'{where}' names the function {choice!r}, which is not declared.",
                          param=where)
    return choice


def wire_tools(tools: list[Tool]) -> list[dict[str, Any]]:
    return [{"type": "function", "name": t.name, "description": t.description,
             "parameters": t.parameters} for t in tools]


def wire_choice(choice: ToolChoice) -> str | dict[str, str]:
    return choice if choice in ("auto", "none", "required") else {"type": "function",
                                                                   "name": choice}
