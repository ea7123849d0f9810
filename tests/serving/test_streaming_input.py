"""An operation whose input keeps arriving (LISTEN): frames go in while events come out, the
end of the input finishes it, and leaving early cancels it in the worker."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from pocketserve.errors import DeadlineExceeded
from pocketserve.ops.transcription import LISTEN, AudioFrame, ListenRequest, Partial, Segment
from tests.serving.helpers import (
    deadline_in,
    eventually,
    fake,
    serving,
    settings,
    worker_active,
    worker_idle,
)

FRAME = AudioFrame(pcm=b"\0\1" * 160)  # 160 samples, 10 ms at 16 kHz


def test_frames_in_partials_out_then_the_final_segment(tmp_path: Path) -> None:
    async def body() -> None:
        async with serving(settings(tmp_path, fake("f"))) as registry, \
                registry.open("f", LISTEN, ListenRequest()) as stream:
            events = aiter(stream.events())
            partials = []
            for _ in range(3):  # each frame answered before the next is sent
                stream.send(FRAME)
                partials.append(await anext(events))
            assert [(type(p), p.text) for p in partials] == [
                (Partial, "160 samples"), (Partial, "320 samples"), (Partial, "480 samples")]
            stream.end_input()
            final = [e async for e in events]
            assert len(final) == 1 and isinstance(final[0], Segment)
            assert final[0].text == "480 samples" and final[0].end == pytest.approx(0.03)
            assert await eventually(worker_idle(registry, "f"))  # it ends just after End

    asyncio.run(body())


def test_leaving_midway_cancels_it_in_the_worker(tmp_path: Path) -> None:
    async def body() -> None:
        async with serving(settings(tmp_path, fake("f"))) as registry:
            async with registry.open("f", LISTEN, ListenRequest()) as stream:
                stream.send(FRAME)
                assert isinstance(await anext(aiter(stream.events())), Partial)
                assert await worker_active(registry, "f") == 1  # waiting for more input
                assert registry.model("f").admission.in_flight == 1
            # Left without ending the input: the worker drops it, the slot is free.
            assert await eventually(worker_idle(registry, "f"))
            assert registry.model("f").admission.in_flight == 0

    asyncio.run(body())


def test_a_deadline_stops_a_listen_that_waits_for_input(tmp_path: Path) -> None:
    async def body() -> None:
        async with serving(settings(tmp_path, fake("f"))) as registry:
            with deadline_in(0.3), pytest.raises(DeadlineExceeded):
                async with registry.open("f", LISTEN, ListenRequest()) as stream:
                    stream.send(FRAME)
                    async for _ in stream.events():  # no more input comes
                        pass
            assert await eventually(worker_idle(registry, "f"))

    asyncio.run(body())

