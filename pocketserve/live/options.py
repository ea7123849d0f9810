"""Reading a live session's options from a `config` event or the handshake's query string.

Query values arrive as strings, so numbers and switches are read from strings too. An option
this server does not know, or a value it cannot use, is refused naming it (never ignored).
"""

from __future__ import annotations

from typing import Any

from pocketserve.realtime.errors import ClientError

_TRUE = {"true", "1", "on", "yes"}
_FALSE = {"false", "0", "off", "no", "none", "null"}


def number(value: Any, name: str, kind: type[int] | type[float], low: float,
           high: float) -> Any:
    """`value` as `kind` within [low, high]."""
    if isinstance(value, str):
        try:
            value = kind(value)
        except ValueError:
            raise ClientError(f"Invalid value for '{name}': expected a number.",
                              code="invalid_type", param=name) from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (
            kind is int and not float(value).is_integer()):
        raise ClientError(f"Invalid type for '{name}': expected {kind.__name__}.",
                          code="invalid_type", param=name)
    if not low <= value <= high:
        raise ClientError(f"Invalid value for '{name}': {value} is outside {low:g}..{high:g}.",
                          param=name)
    return kind(value)


def switch(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
        return value.lower() in _TRUE
    raise ClientError(f"Invalid value for '{name}': expected true or false.",
                      code="invalid_type", param=name)


def text(value: Any, name: str, choices: tuple[str, ...] = ()) -> str:
    if not isinstance(value, str) or not value:
        raise ClientError(f"Invalid type for '{name}': expected a non-empty string.",
                          code="invalid_type", param=name)
    if choices and value not in choices:
        raise ClientError(f"Invalid value: '{value}'. Supported values are: "
                          f"{', '.join(choices)}.", param=name)
    return value


def known(options: dict[str, Any], names: tuple[str, ...]) -> None:
    for name in options:
        if name not in names:
            raise ClientError(f"Unknown parameter: '{name}'. Known parameters: "
                              f"{', '.join(names)}.", code="unknown_parameter", param=name)
