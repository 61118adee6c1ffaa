"""Per-unit execution counters in monitor data (u64 each).

Each translated unit increments its own counter on entry (bt/realmode.py); the
guest instructions run in BT are the sum of entries x instructions per unit.
When the TC is flushed the totals are folded into `retired` first."""

from __future__ import annotations

import struct

from bt import abi
from monitor.memory import MONITOR_LINEAR


class CounterPool:
    def __init__(self, monitor_view):
        self.view = monitor_view
        self.base = abi.COUNTERS_LINEAR
        self.capacity = abi.COUNTERS_SIZE // 8
        self.used = 0
        self.retired = 0        # instructions counted by units that were flushed

    def allocate(self) -> int:
        """Linear address of a fresh zeroed counter (wraps to reuse when full)."""
        if self.used >= self.capacity:
            raise OverflowError("execution counters exhausted")
        addr = self.base + 8 * self.used
        struct.pack_into("<Q", self.view, addr - MONITOR_LINEAR, 0)
        self.used += 1
        return addr

    def read(self, addr: int) -> int:
        return struct.unpack_from("<Q", self.view, addr - MONITOR_LINEAR)[0]

    def executed(self, units) -> int:
        return self.retired + sum(self.read(u.counter) * u.n_insns for u in units if u.counter >= 0)

    def fold_and_reset(self, units) -> None:
        self.retired = self.executed(units)
        self.used = 0
