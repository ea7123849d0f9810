"""Gang time-slicing of busy workers with SIGSTOP/SIGCONT, so contention wastes no CPU.

When one model is busy nothing is touched: it has every core. When several are, each period
(40 ms by default) is cut into slices: every busy gang model (llama.cpp: its threads spin at
barriers) gets a slice of its own, during which the other busy workers are stopped, so all its
threads run together; the other busy models share one slice (their threads block instead of
spinning, so the kernel shares cores among them well). Slice lengths follow the models'
priority weights; the heaviest slice comes first in each period, and every busy model runs in
every period, so none starves. A slice ends early once its models have nothing left to do.

What it needs from the registry is small (`Member`: a name, a weight, a pid while the worker
may be paused, a busy flag), so it runs and is tested without workers. It runs on a thread of
its own, not on the event loop, so a slow request handler cannot stretch a slice.

Safety: a worker is stopped only while it has work and its pid says it is serving. Anything
this scheduler stopped is continued when its slice comes, when it goes idle, when its pid
changes or goes away (unload, restart), on `stop()`, and when the thread dies. Signals go
through pidfds where Linux has them, so a recycled pid can never be signalled. A stopped
process can still be killed (SIGKILL works on it), and if the server itself is killed the
kernel continues the workers (see `cpu.continue_on_parent_death`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger("pocketserve.cpu")

MIN_FRACTION = 0.05  # no slice shorter than this part of a period


@dataclass
class Member:
    name: str
    weight: int
    gang: bool
    pid: Callable[[], int | None]  # None while the worker must not be paused (not serving)
    busy: Callable[[], bool]


@dataclass(frozen=True)
class Slice:
    members: tuple[str, ...]
    fraction: float  # of the period


def plan_slices(busy: list[Member]) -> list[Slice]:
    """The slices of one period for these busy members; [] when nothing needs to be paused
    (at most one group busy). Heaviest first, fractions summing to 1."""
    groups: list[tuple[tuple[str, ...], float]] = [((m.name,), m.weight) for m in busy if m.gang]
    shared = [m for m in busy if not m.gang]
    if shared:  # they split one slice, so it weighs what one of them weighs on average
        groups.append((tuple(m.name for m in shared),
                       sum(m.weight for m in shared) / len(shared)))
    if len(groups) < 2:
        return []
    total = sum(w for _, w in groups)
    raw = [max(MIN_FRACTION, w / total) for _, w in groups]
    scale = sum(raw)
    slices = [Slice(names, f / scale) for (names, _), f in zip(groups, raw, strict=True)]
    return sorted(slices, key=lambda s: -s.fraction)


class Signals(Protocol):
    def send(self, pid: int, sig: int) -> bool: ...  # False: the process is gone
    def forget(self, keep: set[int]) -> None: ...


class ProcessSignals:
    """Signals by pidfd (a handle on one process, never a recycled pid), else by pid."""

    def __init__(self) -> None:
        self._fds: dict[int, int] = {}

    def send(self, pid: int, sig: int) -> bool:
        try:
            if hasattr(os, "pidfd_open"):
                fd = self._fds.get(pid)
                if fd is None:
                    fd = self._fds[pid] = os.pidfd_open(pid)
                signal.pidfd_send_signal(fd, sig)
            else:
                os.kill(pid, sig)
            return True
        except (ProcessLookupError, PermissionError):
            self._close(pid)
            return False

    def forget(self, keep: set[int]) -> None:
        for pid in [p for p in self._fds if p not in keep]:
            self._close(pid)

    def _close(self, pid: int) -> None:
        fd = self._fds.pop(pid, None)
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)


class CpuScheduler:
    def __init__(self, members: Callable[[], list[Member]], period_s: float = 0.04,
                 signals: Signals | None = None, poll_s: float = 0.005,
                 clock: Callable[[], float] = time.monotonic):
        self._members = members
        self.period_s = period_s
        self.poll_s = poll_s
        self._signals = signals or ProcessSignals()
        self._clock = clock
        self._stopped: dict[str, tuple[int, float]] = {}  # name -> (pid, since)
        self._waited: dict[str, float] = {}
        self._lock = threading.Lock()  # guards _stopped/_waited for readers on other threads
        self._quit = threading.Event()
        self._thread: threading.Thread | None = None
        self.periods = 0  # periods that sliced, for tests and curiosity

    # -- what the metrics read -------------------------------------------------------------

    def waited_s(self, name: str) -> float:
        """Seconds this model has been held stopped while it had work, so far."""
        with self._lock:
            total = self._waited.get(name, 0.0)
            if name in self._stopped:
                total += self._clock() - self._stopped[name][1]
        return total

    def paused(self, name: str) -> bool:
        with self._lock:
            return name in self._stopped

    # -- running ---------------------------------------------------------------------------

    def start(self) -> None:
        self._quit.clear()
        self._thread = threading.Thread(target=self._run, name="cpu-scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop slicing and continue everything this scheduler stopped."""
        self._quit.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self.continue_all()

    def _run(self) -> None:
        try:
            while not self._quit.is_set():
                self.run_period()
        except Exception:
            log.exception("the CPU scheduler failed; models now run unsliced")
        finally:
            self.continue_all()

    def run_period(self) -> None:
        """One period: plan from who is busy now, then run each slice in turn."""
        members = self._members()
        self._signals.forget({p for m in members if (p := m.pid()) is not None}
                             | {pid for pid, _ in self._stopped.values()})
        busy = [m for m in members if m.pid() is not None and m.busy()]
        slices = plan_slices(busy)
        if not slices:
            self.continue_all()
            self._quit.wait(self.poll_s)
            return
        self.periods += 1
        by_name = {m.name: m for m in members if m.pid() is not None}
        for piece in slices:
            if self._quit.is_set():
                return
            self._pause_others(piece, by_name)
            for name in piece.members:
                self._resume(name)
            self._hold(piece, by_name)

    def _pause_others(self, piece: Slice, by_name: dict[str, Member]) -> None:
        for m in by_name.values():
            if m.name not in piece.members:
                self._pause(m)

    def _hold(self, piece: Slice, by_name: dict[str, Member]) -> None:
        """Let a slice run its time, ending early once its members have no work; meanwhile
        continue at once any stopped worker that must not stay paused, and stop any other
        that got work since the slice began (it waits for the next period: running beside a
        gang slice would make that gang's threads spin)."""
        end = self._clock() + piece.fraction * self.period_s
        while (left := end - self._clock()) > 0 and not self._quit.is_set():
            self._quit.wait(min(self.poll_s, left))
            self._release_ineligible(by_name)
            if not any(by_name[n].busy() for n in piece.members):
                return
            self._pause_others(piece, by_name)

    def _release_ineligible(self, by_name: dict[str, Member]) -> None:
        for name in list(self._stopped):
            pid, _ = self._stopped[name]
            member = by_name.get(name)
            if member is None or member.pid() != pid or not member.busy():
                self._resume(name)

    def _pause(self, m: Member) -> None:
        pid = m.pid()
        if pid is None or m.name in self._stopped or not m.busy():
            return
        if self._signals.send(pid, signal.SIGSTOP):
            with self._lock:
                self._stopped[m.name] = (pid, self._clock())

    def _resume(self, name: str) -> None:
        with self._lock:
            entry = self._stopped.pop(name, None)
            if entry is None:
                return
            pid, since = entry
            self._waited[name] = self._waited.get(name, 0.0) + self._clock() - since
        self._signals.send(pid, signal.SIGCONT)

    def continue_all(self) -> None:
        for name in list(self._stopped):
            self._resume(name)
