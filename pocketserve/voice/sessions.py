"""Dialogue sessions: the turns each conversation remembers, in the API process's memory.

Everything is bounded, so a server that talks for weeks keeps a flat footprint:

- at most `max_sessions` sessions; a new one past that evicts the one used longest ago;
- at most `max_turns` turns per session, and at most `max_history_tokens` tokens of them (an
  estimate, see `estimate_tokens`); the oldest turns are dropped first, the latest is kept;
- a session unused for `idle_ttl_s` seconds is gone (swept whenever the store is touched).

A session belongs to the API key that made it (`owner`, the key's id; None without keys): any
other key is told it does not exist, the same answer as for an unknown id, so ids cannot be
probed. Sessions do not outlive a restart.
"""

from __future__ import annotations

import asyncio
import math
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from pocketserve.errors import NotFound
from pocketserve.ops.chat import ChatMessage

CHARS_PER_TOKEN = 4  # English text with the small models' tokenizers: about 4 characters
MESSAGE_TOKENS = 4  # what a chat template adds around each message (role, separators)


def estimate_tokens(text: str) -> int:
    """Tokens a message costs in a prompt, estimated: exact counts would need the chat model's
    tokenizer (a TOKENIZE call per turn) for a bound that only has to be roughly right."""
    return math.ceil(len(text) / CHARS_PER_TOKEN) + MESSAGE_TOKENS


@dataclass
class Turn:
    user: str
    assistant: str

    @property
    def tokens(self) -> int:
        return estimate_tokens(self.user) + estimate_tokens(self.assistant)


@dataclass
class Session:
    id: str
    owner: str | None
    created_at: float  # Unix time
    last_used: float  # monotonic
    turns: list[Turn] = field(default_factory=list)
    dropped_turns: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    def messages(self) -> list[ChatMessage]:
        out = []
        for turn in self.turns:
            out += [ChatMessage(role="user", content=turn.user),
                    ChatMessage(role="assistant", content=turn.assistant)]
        return out

    def history_tokens(self) -> int:
        return sum(t.tokens for t in self.turns)


def new_session_id() -> str:
    return f"dlg_{secrets.token_hex(12)}"


class DialogueStore:
    def __init__(self, max_sessions: int, max_turns: int, max_history_tokens: int,
                 idle_ttl_s: float | None, clock: Callable[[], float] = time.monotonic):
        self.max_sessions = max_sessions
        self.max_turns = max_turns
        self.max_history_tokens = max_history_tokens
        self.idle_ttl_s = idle_ttl_s
        self._clock = clock
        self._sessions: OrderedDict[str, Session] = OrderedDict()  # least recently used first

    def __len__(self) -> int:
        self._sweep()
        return len(self._sessions)

    def get(self, session_id: str, owner: str | None) -> Session:
        """The session, marked as used; NotFound (404, naming `session_id`) when it does not
        exist, has expired or belongs to another key."""
        self._sweep()
        session = self._sessions.get(session_id)
        if session is None or session.owner != owner:
            raise NotFound(f"No dialogue session with id {session_id!r} (never made, deleted, "
                           "or expired after being idle).", param="session_id",
                           code="session_not_found")
        self._touch(session)
        return session

    def new(self, owner: str | None) -> Session:
        """A session that is not stored yet: `commit` stores it with its first turn, so a
        failed first turn leaves nothing behind."""
        return Session(id=new_session_id(), owner=owner, created_at=time.time(),
                       last_used=self._clock())

    def commit(self, session: Session, turn: Turn) -> None:
        """Add a finished turn (storing a new session), then enforce the bounds."""
        session.turns.append(turn)
        while len(session.turns) > 1 and (
                len(session.turns) > self.max_turns
                or session.history_tokens() > self.max_history_tokens):
            session.turns.pop(0)
            session.dropped_turns += 1
        self._sessions[session.id] = session
        self._touch(session)
        while len(self._sessions) > self.max_sessions:
            self._sessions.popitem(last=False)

    def delete(self, session_id: str, owner: str | None) -> None:
        self.get(session_id, owner)
        del self._sessions[session_id]

    def expires_in(self, session: Session) -> float | None:
        if self.idle_ttl_s is None:
            return None
        return max(0.0, session.last_used + self.idle_ttl_s - self._clock())

    def _touch(self, session: Session) -> None:
        session.last_used = self._clock()
        if session.id in self._sessions:
            self._sessions.move_to_end(session.id)

    def _sweep(self) -> None:
        if self.idle_ttl_s is None:
            return
        horizon = self._clock() - self.idle_ttl_s
        while self._sessions:
            oldest = next(iter(self._sessions.values()))
            if oldest.last_used > horizon or oldest.lock.locked():
                break
            self._sessions.popitem(last=False)
