"""Pure-Python twin of _native/ram.pyx: the same methods over the memoryview."""

from __future__ import annotations

import struct


class GuestRam:
    native = False

    def __init__(self, memory):
        self.owner = memory
        self.view = memory.ram
        self.size = memory.ram_size

    def _check(self, paddr: int, n: int) -> None:
        if paddr < 0 or paddr + n > self.size:
            raise IndexError(f"guest physical {paddr:#x}+{n} is outside {self.size:#x} bytes of RAM")

    def read8(self, paddr):
        self._check(paddr, 1)
        return self.view[paddr]

    def read16(self, paddr):
        self._check(paddr, 2)
        return struct.unpack_from("<H", self.view, paddr)[0]

    def read32(self, paddr):
        self._check(paddr, 4)
        return struct.unpack_from("<I", self.view, paddr)[0]

    def write8(self, paddr, value):
        self._check(paddr, 1)
        self.view[paddr] = value & 0xFF

    def write16(self, paddr, value):
        self._check(paddr, 2)
        struct.pack_into("<H", self.view, paddr, value & 0xFFFF)

    def write32(self, paddr, value):
        self._check(paddr, 4)
        struct.pack_into("<I", self.view, paddr, value & 0xFFFFFFFF)

    def read(self, paddr, n):
        self._check(paddr, n)
        return bytes(self.view[paddr:paddr + n])

    def write(self, paddr, data):
        self._check(paddr, len(data))
        self.view[paddr:paddr + len(data)] = bytes(data)
