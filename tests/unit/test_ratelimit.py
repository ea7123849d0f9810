"""Per-key rate limits on a fake clock."""

from __future__ import annotations

import pytest

from pocketserve.errors import RateLimited
from pocketserve.serving.ratelimit import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_requests_per_minute_per_key() -> None:
    clock = Clock()
    limiter = RateLimiter(requests_per_min=2, tokens_per_min=None, clock=clock)
    limiter.admit("a")
    clock.now += 10
    limiter.admit("a")
    limiter.admit("b")  # another key has its own budget
    with pytest.raises(RateLimited) as caught:
        limiter.admit("a")
    assert caught.value.status == 429
    assert caught.value.code == "rate_limit_requests"
    assert caught.value.headers()["Retry-After"] == "50"  # the first one leaves the window
    clock.now += 50
    limiter.admit("a")


def test_tokens_per_minute_refuses_once_used_up() -> None:
    clock = Clock()
    limiter = RateLimiter(requests_per_min=None, tokens_per_min=100, clock=clock)
    limiter.admit("a")
    limiter.charge_tokens("a", 60)
    clock.now += 20
    limiter.admit("a")
    limiter.charge_tokens("a", 60)  # 120 used: over the limit
    clock.now += 1
    with pytest.raises(RateLimited) as caught:
        limiter.admit("a")
    assert caught.value.code == "rate_limit_tokens"
    assert caught.value.headers()["Retry-After"] == "39"  # when the first 60 leave the window
    clock.now += 39
    limiter.admit("a")


def test_disabled_limiter_admits_everything() -> None:
    limiter = RateLimiter(None, None)
    assert not limiter.enabled
    for _ in range(1000):
        limiter.admit("a")
