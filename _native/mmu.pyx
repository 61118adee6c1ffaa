# cython: language_level=3
"""The software MMU's TLB-fill hook in C (twin: monitor/mmu.py SoftMMU).

Same policy, same state, same answers as the Python twin; the tests hold them
equal page by page, including the Accessed/Dirty bits the page walk writes
into guest RAM.  The hook runs without the GIL; it takes it only to tell the
monitor about the first write to a traced page (a rare event).  docs/mmu.md
has the policy table.
"""

from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free
from libc.string cimport memcpy
from _native.uc_api cimport *

from unicorn import UcError

from monitor.mmu import PageFault, check_data_base

# Layout constants, shared with monitor/memory.py (checked at construction).
cdef uint64_t MONITOR_LINEAR = <uint64_t>0xFFC00000UL
cdef uint64_t TC_LINEAR = <uint64_t>0xFFC00000UL
cdef uint64_t DATA_LINEAR = <uint64_t>0xFFF00000UL       # the TC's end; the data window's default base
cdef uint64_t DATA_SIZE = <uint64_t>0x100000UL           # the data window: 1 MiB
cdef uint64_t TC_ALLOC_END = <uint64_t>0xFFEFF000UL      # the TC's last page (TC_UNTIL, U19)
cdef uint64_t MONITOR_PHYS = <uint64_t>0x100000000ULL
cdef uint64_t VOID_PHYS = <uint64_t>0x100400000ULL
cdef uint64_t DATA_FRAMES = <uint64_t>0x100300000ULL     # MONITOR_PHYS + (DATA_LINEAR - MONITOR_LINEAR)

# Control-register, page-table-entry and #PF error-code bits (monitor/mmu.py).
cdef uint32_t CR0_PE = 1, CR0_WP = 1 << 16, CR0_PG = 1U << 31, CR4_PSE = 1 << 4
cdef uint32_t PTE_P = 0x01, PTE_RW = 0x02, PTE_US = 0x04, PTE_A = 0x20, PTE_D = 0x40, PTE_PS = 0x80
cdef int PF_P = 1, PF_W = 2, PF_U = 4

cdef struct MmuCore:
    uint64_t ram_size
    uint8_t *ram             # host address of guest physical 0 (page tables)
    uint32_t a20_mask
    uint8_t *traced          # one bit per guest physical page
    uint64_t n_pages
    uint64_t fills
    uint64_t trace_hits
    uint64_t faults          # page faults recorded by fills
    int trace_exit           # a fill refused a write to trace it
    int frozen               # refuse every fill (the monitor is unwinding a denied DE I/O)
    # guest control state
    uint32_t cr0, cr3, cr4
    int paging, wp, pse, user, de, cpl
    uint32_t pdbr
    uint64_t data_base       # the monitor-data window's linear base (set_data_base)
    # the last refused fill's page fault
    int pf_valid
    uint32_t pf_linear
    int pf_code
    void *owner


cdef bint _on_trace(MmuCore *c, uint64_t pfn) noexcept with gil:
    cdef NativeMMU mmu = <NativeMMU>c.owner
    try:
        if mmu.on_code_write is not None:
            mmu.on_code_write(pfn)
    except BaseException as exc:          # never let Python errors cross the C hook
        mmu.pending_error = exc
    return True


cdef inline uint32_t _entry(MmuCore *c, uint32_t paddr) noexcept nogil:
    """A page-table entry; tables beyond RAM read as 0 (not present)."""
    cdef uint32_t v
    if paddr >= c.ram_size:
        return 0
    memcpy(&v, c.ram + paddr, 4)
    return v


cdef inline void _store(MmuCore *c, uint32_t paddr, uint32_t value) noexcept nogil:
    memcpy(c.ram + paddr, &value, 4)


