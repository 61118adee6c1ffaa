"""The software MMU: Unicorn's virtual-TLB mode with the fill hook (U8).

Every TLB miss asks `fill(linear_page, access)` for a physical frame and its
permissions, separately for fetch and for data when the first answer granted
only one of them.  That makes the TLB the monitor's MMU (docs/mmu.md has the
whole policy table):

* the monitor region: the TC at TC_LINEAR..DATA_LINEAR-1 and the 1 MiB
  monitor-data window, at DATA_LINEAR (the top 1 MiB) unless the monitor moved
  it (`set_data_base`) to a hole the guest's page tables leave.  In the BT world
  TC pages resolve for instruction fetch only (onto the TC frames) and
  monitor-data pages for data (read-write), so guest code can never write the
  TC.  In the DE world (guest code running directly at real CPL 3 or in V86) a
  fetch from a TC page goes through the guest translation like any access,
  except the TC's last page (TC_ALLOC_END, which holds TC_UNTIL, U19);
  monitor-data pages are read-only (the CPU reads the shadow GDT there) and a
  guest write to them is a page fault.  A *data* access to a TC page goes
  through the guest translation in both worlds, and its entry never grants
  fetch.  Wherever the window is, it reaches the same monitor frames; with the
  window moved, DATA_LINEAR..0xFFFFFFFF is ordinary guest memory;
* guest linear -> guest physical: with paging off through the A20 mask (port
  0x92 / 8042); with paging on (CR0.PG and CR0.PE) by walking the guest's
  32-bit page tables in guest RAM: 4 KiB pages, 4 MiB pages with CR4.PSE,
  U/S and R/W rights for the *guest's* CPL (`set_cpl`), CR0.WP, Accessed and
  Dirty bits written back like hardware.  A read or fetch fill grants write
  permission only when the entry is already dirty, so the first write refills
  and sets D.  A walk that fails records a page fault (`page_fault`: linear
  page, error code) and refuses the fill: the run ends with UC_ERR_EXCEPTION,
  EIP at the faulting instruction (U8);
* guest physical pages holding translated code are mapped without write
  permission: the first write refills the entry, which fires the write trace.
  The fill then *refuses* (returns False): the run ends before the write with
  EIP at the writing instruction (U8), the monitor drops that page's units and
  resumes, and the retried write finds the page writable.  (A stop requested
  from inside the fill instead lets the write complete but reports EIP at the
  instruction's start, so resuming would execute it twice: U20.)
* guest physical addresses beyond RAM reach a void frame.

`walk()` is the same guest translation for the monitor's own accesses to guest
virtual memory; it raises `PageFault`.
"""

from __future__ import annotations

import logging

from unicorn import (
    UC_CTL_IO_WRITE,
    UC_CTL_TLB_FLUSH,
    UC_HOOK_TLB_FILL,
    UC_MEM_FETCH,
    UC_MEM_WRITE,
    UC_PROT_EXEC,
    UC_PROT_READ,
    UC_PROT_WRITE,
    UC_TLB_VIRTUAL,
)

from monitor.memory import (
    DATA_LINEAR,      # the monitor-data window's default base (and the TC's end)
    DATA_SIZE,        # the window's size: 1 MiB
    MONITOR_LINEAR,
    MONITOR_PHYS,
    PAGE,
    TC_ALLOC_END,
    TC_LINEAR,
    VOID_PHYS,
)

log = logging.getLogger("hybrid86.monitor.mmu")

RWX = UC_PROT_READ | UC_PROT_WRITE | UC_PROT_EXEC
RX = UC_PROT_READ | UC_PROT_EXEC
RW = UC_PROT_READ | UC_PROT_WRITE
A20_ON, A20_OFF = 0xFFFFFFFF, 0xFFEFFFFF

# Control-register bits the MMU uses.
CR0_PE, CR0_WP, CR0_PG = 1 << 0, 1 << 16, 1 << 31
CR4_PSE = 1 << 4

# Page-directory / page-table entry bits (32-bit paging).
PTE_P, PTE_RW, PTE_US, PTE_A, PTE_D, PTE_PS = 0x01, 0x02, 0x04, 0x20, 0x40, 0x80

