"""Physical memory as the monitor lays it out in Unicorn's address space.

Unicorn's physical address space is 64-bit even for a 32-bit guest, so the
monitor puts its own frames above 4 GiB, where no guest physical address (32-bit,
no PAE) can reach them.  The software TLB (monitor/mmu.py) decides which linear
page reaches which frame.

    physical 0 .. ram_size           guest RAM (host memory the monitor owns, U9)
    MONITOR_PHYS .. +4 MiB           the monitor region's frames: TC code, then data
    VOID_PHYS .. +4 KiB              stands in for guest physical memory that does
                                     not exist (reads return what was last written)

Linear addresses of the monitor region (the top 4 MiB of every address space):

    TC_LINEAR   0xFFC00000 .. 0xFFEFFFFF   translated code, fetched only
    DATA_LINEAR 0xFFF00000 .. 0xFFFFFFFF   monitor data: shadow GDT, virtual state
"""

from __future__ import annotations

import ctypes
import mmap

from unicorn import UC_PROT_ALL

PAGE = 0x1000
MONITOR_LINEAR = 0xFFC00000
MONITOR_SIZE = 0x400000
TC_LINEAR = MONITOR_LINEAR
TC_SIZE = 0x300000
DATA_LINEAR = TC_LINEAR + TC_SIZE
DATA_SIZE = MONITOR_SIZE - TC_SIZE
# The `until` address of every run: inside the TC's last page, which is never
# allocated to units, so it is fetch-mapped but never reached (U19).
TC_UNTIL = TC_LINEAR + TC_SIZE - 0x10
TC_ALLOC_END = TC_LINEAR + TC_SIZE - PAGE
MONITOR_PHYS = 0x1_0000_0000
VOID_PHYS = MONITOR_PHYS + MONITOR_SIZE


class MemoryError_(ValueError):
    """A memory size the monitor cannot use."""


def _host_buffer(size: int) -> tuple[mmap.mmap, int]:
    buf = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    return buf, ctypes.addressof(ctypes.c_char.from_buffer(buf))


class PhysicalMemory:
    """Guest RAM plus the monitor's frames, mapped into one Unicorn engine."""

    def __init__(self, uc, ram_size: int):
        if ram_size < 0x100000 or ram_size % PAGE or ram_size > 0xF000_0000:
            raise MemoryError_(
                f"guest memory must be a multiple of 4 KiB between 1 MiB and 3840 MiB, "
                f"not {ram_size} bytes"
            )
        self.ram_size = ram_size
        self._ram_buf, self._ram_addr = _host_buffer(ram_size)
        self._mon_buf, self._mon_addr = _host_buffer(MONITOR_SIZE)
        self._void_buf, self._void_addr = _host_buffer(PAGE)
        uc.mem_map_ptr(0, ram_size, UC_PROT_ALL, self._ram_addr)
        uc.mem_map_ptr(MONITOR_PHYS, MONITOR_SIZE, UC_PROT_ALL, self._mon_addr)
        uc.mem_map_ptr(VOID_PHYS, PAGE, UC_PROT_ALL, self._void_addr)
        self.ram = memoryview(self._ram_buf)          # guest physical memory
        self.monitor = memoryview(self._mon_buf)      # offset = linear - MONITOR_LINEAR

    @property
    def ram_address(self) -> int:
        """Host address of guest physical 0 (for native code)."""
        return self._ram_addr

    @property
    def monitor_address(self) -> int:
        return self._mon_addr

    # Small helpers for the monitor's own (non-hot) accesses to guest RAM.
    def read(self, paddr: int, size: int) -> bytes:
        return bytes(self.ram[paddr:paddr + size])

    def write(self, paddr: int, data: bytes) -> None:
        self.ram[paddr:paddr + len(data)] = data

    def read16(self, paddr: int) -> int:
        return self.ram[paddr] | self.ram[paddr + 1] << 8

    def write16(self, paddr: int, value: int) -> None:
        self.ram[paddr] = value & 0xFF
        self.ram[paddr + 1] = (value >> 8) & 0xFF

    def monitor_word32(self, linear: int) -> int:
        off = self.monitor_offset(linear)
        return int.from_bytes(self.monitor[off:off + 4], "little")

    def monitor_offset(self, linear: int) -> int:
        if not MONITOR_LINEAR <= linear < MONITOR_LINEAR + MONITOR_SIZE:
            raise ValueError(f"{linear:#x} is not in the monitor region")
        return linear - MONITOR_LINEAR
