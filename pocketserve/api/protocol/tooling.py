"""Function tools as every API declares them (OpenAI's functions, Anthropic's custom tools):
the checks they share and their conversion to the engine's `Tool` and `ToolChoice`, so a tool
is held to the same rules whichever protocol brings it."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Literal

from pocketserve.api.protocol.common import checked_schema
from pocketserve.errors import InvalidRequest
from pocketserve.ops.chat import Tool, ToolChoice

# OpenAI's rule for function names; Anthropic's for tool names is the same.
FUNCTION_NAME = r"^[a-zA-Z0-9_-]{1,64}$"

Choice = Literal["auto", "none", "required", "named"]


def object_schema(schema: dict[str, Any] | None, field: str) -> dict[str, Any] | None:
    """A tool's parameters: a valid JSON schema of an object (ValueError otherwise, which the
    API answers as a 400 naming the field)."""
    if schema is None:
        return None
    if schema.get("type", "object") != "object":
        raise ValueError(f"{field} must be the JSON schema of an object")
    return checked_schema(schema)


def unique_tools(tools: Iterable[Tool], name_param: Callable[[int], str],
                 what: str = "function") -> list[Tool]:
    """The tools in order; a name declared twice is a 400 naming the second."""
    out: list[Tool] = []
    for i, tool in enumerate(tools):
        if any(seen.name == tool.name for seen in out):
            raise InvalidRequest(f"The {what} name {tool.name!r} is declared twice.",
                                 param=name_param(i))
        out.append(tool)
    return out


def engine_choice(choice: Choice | None, name: str | None, tools: list[Tool], *,
                  param: str, name_param: str, what: str = "function") -> ToolChoice:
    """The engine's tool choice. Left out it is `auto` with tools and `none` without; a
    forced call (`required`, or `named` with `name`) needs a declared tool."""
    if choice is None:
        return "auto" if tools else "none"
    if choice in ("auto", "none"):
        return choice
    if not tools:
        raise InvalidRequest(f"{param} asks for a tool call, but no tools are given.",
                             param=param)
    if choice == "required":
        return "required"
    if all(t.name != name for t in tools):
        raise InvalidRequest(f"{param} names the {what} {name!r}, which is not declared in "
                             "tools.", param=name_param)
    return str(name)