# #PF error code bits (Intel SDM vol. 3, 4.7; no I/D bit without NX).
PF_P, PF_W, PF_U = 0x1, 0x2, 0x4

WORLDS = ("bt", "de")

# The monitor-data window's frames, wherever its linear base is.
DATA_FRAMES = MONITOR_PHYS + (DATA_LINEAR - MONITOR_LINEAR)


def check_data_base(linear) -> int:
    """A valid base for the monitor-data window, or ValueError: 4 KiB aligned,
    and [linear, linear + 1 MiB) inside the 32-bit linear space and outside
    the TC [TC_LINEAR, DATA_LINEAR): the default DATA_LINEAR, or anywhere
    ending at or below TC_LINEAR.  (Shared by SoftMMU and NativeMMU.)"""
    if isinstance(linear, bool) or not isinstance(linear, int):
        raise TypeError(f"the data window base must be an int, not {type(linear).__name__}")
    if linear % PAGE:
        raise ValueError(f"the data window base {linear:#x} is not 4 KiB aligned")
    if not (0 <= linear <= TC_LINEAR - DATA_SIZE or linear == DATA_LINEAR):
        raise ValueError(
            f"the data window {linear:#x}..{linear + DATA_SIZE - 1:#x} must lie below "
            f"{TC_LINEAR:#x} (the TC) or at {DATA_LINEAR:#x}")
    return linear


class PageFault(Exception):
    """A guest page fault: `linear` (for CR2) and the #PF `error_code`."""

    def __init__(self, linear: int, error_code: int):
        super().__init__(linear, error_code)
        self.linear = linear
        self.error_code = error_code

    def __str__(self) -> str:
        return f"#PF at {self.linear:#010x}, error code {self.error_code:#x}"


