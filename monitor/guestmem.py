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


class VirtualMemory:
    """The monitor's accesses to guest memory by *linear* address in protected
    mode: through the guest's page tables when paging is on (the software
    MMU's walk, which sets accessed and dirty bits as hardware does and raises
    monitor.mmu.PageFault), through the A20 mask otherwise."""

    def __init__(self, guestmem: GuestMemory, mmu):
        self.gm = guestmem
        self.mmu = mmu

    def phys(self, linear: int, access: int, cpl: int) -> int:
        return self.mmu.walk(linear & 0xFFFFFFFF, access, cpl)

    def read(self, linear: int, size: int, cpl: int = 0) -> bytes:
        from unicorn import UC_MEM_READ

        out = bytearray()
        while len(out) < size:
            lin = (linear + len(out)) & 0xFFFFFFFF
            chunk = min(size - len(out), 0x1000 - (lin & 0xFFF))
            out += self.gm.read(self.phys(lin, UC_MEM_READ, cpl), chunk)
        return bytes(out)

    def write(self, linear: int, data: bytes, cpl: int = 0) -> None:
        from unicorn import UC_MEM_WRITE

        # Translate every page first, so that a fault leaves memory untouched.
        spans, done = [], 0
        while done < len(data):
            lin = (linear + done) & 0xFFFFFFFF
            chunk = min(len(data) - done, 0x1000 - (lin & 0xFFF))
            spans.append((self.phys(lin, UC_MEM_WRITE, cpl), done, chunk))
            done += chunk
        for phys, at, chunk in spans:
            self.gm.write(phys, data[at:at + chunk])

    def read_code(self, linear: int, size: int, cpl: int) -> tuple[bytes, list[int]]:
        """Up to `size` bytes of guest code and the physical pages they came
        from, stopping at the first unmapped page (PageFault if the first
        byte is unmapped)."""
        from unicorn import UC_MEM_FETCH

        from monitor.mmu import PageFault

        out, pages = bytearray(), []
        while len(out) < size:
            lin = (linear + len(out)) & 0xFFFFFFFF
            chunk = min(size - len(out), 0x1000 - (lin & 0xFFF))
            try:
                phys = self.phys(lin, UC_MEM_FETCH, cpl)
            except PageFault:
                if not out:
                    raise
                break
            pages.append(phys >> 12)
            out += self.gm.read(phys, chunk)
        return bytes(out), pages
