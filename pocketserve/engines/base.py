"""What every engine offers to the worker loop.

An engine exposes named operations. Each operation takes a plain dict payload (it crossed a
msgpack socket), may emit any number of plain-dict events, and returns when done. It checks
`cancelled` between steps so work stops soon after a client goes away.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any, Protocol

Emit = Callable[[dict[str, Any]], None]
Handler = Callable[[dict[str, Any], Emit, threading.Event], None]


class Engine(Protocol):
    def info(self) -> dict[str, Any]:
        """Facts about the loaded model that the server shows (context length, ...)."""
        ...

    def handlers(self) -> Mapping[str, Handler]:
        """Operation name -> function that runs it."""
        ...

    def close(self) -> None:
        """Free the model's memory."""
        ...
