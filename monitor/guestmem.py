"""The monitor's own accesses to guest memory by linear address (real mode).

Every write goes through `write`, which tells the translator when it lands on
a page holding translated code (the TLB's write trace only sees the guest's
own stores)."""

from __future__ import annotations

import struct


class GuestMemory:
    def __init__(self, memory, mmu, on_code_write):
        self.memory = memory
        self.mmu = mmu
        self.on_code_write = on_code_write     # (pfn) -> None
        self.ram = memory.ram
        self.size = memory.ram_size

    def phys(self, linear: int) -> int:
        return linear & self.mmu.a20_mask

    def read(self, linear: int, size: int) -> bytes:
        p = linear & self.mmu.a20_mask
        if p + size <= self.size and (p + size - 1) & self.mmu.a20_mask == p + size - 1:
            return bytes(self.ram[p:p + size])           # the common case: no wrap, all RAM
        out = bytearray()
        for i in range(size):
            p = self.phys(linear + i)
            out.append(self.ram[p] if p < self.size else 0xFF)
        return bytes(out)

    def write(self, linear: int, data: bytes) -> None:
        last = None
        for i, b in enumerate(data):
            p = self.phys(linear + i)
            if p >= self.size:
                continue
            pfn = p >> 12
            if pfn != last:
                last = pfn
                if self.mmu.is_traced(pfn):
                    self.mmu.untrace(pfn)
                    self.on_code_write(pfn)
            self.ram[p] = b

    def read16(self, linear: int) -> int:
        return struct.unpack("<H", self.read(linear, 2))[0]

    def read32(self, linear: int) -> int:
        return struct.unpack("<I", self.read(linear, 4))[0]

    def write16(self, linear: int, value: int) -> None:
        self.write(linear, struct.pack("<H", value & 0xFFFF))

    def write32(self, linear: int, value: int) -> None:
        self.write(linear, struct.pack("<I", value & 0xFFFFFFFF))
