"""Integers a request may carry to a worker: msgpack, the worker socket's format, holds 64 bits.

JSON has no integer limit, so a token id or seed like 10**30 parsed fine and then failed in
the worker's message as a 500 (found by the schema fuzzer); it is a 400 naming the field now.
"""

from __future__ import annotations

from typing import Any

from pocketserve.errors import InvalidRequest

_LOW, _HIGH = -(2**63), 2**64 - 1  # msgpack's int64 and uint64

# Token ids are 32-bit in the libraries below (llama.cpp's llama_token is int32_t): a larger
# id wrapped around there and was read as another, valid token.
MAX_TOKEN_ID = 2**31 - 1


def check_integers(value: Any, where: str = "") -> None:
    """Raise InvalidRequest naming the first integer in `value` that msgpack cannot hold."""
    if isinstance(value, bool):
        return
    if isinstance(value, int) and not _LOW <= value <= _HIGH:
        raise InvalidRequest(f"Invalid value for '{where}': {value} is too large (integers must "
                             "fit in 64 bits).", param=where or None, code="integer_too_large")
    if isinstance(value, dict):
        for key, item in value.items():
            check_integers(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            check_integers(item, f"{where}[{i}]")
