"""The translation cache: where translated code lives and how it is found.

The TC occupies linear TC_LINEAR .. +TC_SIZE (mapped fetch-only by the software
TLB), backed by the monitor's frames.  Units are appended; nothing is freed one
by one.  When the TC is full it is flushed whole.

Writing code: fresh code (never executed) is written straight into the host
buffer.  Code that may already have been executed - a continuation stub being
chained - is patched in the buffer and then dropped from Unicorn's own block
cache with `ctl_remove_cache` over the patched linear range (U18: neither the
bare write nor `mem_write` is seen by a loop already running it).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from monitor.memory import TC_ALLOC_END, TC_LINEAR, TC_SIZE


class TCFull(Exception):
    """No room left for a unit; the caller flushes and retranslates."""


@dataclass
class Unit:
    """One translation unit: up to ~12 guest instructions ending at control flow."""

    key: tuple                    # (mode, cs value, guest ip)
    tc_start: int                 # linear TC address of the unit's first byte
    tc_end: int                   # one past its last byte
    guest_len: int                # bytes of guest code translated
    pages: tuple[int, ...]        # guest physical page numbers it came from
    insn_map: list[tuple[int, int]] = field(default_factory=list)  # (tc address, guest ip) per guest instruction
    n_insns: int = 0              # guest instructions in the unit
    valid: bool = True
    checked: bool = False         # validates its guest bytes on entry (page not write-protected)
    eax_scratch: tuple = ()       # TC ranges where EAX holds a branch target (guest EAX in SCRATCH_EAX)

    def guest_ip_at(self, tc_addr: int) -> int | None:
        """Guest IP of the instruction whose translation contains tc_addr."""
        found = None
        for addr, ip in self.insn_map:
            if addr <= tc_addr:
                found = ip
            else:
                break
        return found


@dataclass
class TCStats:
    units: int = 0            # units translated (since start, across flushes)
    insns: int = 0            # guest instructions translated
    bytes: int = 0            # TC bytes emitted
    chain_patches: int = 0    # continuation stubs patched into direct jumps
    jcc_patches: int = 0      # jccs re-pointed from their taken stub to the target unit
    flushes: int = 0          # whole-TC flushes
    invalidated: int = 0      # units dropped by write traces


class TranslationCache:
    def __init__(self, uc, memory):
        self.uc = uc
        self.buf = memory.monitor           # offset 0 == TC_LINEAR
        self.top = TC_LINEAR                 # next free byte
        self.units: dict[tuple, Unit] = {}
        self.by_page: dict[int, list[Unit]] = {}
        self.all_units: list[Unit] = []      # in TC order, for address -> unit lookups
        self.stats = TCStats()
        self.generation = 0                  # bumps on each flush

    # -- space ----------------------------------------------------------------

    def room(self) -> int:
        return TC_ALLOC_END - self.top

    def write_fresh(self, addr: int, code: bytes) -> None:
        off = addr - TC_LINEAR
        self.buf[off:off + len(code)] = code

    def patch(self, addr: int, code: bytes) -> None:
        """Rewrite bytes that may already have been executed (U18)."""
        self.write_fresh(addr, code)
        self.uc.ctl_remove_cache(addr, addr + len(code))

    def read(self, addr: int, size: int) -> bytes:
        off = addr - TC_LINEAR
        return bytes(self.buf[off:off + size])

    def read_u32(self, addr: int) -> int:
        off = addr - TC_LINEAR
        return struct.unpack_from("<I", self.buf, off)[0]

    # -- units ----------------------------------------------------------------

    def add(self, unit: Unit) -> None:
        self.units[unit.key] = unit
        self.all_units.append(unit)
        for page in unit.pages:
            self.by_page.setdefault(page, []).append(unit)
        self.stats.units += 1
        self.stats.insns += unit.n_insns
        self.stats.bytes += unit.tc_end - unit.tc_start

    def lookup(self, key: tuple) -> Unit | None:
        unit = self.units.get(key)
        return unit if unit is not None and unit.valid else None

    def unit_at(self, tc_addr: int) -> Unit | None:
        """The unit whose code contains tc_addr (binary search in TC order)."""
        units = self.all_units
        lo, hi = 0, len(units) - 1
        while lo <= hi:
            mid = (lo + hi) // 2
            u = units[mid]
            if tc_addr < u.tc_start:
                hi = mid - 1
            elif tc_addr >= u.tc_end:
                lo = mid + 1
            else:
                return u
        return None

    def invalidate_unit(self, unit: Unit) -> None:
        if unit.valid:
            unit.valid = False
            if self.units.get(unit.key) is unit:
                del self.units[unit.key]
            self.stats.invalidated += 1

    def take_page(self, page: int) -> list[Unit]:
        """The live units translated from a guest physical page (the page index
        forgets them; the caller drops each with invalidate_unit)."""
        return [u for u in self.by_page.pop(page, []) if u.valid]

    def flush(self) -> None:
        self.uc.ctl_remove_cache(TC_LINEAR, TC_LINEAR + TC_SIZE)
        for unit in self.all_units:
            unit.valid = False
        self.units.clear()
        self.by_page.clear()
        self.all_units.clear()
        self.top = TC_LINEAR
        self.stats.flushes += 1
        self.generation += 1
