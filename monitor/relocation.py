"""Keeping the monitor's data out of the guest's way.

The monitor region is the top 4 MiB of linear space, as in VMware's monitor.
Its first 3 MiB, the TC, cost the guest nothing: the software TLB maps them
fetch-only onto the TC in BT, and every data access there reaches the guest's
own memory (docs/mmu.md).  The last 1 MiB, monitor data (shadow GDT, virtual
state, lookup table), is read and written by translated code with
ordinary data accesses, which the TLB cannot tell from the guest's.  So the
monitor keeps that window on linear pages the guest does not map:

* with paging off the window stays at DATA_LINEAR (0xFFF00000), physical
  addresses above the guest's RAM;
* with paging on, after every CR3 load, CR0.PG change and `invlpg`, and after
  every guest write to the page directory or to the page table that covers
  the window (write traces on those frames), the monitor checks whether the
  guest maps any page of the window; if so it moves the window to the start of
  a 4 MiB region whose page-directory entry is not present, which means a TC
  flush (translated code embeds the addresses) and a new real GDTR base.

A guest that maps every 4 MiB of its address space leaves no room: the VM
stops with that explanation.
"""

from __future__ import annotations

import struct

from bt.abi import DATA_SIZE
from monitor.memory import DATA_LINEAR
from monitor.realmode import VMStop


# Bit 0 (P) of each of the 256 page-table entries under the window, as one integer.
PRESENT_BITS = sum(1 << (32 * i) for i in range(DATA_SIZE >> 12))


class DataWindow:
    def __init__(self, machine):
        self.m = machine
        self.moves = 0
        self.checks = 0
        self.watched: set[int] = set()      # physical page numbers of guest paging structures we trace
        self.recheck = False

    # -- the guest's page tables ------------------------------------------------------

    def _pde(self, linear: int) -> int:
        v = self.m.vcpu
        addr = (v.cr3 & 0xFFFFF000) + 4 * (linear >> 22)
        return struct.unpack_from("<I", self.m.memory.ram, addr)[0] if addr + 4 <= self.m.memory.ram_size else 0

    def guest_maps(self, base: int) -> bool:
        """Does the guest map any page of [base, base + DATA_SIZE)?"""
        pde = self._pde(base)
        if not pde & 1:
            return False
        if pde & 0x80 and self.m.vcpu.cr4 & 0x10:
            return True
        table = pde & 0xFFFFF000
        first = (base >> 12) & 0x3FF
        if table + 4096 > self.m.memory.ram_size:
            return False
        raw = bytes(self.m.memory.ram[table + 4 * first:table + 4 * first + 4 * (DATA_SIZE >> 12)])
        return int.from_bytes(raw, "little") & PRESENT_BITS != 0

    def _paging(self) -> bool:
        v = self.m.vcpu
        return bool(v.cr0 & 0x80000001 == 0x80000001)

    def _watch(self) -> None:
        """Trace the page directory and the page table under the window."""
        mmu = self.m.mmu
        for pfn in self.watched:
            mmu.untrace(pfn)
        self.watched.clear()
        if not self._paging():
            return
        frames = {self.m.vcpu.cr3 >> 12}
        pde = self._pde(self.m.abi.base)
        if pde & 1 and not (pde & 0x80 and self.m.vcpu.cr4 & 0x10):
            frames.add(pde >> 12)
        for pfn in frames:
            if pfn < self.m.memory.ram_size >> 12:
                self.watched.add(pfn)
                mmu.trace_page(pfn)

    # -- the check ------------------------------------------------------------------------

    def check(self) -> None:
        """Move the window if the guest maps it now (the caller stands at a
        guest instruction boundary and translates its next instruction anew)."""
        self.checks += 1
        self.recheck = False
        if not self._paging():
            if self.m.abi.base != DATA_LINEAR:
                self._move(DATA_LINEAR)
            self._watch()
            return
        base = self.m.abi.base
        if self.guest_maps(base):
            self._move(self._find_hole())
        self._watch()

    def _find_hole(self) -> int:
        if not self.guest_maps(DATA_LINEAR):
            return DATA_LINEAR
        for index in range(1022, 0, -1):       # 4 MiB regions below the monitor region
            if not self._pde(index << 22) & 1:
                return index << 22
        raise VMStop("the guest maps every 4 MiB region of its address space: there is no "
                     "room left for the monitor's data window (docs/mmu.md)")

    def _move(self, base: int) -> None:
        self.m.relocate_data(base)
        self.moves += 1
