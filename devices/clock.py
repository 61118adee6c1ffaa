"""Virtual time for the devices.

Devices never read the host clock.  They ask a ``VirtualClock`` what time it
is (``now_ns``) and schedule callbacks at absolute virtual times; the run loop
moves time forward with ``advance_to()``, which fires the due callbacks in
time order (ties in scheduling order) with ``now_ns`` set to each callback's
own deadline, so a device computing "the next edge after now" never drifts.

Whether virtual time follows the host's monotonic clock or the guest's
instruction count is the run loop's decision; tests simply advance it by
exact nanosecond amounts.  While the CPU idles in HLT the run loop can jump
straight to ``next_deadline()``.

Snapshot: only ``now_ns`` is saved.  ``restore()`` drops every scheduled
event; each device's ``restore()`` then reschedules its own timers, so the
clock must be restored before the devices.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from dataclasses import dataclass
from typing import Callable

from .base import DeviceError, DeviceState

log = logging.getLogger("hybrid86.devices.clock")

NS_PER_SEC = 1_000_000_000


class ClockError(DeviceError):
    """Virtual time was asked to run backwards (a run-loop bug)."""


class TimerHandle:
    """A scheduled callback; pass it to ``VirtualClock.cancel``."""

    __slots__ = ("when_ns", "callback", "cancelled", "seq")

    def __init__(self, when_ns: int, callback: Callable[[], None], seq: int) -> None:
        self.when_ns = when_ns
        self.callback = callback
        self.cancelled = False
        self.seq = seq

    def __lt__(self, other: "TimerHandle") -> bool:
        return (self.when_ns, self.seq) < (other.when_ns, other.seq)

    def __repr__(self) -> str:
        state = "cancelled" if self.cancelled else "pending"
        return f"TimerHandle(at={self.when_ns}ns, {state})"


@dataclass
class ClockState(DeviceState):
    KIND = "clock"
    VERSION = 1
    now_ns: int  # virtual time at the snapshot, in nanoseconds since machine start


class VirtualClock:
    """Monotonic virtual time in integer nanoseconds, with one-shot timers."""

    def __init__(self, start_ns: int = 0) -> None:
        self.now_ns = int(start_ns)
        self._heap: list[TimerHandle] = []
        self._seq = itertools.count()
        #: Callbacks fired so far (statistics).
        self.fired = 0

    def schedule(self, when_ns: int, callback: Callable[[], None]) -> TimerHandle:
        """Call ``callback()`` once virtual time reaches ``when_ns``.

        A deadline already in the past fires on the next ``advance_to``.
        """
        handle = TimerHandle(int(when_ns), callback, next(self._seq))
        heapq.heappush(self._heap, handle)
        return handle

    def schedule_in(self, delay_ns: int, callback: Callable[[], None]) -> TimerHandle:
        return self.schedule(self.now_ns + int(delay_ns), callback)

    def cancel(self, handle: TimerHandle | None) -> None:
        """Cancel a pending callback; cancelling twice, ``None`` or a fired one is harmless."""
        if handle is not None:
            handle.cancelled = True

    def next_deadline(self) -> int | None:
        """The earliest pending deadline, or ``None`` when nothing is scheduled."""
        heap = self._heap
        while heap and heap[0].cancelled:
            heapq.heappop(heap)
        return heap[0].when_ns if heap else None

    def advance_to(self, t_ns: int) -> int:
        """Move time to ``t_ns``, firing due callbacks in order; returns how many fired.

        A callback may schedule further callbacks; those due by ``t_ns`` fire
        in the same call.
        """
        t_ns = int(t_ns)
        if t_ns < self.now_ns:
            raise ClockError(f"virtual time cannot go back from {self.now_ns} ns to {t_ns} ns")
        fired = 0
        heap = self._heap
        while heap and heap[0].when_ns <= t_ns:
            handle = heapq.heappop(heap)
            if handle.cancelled:
                continue
            handle.cancelled = True  # fired: a later cancel() is a no-op
            if handle.when_ns > self.now_ns:
                self.now_ns = handle.when_ns
            handle.callback()
            fired += 1
        self.now_ns = t_ns
        self.fired += fired
        return fired

    def advance_by(self, delta_ns: int) -> int:
        return self.advance_to(self.now_ns + int(delta_ns))

    def pending(self) -> int:
        return sum(1 for h in self._heap if not h.cancelled)

    def save(self) -> ClockState:
        return ClockState(now_ns=self.now_ns)

    def restore(self, state: ClockState) -> None:
        """Set the time and drop every timer (devices reschedule theirs on restore)."""
        if not isinstance(state, ClockState):
            raise TypeError(f"clock: restore() needs a ClockState, got {type(state).__name__}")
        for handle in self._heap:
            handle.cancelled = True
        self._heap.clear()
        self.now_ns = state.now_ns