cdef int _walk(MmuCore *c, uint32_t linear, int write, int user, int set_ad,
               uint64_t *phys, int *perms) noexcept nogil:
    """32-bit paging walk.  Returns -1 with *phys / *perms set, or the #PF
    error code.  Write permission only when allowed and the final entry is dirty."""
    cdef int code = (PF_W if write else 0) | (PF_U if user else 0)
    cdef uint32_t mask = c.a20_mask
    cdef uint32_t pde_addr = (c.pdbr | ((linear >> 20) & 0xFFC)) & mask
    cdef uint32_t pde = _entry(c, pde_addr)
    cdef uint32_t pte_addr = 0, pte, rights, new, addr
    cdef int big, writable
    cdef uint32_t p
    if not pde & PTE_P:
        return code
    big = (pde & PTE_PS) != 0 and c.pse
    if big:
        pte = pde
        rights = pde
        p = (pde & 0xFFC00000U) | (linear & 0x3FFFFFU)
    else:
        pte_addr = ((pde & 0xFFFFF000U) | ((linear >> 10) & 0xFFC)) & mask
        pte = _entry(c, pte_addr)
        if not pte & PTE_P:
            return code
        rights = pde & pte
        p = (pte & 0xFFFFF000U) | (linear & 0xFFF)
    if user and not rights & PTE_US:
        return code | PF_P
    writable = (rights & PTE_RW) != 0 or (not user and not c.wp)
    if write and not writable:
        return code | PF_P
    if set_ad:                              # present entries are in RAM (_entry)
        if not big and not pde & PTE_A:
            _store(c, pde_addr, pde | PTE_A)
        new = pte | PTE_A | (PTE_D if write else 0)     # the PTE, or the 4 MiB PDE
        if new != pte:
            addr = pde_addr if big else pte_addr
            _store(c, addr, new)
        pte = new
    phys[0] = p & mask
    if writable and pte & PTE_D:
        perms[0] = UC_PROT_READ | UC_PROT_WRITE | UC_PROT_EXEC
    else:
        perms[0] = UC_PROT_READ | UC_PROT_EXEC
    return -1


cdef inline bint _refuse(MmuCore *c, uint64_t page, int code) noexcept nogil:
    c.pf_valid = 1
    c.pf_linear = <uint32_t>page
    c.pf_code = code
    c.faults += 1
    return False


