"""The dialogue session store's bounds, without a server: turns and tokens per session, the
number of sessions, idle expiry and ownership by API key."""

from __future__ import annotations

import pytest

from pocketserve.errors import NotFound
from pocketserve.voice.sessions import DialogueStore, Turn, estimate_tokens


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def store(**bounds: float | None) -> DialogueStore:
    args = {"max_sessions": 10, "max_turns": 10, "max_history_tokens": 10_000,
            "idle_ttl_s": None, **bounds}
    return DialogueStore(**args)  # type: ignore[arg-type]


def test_a_new_session_is_stored_only_with_its_first_turn() -> None:
    s = store()
    session = s.new(owner="a")
    with pytest.raises(NotFound):
        s.get(session.id, "a")
    s.commit(session, Turn("hello", "hi"))
    assert s.get(session.id, "a") is session
    assert [(m.role, m.text()) for m in session.messages()] == [("user", "hello"),
                                                                ("assistant", "hi")]


def test_oldest_turns_go_first_past_max_turns() -> None:
    s = store(max_turns=2)
    session = s.new(None)
    for i in range(5):
        s.commit(session, Turn(f"q{i}", f"a{i}"))
    assert [t.user for t in session.turns] == ["q3", "q4"]
    assert session.dropped_turns == 3


def test_oldest_turns_go_first_past_the_token_budget_but_the_latest_stays() -> None:
    long = "word " * 40  # 200 characters: 50 tokens + 4
    per_turn = estimate_tokens(long) + estimate_tokens("ok")
    s = store(max_history_tokens=2 * per_turn + 1)
    session = s.new(None)
    for _ in range(4):
        s.commit(session, Turn(long, "ok"))
    assert len(session.turns) == 2 and session.history_tokens() <= 2 * per_turn + 1
    huge = "x" * 100_000
    s.commit(session, Turn(huge, "ok"))
    assert [t.user for t in session.turns] == [huge]  # alone over budget, but kept
    assert session.dropped_turns == 4


def test_past_max_sessions_the_least_recently_used_is_evicted() -> None:
    s = store(max_sessions=2)
    first, second, third = (s.new(None) for _ in range(3))
    s.commit(first, Turn("1", "1"))
    s.commit(second, Turn("2", "2"))
    s.get(first.id, None)  # used again: second is now the oldest
    s.commit(third, Turn("3", "3"))
    assert len(s) == 2
    s.get(first.id, None)
    s.get(third.id, None)
    with pytest.raises(NotFound):
        s.get(second.id, None)


def test_idle_sessions_expire() -> None:
    clock = Clock()
    s = DialogueStore(10, 10, 10_000, idle_ttl_s=60, clock=clock)
    old, fresh = s.new(None), s.new(None)
    s.commit(old, Turn("1", "1"))
    clock.now += 50
    s.commit(fresh, Turn("2", "2"))
    assert s.expires_in(old) == pytest.approx(10)
    clock.now += 20
    with pytest.raises(NotFound):
        s.get(old.id, None)
    assert s.get(fresh.id, None) is fresh
    assert len(s) == 1


def test_another_key_sees_no_session_and_cannot_delete_it() -> None:
    s = store()
    session = s.new(owner="key-a")
    s.commit(session, Turn("secret", "kept"))
    for owner in ("key-b", None):
        with pytest.raises(NotFound) as caught:
            s.get(session.id, owner)
        assert caught.value.param == "session_id" and caught.value.status == 404
        with pytest.raises(NotFound):
            s.delete(session.id, owner)
    s.delete(session.id, "key-a")
    with pytest.raises(NotFound):
        s.get(session.id, "key-a")
