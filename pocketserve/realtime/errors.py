"""A client event the session cannot take: answered with an `error` event, and the session
goes on (OpenAI's behaviour: one bad event never ends a session)."""

from __future__ import annotations

import json
from typing import Any


class ClientError(Exception):
    def __init__(self, message: str, code: str = "invalid_value", param: str | None = None,
                 kind: str = "invalid_request_error"):
        super().__init__(message)
        self.message = message
        self.code = code
        self.param = param
        self.kind = kind


def field(data: Any, name: str, kind: type | tuple[type, ...], where: str,
          required: bool = False) -> Any:
    """`data[name]` checked against `kind` (None when absent and not required)."""
    if not isinstance(data, dict):
        raise ClientError(f"'{where}' must be an object.", param=where)
    param = f"{where}.{name}" if where else name
    if name not in data:
        if required:
            raise ClientError(f"Missing required parameter: '{param}'.",
                              code="missing_required_parameter", param=param)
        return None
    value = data[name]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    is_bool = isinstance(value, bool)  # a bool is an int to isinstance; not to JSON
    if value is not None and (not isinstance(value, kinds) or (is_bool and bool not in kinds)):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ClientError(f"Invalid type for '{param}': expected {names}.",
                          code="invalid_type", param=param)
    return value


def parse_event(message: str) -> dict[str, Any]:
    """A client's text message as an event: a JSON object with a string `type`."""
    try:
        event = json.loads(message)
    except ValueError:
        raise ClientError("The message is not valid JSON.", code="invalid_json") from None
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        raise ClientError("An event must be a JSON object with a string 'type'.",
                          code="missing_required_parameter", param="type")
    return event