class SoftMMU:
    """The TLB-fill hook and its state (pure Python; see module docstring)."""

    def __init__(self, uc, memory, on_code_write=None):
        self.uc = uc
        self.memory = memory
        self._ram32 = memory.ram.cast("I")     # guest RAM as little-endian dwords (page tables)
        self.a20_mask = A20_OFF                # the PC resets with A20 disabled
        self.traced: set[int] = set()          # guest physical page numbers with translated code
        self.on_code_write = on_code_write     # callable(page_number) before a traced page is written
        self.trace_exit = False                # a fill refused a write to trace it (see run loop)
        self.fills = 0                         # statistics
        self.trace_hits = 0
        self.faults = 0                        # page faults recorded by fills
        self.page_fault: tuple[int, int] | None = None  # (linear page, error code) of the last refused fill
        # Guest control state (set_control / set_cpl / set_world).
        self.cr0, self.cr3, self.cr4 = 0, 0, 0
        self.paging = False
        self._wp = False
        self._pse = False
        self._pdbr = 0
        self.cpl = 0
        self._user = False
        self.world = "bt"
        self._de = False
        self._data_base = DATA_LINEAR          # the monitor-data window (set_data_base)
        uc.ctl_set_tlb_mode(UC_TLB_VIRTUAL)
        self._hook = uc.hook_add(UC_HOOK_TLB_FILL, self._fill)

    # -- the hook -------------------------------------------------------------

    frozen = False

    def freeze(self, on: bool) -> None:
        """Refuse every fill (and flush), so that no further memory access of
        the running block lands: the monitor is about to restore a saved context."""
        self.frozen = bool(on)
        self.flush()

    def _fill(self, uc, vaddr, access, entry, _ud) -> bool:
        self.fills += 1
        if self.frozen:
            return False
        result = self.translate(vaddr & 0xFFFFF000, access)
        if result is None:
            return False
        paddr, perms = result
        entry.paddr = paddr
        entry.perms = perms
        return True

    def translate(self, page: int, access: int) -> tuple[int, int] | None:
        """(physical frame, permissions) for one linear page and access kind;
        None when the fill refuses: a page fault (recorded in `page_fault`) or
        the first write to a traced page (`trace_exit`)."""
        data = access != UC_MEM_FETCH
        offset = page - self._data_base
        if 0 <= offset < DATA_SIZE:
            # The monitor-data window (wherever it is): read-write in BT;
            # read-only in DE (the CPU reads the shadow GDT there), where a
            # guest write or fetch faults.
            frame = DATA_FRAMES + offset
            if not self._de:
                return frame, RW
            if access == UC_MEM_WRITE:
                return self._refuse(page, PF_P | PF_W | (PF_U if self._user else 0))
            if access == UC_MEM_FETCH:
                return self._refuse(page, PF_P | (PF_U if self._user else 0))
            return frame, UC_PROT_READ
        tc = TC_LINEAR <= page < DATA_LINEAR
        if tc and not data and (not self._de or page == TC_ALLOC_END):
            return MONITOR_PHYS + (page - TC_LINEAR), UC_PROT_EXEC     # the TC: fetch-only
        # Anything else, a TC page's data included, is the guest's own memory
        # (DATA_LINEAR.. too when the window is elsewhere).
        if self.paging:
            result = self._walk(page, access == UC_MEM_WRITE, self._user, True)
            if type(result) is int:
                return self._refuse(page, result)
            phys, perms = result
        else:
            phys, perms = page & self.a20_mask, RWX
        if data and tc:
            perms &= ~UC_PROT_EXEC              # a fetch there must ask again (it may be the TC's)
        if phys >= self.memory.ram_size:
            return VOID_PHYS, perms
        pfn = phys >> 12
        if pfn in self.traced:
            if access == UC_MEM_WRITE:
                self.trace_hits += 1
                self.traced.discard(pfn)
                if self.on_code_write is not None:
                    self.on_code_write(pfn)
                self.trace_exit = True
                return None
            return phys, perms & ~UC_PROT_WRITE
        return phys, perms

    def _refuse(self, page: int, error_code: int) -> None:
        self.page_fault = (page, error_code)
        self.faults += 1
        return None

    # -- the page walk --------------------------------------------------------

    def _entry(self, paddr: int) -> int:
        """A page-table entry; tables beyond RAM read as 0 (not present)."""
        return self._ram32[paddr >> 2] if paddr < self.memory.ram_size else 0

    def _walk(self, linear: int, write: bool, user: bool, set_ad: bool):
        """32-bit paging walk: (physical address, permissions) or the #PF error code.

        The permissions grant write only when the access rights allow it *and*
        the final entry is dirty (after this walk set D for a write)."""
        ram32, mask = self._ram32, self.a20_mask
        code = (PF_W if write else 0) | (PF_U if user else 0)
        pde_addr = (self._pdbr | ((linear >> 20) & 0xFFC)) & mask
        pde = self._entry(pde_addr)
        if not pde & PTE_P:
            return code
        if pde & PTE_PS and self._pse:
            pte_addr, pte = -1, pde
            rights = pde
            phys = (pde & 0xFFC00000) | (linear & 0x3FFFFF)
        else:
            pte_addr = ((pde & 0xFFFFF000) | ((linear >> 10) & 0xFFC)) & mask
            pte = self._entry(pte_addr)
            if not pte & PTE_P:
                return code
            rights = pde & pte
            phys = (pte & 0xFFFFF000) | (linear & 0xFFF)
        if user and not rights & PTE_US:
            return code | PF_P
        writable = bool(rights & PTE_RW) or (not user and not self._wp)
        if write and not writable:
            return code | PF_P
        if set_ad:                              # present entries are in RAM (_entry)
            if pte_addr >= 0 and not pde & PTE_A:
                ram32[pde_addr >> 2] = pde | PTE_A
            new = pte | PTE_A | (PTE_D if write else 0)    # the PTE, or the 4 MiB PDE
            if new != pte:
                ram32[(pde_addr if pte_addr < 0 else pte_addr) >> 2] = new
            pte = new
        perms = RWX if writable and pte & PTE_D else RX
        return phys & mask, perms

    def walk(self, linear: int, access: int, cpl: int | None = None, set_ad: bool = True) -> int:
        """Guest linear -> guest physical address for the monitor's own access
        (UC_MEM_READ / UC_MEM_WRITE / UC_MEM_FETCH) with the rights of `cpl`
        (default: the guest's current CPL; 0 for the CPU's accesses to system
        structures), setting A/D like hardware.  Raises PageFault.  Ignores
        the monitor region and the data window: this is the guest's own
        translation."""
        linear &= 0xFFFFFFFF
        if not self.paging:
            return linear & self.a20_mask
        user = (self.cpl if cpl is None else cpl) == 3
        result = self._walk(linear, access == UC_MEM_WRITE, user, set_ad)
        if type(result) is int:
            raise PageFault(linear, result)
        return result[0]

    # -- state changes --------------------------------------------------------

    def set_a20(self, enabled: bool) -> None:
        mask = A20_ON if enabled else A20_OFF
        if mask != self.a20_mask:
            self.a20_mask = mask
            self.flush()

    @property
    def a20(self) -> bool:
        return self.a20_mask == A20_ON

    def set_control(self, cr0: int, cr3: int, cr4: int) -> None:
        """The guest's CR0, CR3, CR4.  Flushes the TLB when the translation
        changes (paging switched, or with paging on: the page-directory base,
        WP or PSE).  A guest `mov cr3` that reloads the same value is a TLB
        flush on x86: the monitor must call `flush()` for it."""
        cr0 &= 0xFFFFFFFF
        cr3 &= 0xFFFFFFFF
        cr4 &= 0xFFFFFFFF
        paging = cr0 & (CR0_PG | CR0_PE) == (CR0_PG | CR0_PE)
        wp, pse, pdbr = bool(cr0 & CR0_WP), bool(cr4 & CR4_PSE), cr3 & 0xFFFFF000
        changed = paging != self.paging or (paging and (
            wp != self._wp or pse != self._pse or pdbr != self._pdbr))
        self.cr0, self.cr3, self.cr4 = cr0, cr3, cr4
        self.paging, self._wp, self._pse, self._pdbr = paging, wp, pse, pdbr
        if changed:
            self.flush()

    def set_cpl(self, cpl: int) -> None:
        """The guest's CPL (not the real CPU's).  Only user (3) against
        supervisor (0-2) matters; the TLB is flushed when that class changes
        while paging is on."""
        if not 0 <= cpl <= 3:
            raise ValueError(f"CPL must be 0..3, not {cpl!r}")
        user = cpl == 3
        self.cpl = cpl
        if user != self._user:
            self._user = user
            if self.paging:
                self.flush()

    def set_world(self, world: str) -> None:
        """'bt' (translated code from the TC) or 'de' (direct execution)."""
        if world not in WORLDS:
            raise ValueError(f"world must be 'bt' or 'de', not {world!r}")
        if world != self.world:
            self.world = world
            self._de = world == "de"
            self.flush()

    def set_data_base(self, linear: int) -> None:
        """Move the 1 MiB monitor-data window to linear `linear` (see
        `check_data_base`; ValueError otherwise).  It keeps reaching the same
        monitor frames; DATA_LINEAR.. becomes guest memory when it is moved
        away.  Flushes the TLB when the base changes."""
        linear = check_data_base(linear)
        if linear != self._data_base:
            self._data_base = linear
            self.flush()

    @property
    def data_base(self) -> int:
        """The linear base of the monitor-data window (default DATA_LINEAR)."""
        return self._data_base

    def invlpg(self, linear: int) -> None:
        """Drop the TLB entry of one linear page.  Unicorn offers no
        single-page invalidation for the virtual TLB (only UC_CTL_TLB_FLUSH),
        so this flushes everything: correct, and invlpg is rare enough."""
        self.flush()

    def clear_page_fault(self) -> None:
        self.page_fault = None

    native = False

    def is_traced(self, pfn: int) -> bool:
        return pfn in self.traced

    def untrace(self, pfn: int) -> None:
        self.traced.discard(pfn)

    def traced_pages(self) -> set[int]:
        return set(self.traced)

    def trace_page(self, pfn: int) -> None:
        """Write-protect a guest physical page that now holds translated code."""
        if pfn not in self.traced:
            self.traced.add(pfn)
            self.flush()

    def flush(self) -> None:
        """Drop every TLB entry (the binding has no wrapper for UC_CTL_TLB_FLUSH)."""
        self.uc.ctl(UC_CTL_TLB_FLUSH, UC_CTL_IO_WRITE)
