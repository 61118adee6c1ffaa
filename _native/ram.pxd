# Guest physical RAM as seen from Cython: a host pointer into the memory the
# monitor owns and mapped into Unicorn with uc_mem_map_ptr (unicorn-facts U9).

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t

cdef class GuestRam:
    cdef uint8_t *base           # host address of guest physical 0
    cdef readonly uint64_t size  # bytes of guest RAM
    cdef object owner            # keeps the buffer alive

    cdef inline uint32_t ld32(self, uint64_t paddr) noexcept nogil
    cdef inline void st32(self, uint64_t paddr, uint32_t value) noexcept nogil
    cdef inline void _check(self, uint64_t paddr, uint64_t n) except *
