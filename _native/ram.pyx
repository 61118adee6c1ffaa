# cython: language_level=3
"""Guest physical RAM without API calls (twin: _native/ram_py.py).

`GuestRam(memory)` wraps monitor.memory.PhysicalMemory's host buffer. Cython
callers use the `cdef` accessors with no bounds checks (they check once per
access range); Python callers get bounds-checked methods.  Little-endian, as
the guest sees memory."""

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy


cdef class GuestRam:
    def __init__(self, memory):
        self.owner = memory
        self.base = <uint8_t *><size_t>memory.ram_address
        self.size = memory.ram_size

    native = True

    cdef inline uint32_t ld32(self, uint64_t paddr) noexcept nogil:
        cdef uint32_t v
        memcpy(&v, self.base + paddr, 4)
        return v

    cdef inline void st32(self, uint64_t paddr, uint32_t value) noexcept nogil:
        memcpy(self.base + paddr, &value, 4)

    cdef inline void _check(self, uint64_t paddr, uint64_t n) except *:
        if paddr + n > self.size or paddr + n < paddr:
            raise IndexError(f"guest physical {paddr:#x}+{n} is outside {self.size:#x} bytes of RAM")

    def read8(self, uint64_t paddr):
        self._check(paddr, 1)
        return self.base[paddr]

    def read16(self, uint64_t paddr):
        cdef uint16_t v
        self._check(paddr, 2)
        memcpy(&v, self.base + paddr, 2)
        return v

    def read32(self, uint64_t paddr):
        self._check(paddr, 4)
        return self.ld32(paddr)

    def write8(self, uint64_t paddr, uint8_t value):
        self._check(paddr, 1)
        self.base[paddr] = value

    def write16(self, uint64_t paddr, uint16_t value):
        self._check(paddr, 2)
        memcpy(self.base + paddr, &value, 2)

    def write32(self, uint64_t paddr, uint32_t value):
        self._check(paddr, 4)
        self.st32(paddr, value)

    def read(self, uint64_t paddr, uint64_t n):
        self._check(paddr, n)
        return (<char *>(self.base + paddr))[:n]

    def write(self, uint64_t paddr, const uint8_t[:] data):
        cdef uint64_t n = data.shape[0]
        self._check(paddr, n)
        if n:
            memcpy(self.base + paddr, &data[0], n)
