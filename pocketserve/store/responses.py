"""Stored responses for the Responses API (`store`, `previous_response_id`, GET and DELETE).

One SQLite file in the data directory: a row per response with its answer and the items it
read, both as JSON, so the store knows nothing of their shape. The file is opened on first
use (nothing happens at import or construction), every query runs on a worker thread so the
event loop never waits on the disk, and retention is bounded: past `max_count` rows or
`max_age_s` seconds the oldest go. WAL mode lets two server processes share one directory.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pocketserve.errors import StorageFailure

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    response TEXT NOT NULL,
    input_items TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS responses_by_age ON responses (created_at);
"""


@dataclass
class StoredResponse:
    id: str
    created_at: float
    response: dict[str, Any]  # the response object as it was answered
    input_items: list[dict[str, Any]]  # everything the model read, oldest first


class ResponseStore:
    """A small key-value store of responses; `path` is created (with its folder) on first use."""

    def __init__(self, path: Path, *, max_count: int | None = None,
                 max_age_s: float | None = None, clock: Callable[[], float] = time.time):
        self.path = path
        self.max_count = max_count
        self.max_age_s = max_age_s
        self._clock = clock
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    async def put(self, record: StoredResponse) -> None:
        await self._run(self._put, record)

    async def get(self, response_id: str) -> StoredResponse | None:
        return await self._run(self._get, response_id)

    async def delete(self, response_id: str) -> bool:
        return await self._run(self._delete, response_id)

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    # -- on the worker thread ---------------------------------------------------------------

    async def _run(self, work: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(self._locked, work, *args)

    def _locked(self, work: Callable[..., T], *args: Any) -> T:
        with self._lock:
            try:
                return work(self._open(), *args)
            except (sqlite3.Error, OSError) as exc:
                raise StorageFailure(f"The response store {self.path} failed: {exc}. Check "
                                     "the server's data_dir.", code="storage_failure") from exc

    def _open(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=10, check_same_thread=False,
                                 isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
            self._db = db
        return self._db

    def _put(self, db: sqlite3.Connection, record: StoredResponse) -> None:
        with db:
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?)",
                       (record.id, record.created_at, json.dumps(record.response),
                        json.dumps(record.input_items)))
            self._prune(db)

    def _prune(self, db: sqlite3.Connection) -> None:
        if self.max_age_s is not None:
            db.execute("DELETE FROM responses WHERE created_at < ?",
                       (self._clock() - self.max_age_s,))
        if self.max_count is not None:
            db.execute("DELETE FROM responses WHERE id IN (SELECT id FROM responses "
                       "ORDER BY created_at DESC, rowid DESC LIMIT -1 OFFSET ?)",
                       (self.max_count,))

    def _get(self, db: sqlite3.Connection, response_id: str) -> StoredResponse | None:
        row = db.execute("SELECT id, created_at, response, input_items FROM responses "
                         "WHERE id = ?", (response_id,)).fetchone()
        if row is None or self._expired(row[1]):
            return None
        return StoredResponse(row[0], row[1], json.loads(row[2]), json.loads(row[3]))

    def _delete(self, db: sqlite3.Connection, response_id: str) -> bool:
        found = self._get(db, response_id) is not None
        db.execute("DELETE FROM responses WHERE id = ?", (response_id,))
        return found

    def _expired(self, created_at: float) -> bool:
        return self.max_age_s is not None and created_at < self._clock() - self.max_age_s