cdef bint _fill(uc_engine *uc, uint64_t vaddr, uc_mem_type access, uc_tlb_entry *result, void *user) noexcept nogil:
    cdef MmuCore *c = <MmuCore *>user
    cdef uint64_t page = vaddr & ~(<uint64_t>0xFFF)
    cdef uint64_t phys, pfn
    cdef uint64_t offset = page - c.data_base    # wraps to huge below the window
    cdef int perms, code, tc
    cdef int data = access != UC_MEM_FETCH
    c.fills += 1
    if c.frozen:
        return False
    if offset < DATA_SIZE:
        # The monitor-data window (wherever it is): read-write in BT; read-only
        # in DE, where a guest write or fetch faults.
        if not c.de:
            result.paddr = DATA_FRAMES + offset
            result.perms = UC_PROT_READ | UC_PROT_WRITE
            return True
        if access == UC_MEM_WRITE:
            return _refuse(c, page, PF_P | PF_W | (PF_U if c.user else 0))
        if access == UC_MEM_FETCH:
            return _refuse(c, page, PF_P | (PF_U if c.user else 0))
        result.paddr = DATA_FRAMES + offset
        result.perms = UC_PROT_READ
        return True
    tc = page >= TC_LINEAR and page < DATA_LINEAR
    if tc and not data and (not c.de or page == TC_ALLOC_END):
        result.paddr = MONITOR_PHYS + (page - TC_LINEAR)
        result.perms = UC_PROT_EXEC              # the TC: fetch-only
        return True
    # Anything else, a TC page's data included, is the guest's own memory
    # (DATA_LINEAR.. too when the window is elsewhere).
    if c.paging:
        code = _walk(c, <uint32_t>page, access == UC_MEM_WRITE, c.user, 1, &phys, &perms)
        if code >= 0:
            return _refuse(c, page, code)
    else:
        phys = page & <uint64_t>c.a20_mask
        perms = UC_PROT_READ | UC_PROT_WRITE | UC_PROT_EXEC
    if data and tc:
        perms &= ~UC_PROT_EXEC                   # a fetch there must ask again
    if phys >= c.ram_size:
        result.paddr = VOID_PHYS
        result.perms = perms
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
        result.perms = perms & ~UC_PROT_WRITE
        return True
    result.paddr = phys
    result.perms = perms
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

        if (layout.MONITOR_LINEAR, layout.TC_LINEAR, layout.DATA_LINEAR, layout.DATA_SIZE,
                layout.TC_ALLOC_END, layout.MONITOR_PHYS, layout.VOID_PHYS,
                layout.MONITOR_PHYS + (layout.DATA_LINEAR - layout.MONITOR_LINEAR)) != (
                MONITOR_LINEAR, TC_LINEAR, DATA_LINEAR, DATA_SIZE, TC_ALLOC_END, MONITOR_PHYS,
                VOID_PHYS, DATA_FRAMES):
            raise RuntimeError("monitor/memory.py layout differs from _native/mmu.pyx")
        self.uc = uc
        self.memory = memory
        self.engine = <uc_engine *><size_t>uc._uch.value
        self.on_code_write = on_code_write
        self.pending_error = None
        self.core.ram_size = memory.ram_size
        self.core.ram = <uint8_t *><size_t>memory.ram_address
        self.core.n_pages = (memory.ram_size + 0xFFF) >> 12
        self.core.traced = <uint8_t *>calloc((self.core.n_pages >> 3) + 1, 1)
        self.core.a20_mask = <uint32_t>0xFFEFFFFFU
        self.core.data_base = DATA_LINEAR
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
    def faults(self):
        return self.core.faults

    @property
    def trace_exit(self):
        return bool(self.core.trace_exit)

    @trace_exit.setter
    def trace_exit(self, value):
        self.core.trace_exit = 1 if value else 0

    @property
    def frozen(self):
        return bool(self.core.frozen)

    def freeze(self, bint on):
        """Refuse every fill (and flush), so that no further memory access of
        the running block lands: the monitor is about to restore a saved context."""
        self.core.frozen = 1 if on else 0
        self.flush()

    @property
    def page_fault(self):
        """(linear page, error code) of the last fill refused by a page fault, or None."""
        if not self.core.pf_valid:
            return None
        return (self.core.pf_linear, self.core.pf_code)

    @page_fault.setter
    def page_fault(self, value):
        if value is None:
            self.core.pf_valid = 0
        else:
            self.core.pf_linear, self.core.pf_code = value
            self.core.pf_valid = 1

    def clear_page_fault(self):
        self.core.pf_valid = 0

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

    # -- guest control state (see monitor/mmu.py for the semantics) -----------

    @property
    def cr0(self):
        return self.core.cr0

    @property
    def cr3(self):
        return self.core.cr3

    @property
    def cr4(self):
        return self.core.cr4

    @property
    def paging(self):
        return bool(self.core.paging)

    @property
    def cpl(self):
        return self.core.cpl

    @property
    def world(self):
        return "de" if self.core.de else "bt"

    def set_control(self, uint64_t cr0, uint64_t cr3, uint64_t cr4):
        """The guest's CR0, CR3, CR4; flushes when the translation changes.
        A guest `mov cr3` with the same value must be followed by flush()."""
        cdef uint32_t c0 = <uint32_t>cr0, c3 = <uint32_t>cr3, c4 = <uint32_t>cr4
        cdef int paging = (c0 & (CR0_PG | CR0_PE)) == (CR0_PG | CR0_PE)
        cdef int wp = (c0 & CR0_WP) != 0, pse = (c4 & CR4_PSE) != 0
        cdef uint32_t pdbr = c3 & 0xFFFFF000U
        cdef int changed = paging != self.core.paging or (paging and (
            wp != self.core.wp or pse != self.core.pse or pdbr != self.core.pdbr))
        self.core.cr0, self.core.cr3, self.core.cr4 = c0, c3, c4
        self.core.paging, self.core.wp, self.core.pse, self.core.pdbr = paging, wp, pse, pdbr
        if changed:
            self.flush()

    def set_cpl(self, int cpl):
        """The guest's CPL; flushes when user/supervisor changes with paging on."""
        if not 0 <= cpl <= 3:
            raise ValueError(f"CPL must be 0..3, not {cpl!r}")
        cdef int user = cpl == 3
        self.core.cpl = cpl
        if user != self.core.user:
            self.core.user = user
            if self.core.paging:
                self.flush()

    def set_world(self, world):
        """'bt' (translated code from the TC) or 'de' (direct execution)."""
        if world not in ("bt", "de"):
            raise ValueError(f"world must be 'bt' or 'de', not {world!r}")
        cdef int de = world == "de"
        if de != self.core.de:
            self.core.de = de
            self.flush()

    def set_data_base(self, linear):
        """Move the 1 MiB monitor-data window (monitor.mmu.check_data_base
        says where it may go); flushes the TLB when the base changes."""
        cdef uint64_t base = <uint64_t>check_data_base(linear)
        if base != self.core.data_base:
            self.core.data_base = base
            self.flush()

    @property
    def data_base(self):
        """The linear base of the monitor-data window (default DATA_LINEAR)."""
        return self.core.data_base

    def invlpg(self, linear):
        """Unicorn has no single-page invalidation for the virtual TLB (only
        UC_CTL_TLB_FLUSH): flush everything."""
        self.flush()

    def walk(self, uint64_t linear, int access, cpl=None, bint set_ad=True):
        """Guest linear -> guest physical for the monitor's own access; raises
        monitor.mmu.PageFault (see SoftMMU.walk)."""
        cdef uint32_t lin = <uint32_t>linear
        cdef uint64_t phys
        cdef int perms, code, user
        if not self.core.paging:
            return lin & self.core.a20_mask
        user = (self.core.cpl if cpl is None else cpl) == 3
        code = _walk(&self.core, lin, access == UC_MEM_WRITE, user, set_ad, &phys, &perms)
        if code >= 0:
            raise PageFault(lin, code)
        return phys

    # -- write traces -----------------------------------------------------------

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
