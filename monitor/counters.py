"""Execution counters in monitor data: one u32 per translated unit or landing pad.

Translated code increments its counter flag-free through ECX
(`mov cs:[scratch], ecx; mov ecx, cs:[ctr]; lea ecx, [ecx+1]; mov cs:[ctr], ecx;
mov ecx, cs:[scratch]`): five plain moves, none of the flags helpers that a
pushfd/add/popfd increment costs in Unicorn.  A u32 could wrap, so the run loop
folds every counter into a Python integer and zeroes it about once a second
(`fold`); no unit or pad runs 2^32 times in a second.

Guest instructions run in BT = sum over units of entries x instructions."""

from __future__ import annotations

import struct

from bt import abi


class CounterPool:
    def __init__(self, monitor_view, layout=abi.DEFAULT):
        self.view = monitor_view
        self.layout = layout
        self.capacity = layout.COUNTERS_SIZE // 4
        self.used = 0
        self.folded: dict[int, int] = {}      # counter address -> counts already folded
        self.retired = 0                       # instructions of units from flushed TC generations
        self.retired_by: dict[str, int] = {}   # the same by unit mode ("real", "pm")

    def allocate(self) -> int:
        """Linear address of a fresh zeroed u32 counter."""
        if self.used >= self.capacity:
            raise OverflowError("execution counters exhausted")
        addr = self.layout.COUNTERS_LINEAR + 4 * self.used
        struct.pack_into("<I", self.view, self.layout.offset(addr), 0)
        self.used += 1
        return addr

    def read(self, addr: int) -> int:
        """Total count of one counter (folded part plus what is in memory now)."""
        return self.folded.get(addr, 0) + struct.unpack_from("<I", self.view, self.layout.offset(addr))[0]

    def fold(self) -> None:
        """Move every live u32 into Python integers (the run loop calls this)."""
        first = self.layout.COUNTERS_LINEAR
        view, base = self.view, self.layout.offset(first)
        values = struct.unpack_from(f"<{self.used}I", view, base)
        for i, v in enumerate(values):
            if v:
                addr = first + 4 * i
                self.folded[addr] = self.folded.get(addr, 0) + v
        view[base:base + 4 * self.used] = bytes(4 * self.used)

    def executed(self, units) -> int:
        return self.retired + sum(self.read(u.counter) * u.n_insns for u in units if u.counter >= 0)

    def executed_by(self, units) -> dict[str, int]:
        """Guest instructions run in BT by unit mode: real mode and protected mode."""
        out = dict(self.retired_by)
        for u in units:
            if u.counter >= 0:
                out[u.key[0]] = out.get(u.key[0], 0) + self.read(u.counter) * u.n_insns
        return out

    def fold_and_reset(self, units) -> None:
        """A TC flush: keep the totals, free every counter."""
        self.retired_by = self.executed_by(units)
        self.retired = self.executed(units)
        self.used = 0
        self.folded.clear()


def increment(counter: int, layout=abi.DEFAULT) -> bytes:
    """The flag-free increment of a u32 counter, for translated code."""
    a = struct.pack("<I", layout.SCRATCH_ECX)
    c = struct.pack("<I", counter)
    return (b"\x2e\x89\x0d" + a + b"\x2e\x8b\x0d" + c + b"\x8d\x49\x01"
            + b"\x2e\x89\x0d" + c + b"\x2e\x8b\x0d" + a)
