"""The stored-responses database: lazy, bounded by count and age, shared by two processes'
stores on one folder."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from pocketserve.config import Settings
from pocketserve.errors import StorageFailure
from pocketserve.store.responses import ResponseStore, StoredResponse


def _record(n: int, at: float) -> StoredResponse:
    return StoredResponse(f"resp_{n}", at, {"id": f"resp_{n}", "output": [{"n": n}]},
                          [{"id": f"msg_{n}", "type": "message"}])


def test_nothing_is_created_until_first_use(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "responses.sqlite3"
    store = ResponseStore(path)
    assert not path.parent.exists()
    assert asyncio.run(store.get("resp_x")) is None
    assert path.exists()
    store.close()


def test_put_get_delete_and_a_second_store_on_the_same_file(tmp_path: Path) -> None:
    path = tmp_path / "responses.sqlite3"
    first, second = ResponseStore(path), ResponseStore(path)

    async def run() -> None:
        await first.put(_record(1, 100.0))
        again = await second.get("resp_1")  # another "process" sees it
        assert again is not None
        assert again.response == {"id": "resp_1", "output": [{"n": 1}]}
        assert again.input_items == [{"id": "msg_1", "type": "message"}]
        assert await second.delete("resp_1") is True
        assert await first.get("resp_1") is None
        assert await first.delete("resp_1") is False

    asyncio.run(run())
    first.close()
    second.close()


def test_oldest_go_past_the_count(tmp_path: Path) -> None:
    store = ResponseStore(tmp_path / "r.sqlite3", max_count=3)

    async def run() -> list[bool]:
        for n in range(5):
            await store.put(_record(n, 1000.0 + n))
        return [await store.get(f"resp_{n}") is not None for n in range(5)]

    assert asyncio.run(run()) == [False, False, True, True, True]
    store.close()


def test_expired_ones_are_gone_even_before_the_next_put(tmp_path: Path) -> None:
    now = [1000.0]
    store = ResponseStore(tmp_path / "r.sqlite3", max_age_s=60, clock=lambda: now[0])

    async def run() -> tuple[bool, bool, bool]:
        await store.put(_record(1, 990.0))
        fresh = await store.get("resp_1") is not None
        now[0] = 1051.0  # 61 s after it was made
        stale = await store.get("resp_1") is not None
        await store.put(_record(2, 1051.0))  # pruned from the file too
        rows = store._open().execute("SELECT count(*) FROM responses").fetchone()[0]
        return fresh, stale, rows == 1

    assert asyncio.run(run()) == (True, False, True)
    store.close()


def test_data_dir_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    monkeypatch.delenv("POCKETSERVE_DATA_DIR", raising=False)
    assert Settings(models=[]).data_dir == tmp_path / "pocketserve"
    monkeypatch.setenv("POCKETSERVE_DATA_DIR", str(tmp_path / "elsewhere"))
    assert Settings(models=[]).data_dir == tmp_path / "elsewhere"


def test_a_broken_data_dir_is_a_storage_failure(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    store = ResponseStore(tmp_path / "file" / "responses.sqlite3")
    with pytest.raises(StorageFailure, match="data_dir") as caught:
        asyncio.run(store.get("resp_1"))
    assert caught.value.status == 500 and caught.value.kind == "server_error"
