"""The software MMU: Unicorn's virtual-TLB mode with the fill hook (U8).

Every TLB miss asks `fill(linear_page, access)` for a physical frame and its
permissions, separately for fetch and for data when the first answer granted
only one of them.  That makes the TLB the monitor's MMU:

* the monitor region (top 4 MiB): TC pages resolve for instruction fetch only,
  monitor data pages for data only, so guest code can never write the TC;
* real mode: linear -> physical through the A20 mask (port 0x92 / 8042);
* guest physical pages holding translated code are mapped without write
  permission: the first write refills the entry, which fires the write trace.
  The fill then *refuses* (returns False): the run ends before the write with
  EIP at the writing instruction (U8), the monitor drops that page's units and
  resumes, and the retried write finds the page writable.  (A stop requested
  from inside the fill instead lets the write complete but reports EIP at the
  instruction's start, so resuming would execute it twice: U20.)
* guest physical addresses beyond RAM reach a void frame.

Paging (guest page-table walks, A/D bits, #PF) arrives with protected mode.
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
    DATA_LINEAR,
    MONITOR_LINEAR,
    MONITOR_PHYS,
    VOID_PHYS,
)

log = logging.getLogger("hybrid86.monitor.mmu")

RWX = UC_PROT_READ | UC_PROT_WRITE | UC_PROT_EXEC
RX = UC_PROT_READ | UC_PROT_EXEC
RW = UC_PROT_READ | UC_PROT_WRITE
A20_ON, A20_OFF = 0xFFFFFFFF, 0xFFEFFFFF


class SoftMMU:
    """The TLB-fill hook and its state (pure Python; see module docstring)."""

    def __init__(self, uc, memory, on_code_write=None):
        self.uc = uc
        self.memory = memory
        self.a20_mask = A20_OFF                # the PC resets with A20 disabled
        self.traced: set[int] = set()          # guest physical page numbers with translated code
        self.on_code_write = on_code_write     # callable(page_number) before a traced page is written
        self.trace_exit = False                # a fill refused a write to trace it (see run loop)
        self.fills = 0                         # statistics
        self.trace_hits = 0
        uc.ctl_set_tlb_mode(UC_TLB_VIRTUAL)
        self._hook = uc.hook_add(UC_HOOK_TLB_FILL, self._fill)

    # -- the hook -------------------------------------------------------------

    def _fill(self, uc, vaddr, access, entry, _ud) -> bool:
        self.fills += 1
        result = self.translate(vaddr & 0xFFFFF000, access)
        if result is None:
            return False
        paddr, perms = result
        entry.paddr = paddr
        entry.perms = perms
        return True

    def translate(self, page: int, access: int) -> tuple[int, int] | None:
        """(physical frame, permissions) for one linear page and access kind;
        None for the first write to a traced page (the fill refuses it)."""
        if page >= MONITOR_LINEAR:
            frame = MONITOR_PHYS + (page - MONITOR_LINEAR)
            if page < DATA_LINEAR:
                # TC: fetch-only; a data access to a TC page never reaches the TC.
                return (frame, UC_PROT_EXEC) if access == UC_MEM_FETCH else (VOID_PHYS, RW)
            return frame, RW
        phys = page & self.a20_mask
        if phys >= self.memory.ram_size:
            return VOID_PHYS, RWX
        pfn = phys >> 12
        if pfn in self.traced:
            if access == UC_MEM_WRITE:
                self.trace_hits += 1
                self.traced.discard(pfn)
                if self.on_code_write is not None:
                    self.on_code_write(pfn)
                self.trace_exit = True
                return None
            return phys, RX
        return phys, RWX

    # -- state changes --------------------------------------------------------

    def set_a20(self, enabled: bool) -> None:
        mask = A20_ON if enabled else A20_OFF
        if mask != self.a20_mask:
            self.a20_mask = mask
            self.flush()

    @property
    def a20(self) -> bool:
        return self.a20_mask == A20_ON

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
