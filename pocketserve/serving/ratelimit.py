"""Per-key requests/min and tokens/min over a sliding one-minute window.

Requests are counted when admitted; tokens when known (after the answer), so one large request
can take a key past its token limit, and the key's next request then waits until the window
has room again. The clock is injectable for tests.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from pocketserve.errors import RateLimited

WINDOW_S = 60.0


@dataclass
class _Usage:
    requests: deque[float] = field(default_factory=deque)
    tokens: deque[tuple[float, int]] = field(default_factory=deque)
    token_total: int = 0


class RateLimiter:
    def __init__(self, requests_per_min: int | None, tokens_per_min: int | None,
                 clock: Callable[[], float] = time.monotonic):
        self.requests_per_min = requests_per_min
        self.tokens_per_min = tokens_per_min
        self._clock = clock
        self._keys: dict[str, _Usage] = {}  # bounded by the configured keys

    @property
    def enabled(self) -> bool:
        return self.requests_per_min is not None or self.tokens_per_min is not None

    def admit(self, key: str) -> None:
        """Count one request for `key`, or raise RateLimited with when to retry."""
        now = self._clock()
        usage = self._expire(key, now)
        if self.requests_per_min is not None and len(usage.requests) >= self.requests_per_min:
            wait = usage.requests[0] + WINDOW_S - now
            raise RateLimited(
                f"Rate limit reached: {self.requests_per_min} requests per minute for this "
                f"API key. Retry in {wait:.0f}s.", code="rate_limit_requests", retry_after_s=wait)
        if self.tokens_per_min is not None and usage.token_total >= self.tokens_per_min:
            wait = _token_wait(usage, now, self.tokens_per_min)
            raise RateLimited(
                f"Rate limit reached: {self.tokens_per_min} tokens per minute for this API key "
                f"({usage.token_total} used). Retry in {wait:.0f}s.",
                code="rate_limit_tokens", retry_after_s=wait)
        usage.requests.append(now)

    def charge_tokens(self, key: str, tokens: int) -> None:
        if tokens <= 0 or self.tokens_per_min is None:
            return
        usage = self._expire(key, self._clock())
        usage.tokens.append((self._clock(), tokens))
        usage.token_total += tokens

    def _expire(self, key: str, now: float) -> _Usage:
        usage = self._keys.setdefault(key, _Usage())
        while usage.requests and usage.requests[0] <= now - WINDOW_S:
            usage.requests.popleft()
        while usage.tokens and usage.tokens[0][0] <= now - WINDOW_S:
            usage.token_total -= usage.tokens.popleft()[1]
        return usage


def _token_wait(usage: _Usage, now: float, limit: int) -> float:
    """Seconds until enough old tokens leave the window to go under the limit."""
    excess = usage.token_total - limit
    for at, count in usage.tokens:
        excess -= count
        if excess < 0:
            return max(0.0, at + WINDOW_S - now)
    return WINDOW_S
