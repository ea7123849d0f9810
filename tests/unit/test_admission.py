"""Admission without a model: the bound, FIFO order, 429 when full, deadlines, cancellation."""

from __future__ import annotations

import asyncio
import time

import pytest

from pocketserve.errors import DeadlineExceeded, QueueFull
from pocketserve.serving.admission import Admission


async def _hold(adm: Admission, name: str, order: list[str], release: asyncio.Event,
                deadline: float | None = None) -> None:
    async with adm.slot(deadline):
        order.append(name)
        await release.wait()


def test_bound_and_fifo_order() -> None:
    async def main() -> list[str]:
        adm = Admission("m", max_in_flight=2, max_queue=10)
        order: list[str] = []
        release = asyncio.Event()
        tasks = []
        for name in "abcdef":
            tasks.append(asyncio.create_task(_hold(adm, name, order, release)))
            await asyncio.sleep(0)  # arrive in this order
        await asyncio.sleep(0.01)
        assert adm.in_flight == 2 and adm.queued == 4
        assert order == ["a", "b"]
        release.set()
        await asyncio.gather(*tasks)
        assert adm.in_flight == 0 and adm.queued == 0
        return order

    assert asyncio.run(main()) == list("abcdef")


def test_full_queue_refuses_with_retry_after() -> None:
    async def main() -> None:
        adm = Admission("m", max_in_flight=1, max_queue=1)
        release = asyncio.Event()
        order: list[str] = []
        held = [asyncio.create_task(_hold(adm, n, order, release)) for n in "ab"]
        await asyncio.sleep(0.01)
        with pytest.raises(QueueFull) as caught:
            async with adm.slot():
                pass
        assert caught.value.status == 429
        assert int(caught.value.headers()["Retry-After"]) >= 1
        assert "busy" in caught.value.message
        release.set()
        await asyncio.gather(*held)

    asyncio.run(main())


def test_deadline_in_queue_gives_504_and_frees_the_place() -> None:
    async def main() -> None:
        adm = Admission("m", max_in_flight=1, max_queue=1)
        release = asyncio.Event()
        holder = asyncio.create_task(_hold(adm, "a", [], release))
        await asyncio.sleep(0.01)
        began = time.monotonic()
        with pytest.raises(DeadlineExceeded):
            async with adm.slot(deadline=time.monotonic() + 0.1):
                pass
        assert 0.09 < time.monotonic() - began < 1.0
        assert adm.queued == 0  # its place in line is free again
        release.set()
        await holder
        assert adm.in_flight == 0

    asyncio.run(main())


def test_cancelled_waiter_leaves_and_the_next_gets_the_slot() -> None:
    async def main() -> list[str]:
        adm = Admission("m", max_in_flight=1, max_queue=5)
        release = asyncio.Event()
        order: list[str] = []
        a = asyncio.create_task(_hold(adm, "a", order, release))
        await asyncio.sleep(0)
        b = asyncio.create_task(_hold(adm, "b", order, release))
        await asyncio.sleep(0)
        c = asyncio.create_task(_hold(adm, "c", order, release))
        await asyncio.sleep(0.01)
        b.cancel()  # the client of b went away while waiting
        await asyncio.sleep(0.01)
        assert adm.queued == 1
        release.set()
        await asyncio.gather(a, c)
        assert adm.in_flight == 0
        return order

    assert asyncio.run(main()) == ["a", "c"]
