# cython: language_level=3
"""The software MMU's TLB-fill hook in C (twin: monitor/mmu.py SoftMMU).

Same policy, same state, same answers as the Python twin; the tests hold them
equal page by page.  The hook runs without the GIL; it takes it only to tell
the monitor about the first write to a traced page (a rare event).
"""

from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free
from _native.uc_api cimport *

from unicorn import UcError

# Layout constants, shared with monitor/memory.py (checked at construction).
cdef uint64_t MONITOR_LINEAR = <uint64_t>0xFFC00000UL
cdef uint64_t DATA_LINEAR = <uint64_t>0xFFF00000UL
cdef uint64_t MONITOR_PHYS = <uint64_t>0x100000000ULL
cdef uint64_t VOID_PHYS = <uint64_t>0x100400000ULL

cdef struct MmuCore:
    uint64_t ram_size
    uint32_t a20_mask
    uint8_t *traced          # one bit per guest physical page
    uint64_t n_pages
    uint64_t fills
    uint64_t trace_hits
    int trace_exit           # a fill refused a write to trace it
    void *owner


cdef bint _on_trace(MmuCore *c, uint64_t pfn) noexcept with gil:
    cdef NativeMMU mmu = <NativeMMU>c.owner
    try:
        if mmu.on_code_write is not None:
            mmu.on_code_write(pfn)
    except BaseException as exc:          # never let Python errors cross the C hook
        mmu.pending_error = exc
    return True


cdef bint _fill(uc_engine *uc, uint64_t vaddr, uc_mem_type access, uc_tlb_entry *result, void *user) noexcept nogil:
    cdef MmuCore *c = <MmuCore *>user
    cdef uint64_t page = vaddr & ~(<uint64_t>0xFFF)
    cdef uint64_t phys, pfn
    c.fills += 1
    if page >= MONITOR_LINEAR:
        if page < DATA_LINEAR:
            if access == UC_MEM_FETCH:
                result.paddr = MONITOR_PHYS + (page - MONITOR_LINEAR)
                result.perms = UC_PROT_EXEC
            else:
                result.paddr = VOID_PHYS
                result.perms = UC_PROT_READ | UC_PROT_WRITE
            return True
        result.paddr = MONITOR_PHYS + (page - MONITOR_LINEAR)
        result.perms = UC_PROT_READ | UC_PROT_WRITE
        return True
    phys = page & <uint64_t>c.a20_mask
    if phys >= c.ram_size:
        result.paddr = VOID_PHYS
        result.perms = UC_PROT_READ | UC_PROT_WRITE | UC_PROT_EXEC
        return True
    pfn = phys >> 12
    if c.traced[pfn >> 3] & (1 << (pfn & 7)):
        if access == UC_MEM_WRITE:
            c.trace_hits += 1
            c.traced[pfn >> 3] &= ~(1 << (pfn & 7))
            _on_trace(c, pfn)
            c.trace_exit = 1
            return False
        result.paddr = phys
        result.perms = UC_PROT_READ | UC_PROT_EXEC
        return True
    result.paddr = phys
    result.perms = UC_PROT_READ | UC_PROT_WRITE | UC_PROT_EXEC
    return True


cdef class NativeMMU:
    """Drop-in for monitor.mmu.SoftMMU with the fill hook in C."""

    cdef MmuCore core
    cdef object uc
    cdef uc_engine *engine
    cdef uc_hook hook
    cdef public object on_code_write
    cdef public object pending_error
    cdef public object memory

    def __cinit__(self):
        self.core.traced = NULL

    def __init__(self, uc, memory, on_code_write=None):
        from monitor import memory as layout
        from unicorn import UC_TLB_VIRTUAL

        if (layout.MONITOR_LINEAR, layout.DATA_LINEAR, layout.MONITOR_PHYS, layout.VOID_PHYS) != (
                MONITOR_LINEAR, DATA_LINEAR, MONITOR_PHYS, VOID_PHYS):
            raise RuntimeError("monitor/memory.py layout differs from _native/mmu.pyx")
        self.uc = uc
        self.memory = memory
        self.engine = <uc_engine *><size_t>uc._uch.value
        self.on_code_write = on_code_write
        self.pending_error = None
        self.core.ram_size = memory.ram_size
        self.core.n_pages = (memory.ram_size + 0xFFF) >> 12
        self.core.traced = <uint8_t *>calloc((self.core.n_pages >> 3) + 1, 1)
        self.core.a20_mask = <uint32_t>0xFFEFFFFFU
        self.core.owner = <void *>self
        uc.ctl_set_tlb_mode(UC_TLB_VIRTUAL)
        cdef uc_err err = uc_hook_add(self.engine, &self.hook, UC_HOOK_TLB_FILL, <void *>_fill,
                                      &self.core, 1, 0)
        if err != UC_ERR_OK:
            raise UcError(err)

    def __dealloc__(self):
        if self.core.traced != NULL:
            free(self.core.traced)

    native = True

    @property
    def fills(self):
        return self.core.fills

    @property
    def trace_hits(self):
        return self.core.trace_hits

    @property
    def trace_exit(self):
        return bool(self.core.trace_exit)

    @trace_exit.setter
    def trace_exit(self, value):
        self.core.trace_exit = 1 if value else 0

    @property
    def a20_mask(self):
        return self.core.a20_mask

    @property
    def a20(self):
        return self.core.a20_mask == <uint32_t>0xFFFFFFFFU

    def set_a20(self, bint enabled):
        cdef uint32_t mask = <uint32_t>0xFFFFFFFFU if enabled else <uint32_t>0xFFEFFFFFU
        if mask != self.core.a20_mask:
            self.core.a20_mask = mask
            self.flush()

    def is_traced(self, uint64_t pfn):
        return pfn < self.core.n_pages and bool(self.core.traced[pfn >> 3] & (1 << (pfn & 7)))

    def trace_page(self, uint64_t pfn):
        if pfn < self.core.n_pages and not self.core.traced[pfn >> 3] & (1 << (pfn & 7)):
            self.core.traced[pfn >> 3] |= (1 << (pfn & 7))
            self.flush()

    def untrace(self, uint64_t pfn):
        if pfn < self.core.n_pages:
            self.core.traced[pfn >> 3] &= ~(1 << (pfn & 7))

    def traced_pages(self):
        return {p for p in range(self.core.n_pages) if self.core.traced[p >> 3] & (1 << (p & 7))}

    def translate(self, uint64_t page, int access):
        """The fill's answer for one page, as (paddr, perms) or None (for tests)."""
        cdef uc_tlb_entry entry
        if _fill(self.engine, page, <uc_mem_type>access, &entry, &self.core):
            return (entry.paddr, entry.perms)
        return None

    def flush(self):
        from unicorn import UC_CTL_IO_WRITE, UC_CTL_TLB_FLUSH
        self.uc.ctl(UC_CTL_TLB_FLUSH, UC_CTL_IO_WRITE)
