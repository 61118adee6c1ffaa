"""32-bit paging in the software MMU (docs/mmu.md): the guest page walk, its
rights, Accessed/Dirty bits and page-fault reports, the world policy of the
monitor region and of the movable monitor-data window, and real Unicorn runs
that fault and resume or use guest memory where the window used to be.  Every
behaviour test runs on the native MMU and on its Python twin, and one test
holds the two equal over many pages, accesses, CPLs and CR settings, A/D side
effects in guest RAM included."""

from __future__ import annotations

import random
import struct

import pytest
from unicorn import (
    UC_ARCH_X86, UC_ERR_EXCEPTION, UC_MEM_FETCH, UC_MEM_READ, UC_MEM_WRITE, UC_MODE_32,
    UC_PROT_EXEC, UC_PROT_READ, Uc, UcError,
)
from unicorn.x86_const import (
    UC_X86_REG_CS, UC_X86_REG_DS, UC_X86_REG_EAX, UC_X86_REG_EBX, UC_X86_REG_ECX, UC_X86_REG_EDX, UC_X86_REG_EIP,
    UC_X86_REG_ES, UC_X86_REG_ESP, UC_X86_REG_GDTR, UC_X86_REG_SS,
)

from _native import NativeMMU
from monitor.memory import (
    DATA_LINEAR, DATA_SIZE, MONITOR_LINEAR, MONITOR_PHYS, TC_ALLOC_END, TC_LINEAR, VOID_PHYS, PhysicalMemory,
)
from monitor.mmu import RW, RWX, RX, PageFault, SoftMMU
from x86env import assemble, descriptor

R, X = UC_PROT_READ, UC_PROT_EXEC
P, W, U, A, D, PS = 0x01, 0x02, 0x04, 0x20, 0x40, 0x80      # PDE/PTE bits
PF_P, PF_W, PF_U = 1, 2, 4                                  # #PF error code bits
READ, WRITE, FETCH = UC_MEM_READ, UC_MEM_WRITE, UC_MEM_FETCH
ACCESSES = (READ, WRITE, FETCH)
CR0_PAGING, CR0_WP, CR4_PSE = 0x80000011, 1 << 16, 1 << 4

PD = 0x10000            # page directory (physical)
PT_POOL = 0x11000       # page tables are allocated from here

CLASSES = pytest.mark.parametrize("cls", [NativeMMU, SoftMMU], ids=["native", "twin"])

DATA_FRAMES = MONITOR_PHYS + (DATA_LINEAR - MONITOR_LINEAR)     # the monitor-data window's frames
TOP = 0xFFFFF000                                                # the last linear page
MOVED = (0x7FF00000, 0x00500000)                                # data windows below the TC


def counting(cls):
    """A subclass of `cls` that counts TLB flushes."""

    class Counting(cls):
        flushes = 0

        def flush(self):
            type(self).flushes += 1
            super().flush()

    return Counting


class Guest:
    """An MMU on its own engine and guest RAM, with a page-table builder."""

    def __init__(self, cls, ram_mb=16, pd=PD):
        self.uc = Uc(UC_ARCH_X86, UC_MODE_32)
        self.mem = PhysicalMemory(self.uc, ram_mb << 20)
        self.fired: list[int] = []
        self.mmu = cls(self.uc, self.mem, on_code_write=self.fired.append)
        self.ram = self.mem.ram
        self.pd = pd
        self.next_pt = PT_POOL

    def rd(self, paddr: int) -> int:
        return struct.unpack_from("<I", self.ram, paddr)[0]

    def wr(self, paddr: int, value: int) -> None:
        struct.pack_into("<I", self.ram, paddr, value)

    def pde_addr(self, lin: int, pd: int | None = None) -> int:
        return (self.pd if pd is None else pd) + 4 * (lin >> 22)

    def pte_addr(self, lin: int, pd: int | None = None) -> int:
        return (self.rd(self.pde_addr(lin, pd)) & ~0xFFF) + 4 * ((lin >> 12) & 0x3FF)

    def map4k(self, lin: int, phys: int, flags: int = P | W | U, pde_flags: int = P | W | U,
              pd: int | None = None) -> None:
        pde_at = self.pde_addr(lin, pd)
        pde = self.rd(pde_at)
        if not pde & P or pde & PS:
            pde = self.next_pt
            self.next_pt += 0x1000
        self.wr(pde_at, (pde & ~0xFFF) | pde_flags)
        self.wr(self.pte_addr(lin, pd), phys | flags)

    def map4m(self, lin: int, phys: int, flags: int = P | W | U, pd: int | None = None) -> None:
        self.wr(self.pde_addr(lin, pd), phys | flags | PS)

    def pde(self, lin: int) -> int:
        return self.rd(self.pde_addr(lin))

    def pte(self, lin: int) -> int:
        return self.rd(self.pte_addr(lin))

    def paging(self, wp: bool = False, pse: bool = True, cr3: int | None = None) -> None:
        self.mmu.set_control(CR0_PAGING | (CR0_WP if wp else 0), self.pd if cr3 is None else cr3,
                             CR4_PSE if pse else 0)


# ------------------------------------------------------------------ basics

@CLASSES
def test_defaults_and_paging_off(cls):
    g = Guest(cls)
    mmu = g.mmu
    assert (mmu.paging, mmu.cpl, mmu.world, mmu.page_fault, mmu.faults) == (False, 0, "bt", None, 0)
    mmu.set_a20(True)
    assert mmu.translate(0x123000, WRITE) == (0x123000, RWX)
    assert mmu.walk(0x123456, WRITE) == 0x123456
    mmu.set_a20(False)
    assert mmu.walk(0x123456, READ) == 0x023456                 # A20 off: bit 20 masked
    mmu.set_control(0x80000010, PD, 0)                           # PG without PE: no paging
    assert not mmu.paging and mmu.translate(0x5000, READ) == (0x5000, RWX)
    g.paging()
    assert mmu.paging and (mmu.cr0, mmu.cr3, mmu.cr4) == (CR0_PAGING, PD, CR4_PSE)
    with pytest.raises(ValueError):
        mmu.set_world("vm86")
    with pytest.raises(ValueError):
        mmu.set_cpl(4)


@CLASSES
def test_4k_translation_and_accessed_dirty(cls):
    g = Guest(cls)
    g.mmu.set_a20(True)
    g.map4k(0x00400000, 0x123000)
    g.paging()
    lin = 0x00400000
    assert g.pde(lin) & (A | D) == 0 and g.pte(lin) & (A | D) == 0
    # A read fill sets A in PDE and PTE and does not grant write: D is clear.
    assert g.mmu.translate(lin, READ) == (0x123000, RX)
    assert g.pde(lin) & A and g.pte(lin) & A and not g.pte(lin) & D
    assert g.mmu.translate(lin, FETCH) == (0x123000, RX)
    # The write fill sets D and grants write; later read fills grant it too.
    assert g.mmu.translate(lin, WRITE) == (0x123000, RWX)
    assert g.pte(lin) & D and not g.pde(lin) & D               # no D in a PDE that maps a table
    assert g.mmu.translate(lin, READ) == (0x123000, RWX)
    assert g.mmu.walk(lin + 0x456, READ) == 0x123456
    assert g.mmu.page_fault is None and g.mmu.faults == 0


@CLASSES
def test_4m_pages_need_cr4_pse(cls):
    g = Guest(cls)
    g.mmu.set_a20(True)
    g.map4m(0x00800000, 0x00400000)                            # 4 MiB page at 8 MiB -> 4 MiB
    g.paging(pse=True)
    assert g.mmu.translate(0x00805000, READ) == (0x405000, RX)
    assert g.pde(0x00800000) & (A | D) == A
    assert g.mmu.translate(0x00BFF000, WRITE) == (0x7FF000, RWX)
    assert g.pde(0x00800000) & (A | D) == A | D                 # D of a 4 MiB page is in the PDE
    assert g.mmu.walk(0x00812345, READ) == 0x412345
    # PSE off: PS is ignored and the PDE points to a page table (at 4 MiB: zeros).
    g.paging(pse=False)
    assert g.mmu.translate(0x00805000, READ) is None
    assert g.mmu.page_fault == (0x00805000, 0)                  # the PTE read as not present


# ------------------------------------------------------------------ rights and error codes

# Page kinds: (PDE flags, PTE flags); None = not present at that level.
KINDS = {
    "pde-np": (0, P | W | U),
    "pte-np": (P | W | U, 0),
    "sup-rw": (P | W | U, P | W),
    "sup-ro": (P | W | U, P),
    "user-ro": (P | W | U, P | U),
    "user-rw": (P | W | U, P | W | U),
    "pde-sup": (P | W, P | W | U),           # U/S must be set at both levels
    "pde-ro": (P | U, P | W | U),            # R/W too
}


def expected_code(kind: str, cpl: int, access: int, wp: bool) -> int | None:
    """The #PF error code of SDM 4.6/4.7 for 32-bit paging, or None when allowed."""
    pde, pte = KINDS[kind]
    user, write = cpl == 3, access == WRITE
    code = (PF_W if write else 0) | (PF_U if user else 0)
    if not pde & P or not pte & P:
        return code
    rights = pde & pte
    if user and not rights & U:
        return code | PF_P
    if write and not rights & W and (user or wp):
        return code | PF_P
    return None


# A few literal checks of that oracle against the SDM's table.
@pytest.mark.parametrize("kind,cpl,access,wp,code", [
    ("pde-np", 0, READ, False, 0), ("pte-np", 3, WRITE, False, 6), ("pte-np", 3, FETCH, True, 4),
    ("sup-rw", 3, READ, False, 5), ("sup-rw", 3, WRITE, False, 7), ("sup-ro", 0, WRITE, False, None),
    ("sup-ro", 0, WRITE, True, 3), ("user-ro", 3, WRITE, False, 7), ("user-ro", 0, WRITE, False, None),
    ("user-ro", 0, WRITE, True, 3), ("user-ro", 3, FETCH, True, None), ("pde-sup", 3, READ, False, 5),
    ("pde-ro", 3, WRITE, False, 7), ("pde-ro", 1, WRITE, True, 3), ("pde-ro", 2, WRITE, False, None),
])
def test_oracle_matches_the_sdm(kind, cpl, access, wp, code):
    assert expected_code(kind, cpl, access, wp) == code


@CLASSES
@pytest.mark.parametrize("wp", [False, True])
@pytest.mark.parametrize("cpl", [0, 3])
def test_rights_and_error_codes(cls, cpl, wp):
    g = Guest(cls)
    g.mmu.set_a20(True)
    lins = {}
    for i, (kind, (pde_flags, pte_flags)) in enumerate(KINDS.items()):
        lin = (i + 1) << 22                                    # one page table per kind
        g.map4k(lin, 0x200000 + (i << 12), pte_flags, pde_flags)
        lins[kind] = lin
    g.paging(wp=wp)
    g.mmu.set_cpl(cpl)
    faults = 0
    for kind, lin in lins.items():
        for access in ACCESSES:
            pde0, pte0 = g.pde(lin), g.pte(lin)
            want = expected_code(kind, cpl, access, wp)
            got = g.mmu.translate(lin, access)
            if want is None:
                assert got is not None and got[0] == g.mmu.walk(lin, access, set_ad=False), (kind, access)
                assert got[1] & RX == RX
                assert g.pde(lin) & A and g.pte(lin) & A
                if access == WRITE:
                    assert got[1] == RWX and g.pte(lin) & D
            else:
                faults += 1
                assert got is None, (kind, access)
                assert g.mmu.page_fault == (lin, want), (kind, access)
                assert (g.pde(lin), g.pte(lin)) == (pde0, pte0)  # a faulting walk sets no A/D
                with pytest.raises(PageFault) as exc:
                    g.mmu.walk(lin + 0x7F3, access)
                assert (exc.value.linear, exc.value.error_code) == (lin + 0x7F3, want)
                assert (g.pde(lin), g.pte(lin)) == (pde0, pte0)
            g.mmu.clear_page_fault()
    assert g.mmu.faults == faults > 0


@CLASSES
def test_read_fill_grants_write_only_when_dirty_and_allowed(cls):
    g = Guest(cls)
    g.mmu.set_a20(True)
    g.map4k(0x400000, 0x100000, P | U)                         # user read-only, clean
    g.map4k(0x401000, 0x101000, P | U | D)                     # user read-only, dirty
    g.map4k(0x402000, 0x102000, P | W | U | D)                 # writable, dirty
    g.paging(wp=False)
    assert g.mmu.translate(0x400000, READ) == (0x100000, RX)
    assert g.mmu.translate(0x401000, READ) == (0x101000, RWX)   # supervisor, WP=0: writable
    assert g.mmu.translate(0x402000, FETCH) == (0x102000, RWX)
    g.paging(wp=True)
    assert g.mmu.translate(0x401000, READ) == (0x101000, RX)    # WP=1: read-only
    g.mmu.set_cpl(3)
    assert g.mmu.translate(0x401000, READ) == (0x101000, RX)
    assert g.mmu.translate(0x402000, READ) == (0x102000, RWX)
    assert not g.pte(0x400000) & D                              # reads never set D


@CLASSES
def test_walk_options(cls):
    g = Guest(cls)
    g.mmu.set_a20(True)
    g.map4k(0x400000, 0x100000, P | W)                         # supervisor page
    g.paging()
    g.mmu.set_cpl(3)
    with pytest.raises(PageFault) as exc:
        g.mmu.walk(0x400010, READ)                              # default: the guest's CPL 3
    assert exc.value.error_code == PF_P | PF_U and "0x00400010" in str(exc.value)
    assert g.mmu.walk(0x400010, WRITE, cpl=0, set_ad=False) == 0x100010
    assert g.pte(0x400000) & (A | D) == 0 and g.pde(0x400000) & A == 0
    assert g.mmu.walk(0x400010, WRITE, cpl=0) == 0x100010       # a CPU access to a system structure
    assert g.pte(0x400000) & (A | D) == A | D and g.pde(0x400000) & A
    assert g.mmu.page_fault is None and g.mmu.faults == 0       # walk() reports by raising only


@CLASSES
def test_a20_masks_every_physical_address_of_the_walk(cls):
    """A20 off masks bit 20 of the table reads and of the frame (as QEMU does)."""
    g = Guest(cls, pd=0x110000)
    g.map4k(0x400000, 0x1FF000)
    g.paging()
    g.mmu.set_a20(True)
    assert g.mmu.translate(0x400000, READ) == (0x1FF000, RX)
    g.mmu.set_a20(False)
    assert g.mmu.translate(0x400000, READ) is None              # the directory read at 0x10000: empty
    g.ram[0x10000:0x11000] = g.ram[0x110000:0x111000]
    assert g.mmu.translate(0x400000, READ) == (0x0FF000, RX)


@CLASSES
def test_tables_and_frames_beyond_ram(cls):
    g = Guest(cls, ram_mb=2)
    g.mmu.set_a20(True)
    g.map4k(0x400000, 0x5000000)                                # a frame beyond 2 MiB of RAM
    g.wr(g.pde_addr(0x800000), 0x3000000 | P | W | U)           # a page table beyond RAM
    g.paging()
    assert g.mmu.translate(0x400000, WRITE) == (VOID_PHYS, RWX)
    assert g.mmu.walk(0x400123, READ) == 0x5000123
    assert g.mmu.translate(0x800000, READ) is None and g.mmu.page_fault == (0x800000, 0)
    g.mmu.set_control(CR0_PAGING, 0x7FFFF000, 0)                # the directory itself beyond RAM
    assert g.mmu.translate(0x400000, READ) is None and g.mmu.page_fault == (0x400000, 0)


@CLASSES
def test_page_fault_record(cls):
    g = Guest(cls)
    g.paging()
    g.mmu.set_cpl(3)
    assert g.mmu.translate(0x1234000, WRITE) is None
    assert g.mmu.page_fault == (0x1234000, PF_W | PF_U) and g.mmu.faults == 1
    g.mmu.clear_page_fault()
    assert g.mmu.page_fault is None
    assert g.mmu.translate(0x2000000, FETCH) is None
    g.mmu.page_fault = None                                     # the setter clears too
    assert g.mmu.page_fault is None and g.mmu.faults == 2
    assert not g.mmu.trace_exit


# ------------------------------------------------------------------ TLB flushes

@CLASSES
def test_flushes(cls):
    g = Guest(counting(cls))
    mmu, t = g.mmu, type(g.mmu)

    def flushed(action) -> bool:
        before = t.flushes
        action()
        return t.flushes > before

    assert not flushed(lambda: mmu.set_cpl(3))                   # paging off: CPL does not matter
    assert not flushed(lambda: mmu.set_cpl(0))
    assert not flushed(lambda: mmu.set_control(0x11, 0x5000, 0))  # paging stays off
    assert flushed(lambda: mmu.set_control(CR0_PAGING, PD, 0))
    assert not flushed(lambda: mmu.set_control(CR0_PAGING | 0x8, PD | 0x18, 0x200))  # TS, PCD/PWT, OSFXSR
    assert flushed(lambda: mmu.set_control(CR0_PAGING, PD + 0x1000, 0))            # CR3 switch
    assert flushed(lambda: mmu.set_control(CR0_PAGING | CR0_WP, PD + 0x1000, 0))
    assert flushed(lambda: mmu.set_control(CR0_PAGING | CR0_WP, PD + 0x1000, CR4_PSE))
    assert not flushed(lambda: mmu.set_cpl(1))                   # still supervisor
    assert flushed(lambda: mmu.set_cpl(3))
    assert not flushed(lambda: mmu.set_world("bt"))
    assert flushed(lambda: mmu.set_world("de"))
    assert flushed(lambda: mmu.set_world("bt"))
    assert flushed(lambda: mmu.invlpg(0x400000))
    assert flushed(lambda: mmu.set_control(0x11, PD, 0))         # paging off
    assert mmu.cpl == 3 and mmu.world == "bt"


@CLASSES
def test_flushes_when_the_data_window_moves(cls):
    g = Guest(counting(cls))
    mmu, t = g.mmu, type(g.mmu)

    def flushed(action) -> bool:
        before = t.flushes
        action()
        return t.flushes > before

    assert mmu.data_base == DATA_LINEAR
    assert not flushed(lambda: mmu.set_data_base(DATA_LINEAR))
    assert flushed(lambda: mmu.set_data_base(0x7FF00000))
    assert not flushed(lambda: mmu.set_data_base(0x7FF00000))
    assert flushed(lambda: mmu.set_data_base(0x00500000))
    with pytest.raises(ValueError):
        mmu.set_data_base(TC_LINEAR)
    assert t.flushes == 2 and mmu.data_base == 0x00500000       # a refused base changes nothing
    g.paging()
    assert not flushed(lambda: mmu.set_data_base(0x00500000))
    assert flushed(lambda: mmu.set_data_base(DATA_LINEAR))


@CLASSES
def test_cr3_switch(cls):
    g = Guest(cls)
    g.mmu.set_a20(True)
    pd2 = 0x20000
    g.map4k(0x400000, 0x100000)
    g.map4k(0x400000, 0x200000, pd=pd2)
    g.paging()
    assert g.mmu.translate(0x400000, READ)[0] == 0x100000
    g.paging(cr3=pd2 | 0x18)                                   # PCD/PWT bits are not part of the base
    assert g.mmu.translate(0x400000, READ)[0] == 0x200000
    assert g.mmu.walk(0x400ABC, READ) == 0x200ABC


# ------------------------------------------------------------------ the monitor region

TC_PAGE = TC_LINEAR + 0x5000


@CLASSES
def test_tc_pages_bt_world(cls):
    g = Guest(cls)
    g.mmu.set_a20(True)
    g.map4k(TC_PAGE, 0x7000)
    g.map4k(TC_ALLOC_END, 0x8000)
    g.paging()
    # Fetch: the TC, whatever the guest maps; data: the guest's own memory, never executable.
    assert g.mmu.translate(TC_PAGE, FETCH) == (MONITOR_PHYS + 0x5000, X)
    assert g.mmu.translate(TC_PAGE, READ) == (0x7000, R)
    assert g.mmu.translate(TC_PAGE, WRITE) == (0x7000, RW)
    assert g.pte(TC_PAGE) & (A | D) == A | D
    assert g.mmu.translate(TC_PAGE + 0x1000, READ) is None      # not mapped by the guest: #PF
    assert g.mmu.page_fault == (TC_PAGE + 0x1000, 0)
    assert g.mmu.translate(TC_ALLOC_END, FETCH) == (MONITOR_PHYS + TC_ALLOC_END - TC_LINEAR, X)
    # Paging off: linear = physical, beyond RAM the void frame.
    g.mmu.set_control(0x11, 0, 0)
    assert g.mmu.translate(TC_PAGE, READ) == (VOID_PHYS, RW)
    assert g.mmu.translate(TC_PAGE, FETCH) == (MONITOR_PHYS + 0x5000, X)


@CLASSES
def test_tc_pages_de_world(cls):
    g = Guest(cls)
    g.mmu.set_a20(True)
    g.map4k(TC_PAGE, 0x7000)
    g.map4k(TC_ALLOC_END, 0x8000)
    g.paging()
    g.mmu.set_cpl(3)
    g.mmu.set_world("de")
    # A fetch from a TC page is the guest's own code in DE...
    assert g.mmu.translate(TC_PAGE, FETCH) == (0x7000, RX)
    assert g.mmu.translate(TC_PAGE, WRITE) == (0x7000, RW)       # data entries stay non-executable
    assert g.mmu.translate(TC_PAGE + 0x1000, FETCH) is None
    assert g.mmu.page_fault == (TC_PAGE + 0x1000, PF_U)
    # ...except the TC's last page (TC_UNTIL, U19), which stays the TC's for fetch.
    assert g.mmu.translate(TC_ALLOC_END, FETCH) == (MONITOR_PHYS + TC_ALLOC_END - TC_LINEAR, X)
    assert g.mmu.translate(TC_ALLOC_END, READ) == (0x8000, R)
    # Paging off in DE (V86 or protected mode without paging).
    g.mmu.set_control(0x11, 0, 0)
    assert g.mmu.translate(TC_PAGE, FETCH) == (VOID_PHYS, RWX)  # guest physical 0xFFC05000: no RAM
    assert g.mmu.translate(TC_ALLOC_END, FETCH)[0] == MONITOR_PHYS + TC_ALLOC_END - TC_LINEAR


@CLASSES
@pytest.mark.parametrize("paging", [False, True])
def test_monitor_data_pages_by_world(cls, paging):
    g = Guest(cls)
    if paging:
        g.map4k(DATA_LINEAR, 0x9000)                             # the guest's mapping is ignored
        g.paging()
    frame = MONITOR_PHYS + (DATA_LINEAR - MONITOR_LINEAR)
    assert g.mmu.translate(DATA_LINEAR, READ) == (frame, RW)
    assert g.mmu.translate(DATA_LINEAR, WRITE) == (frame, RW)
    g.mmu.set_cpl(3)
    g.mmu.set_world("de")
    assert g.mmu.translate(DATA_LINEAR, READ) == (frame, R)      # the CPU reads the shadow GDT
    assert g.mmu.translate(DATA_LINEAR, WRITE) is None          # a guest write never lands
    assert g.mmu.page_fault == (DATA_LINEAR, PF_P | PF_W | PF_U)
    assert g.mmu.translate(0xFFFFF000, FETCH) is None
    assert g.mmu.page_fault == (0xFFFFF000, PF_P | PF_U)
    g.mmu.set_cpl(0)                                            # (a supervisor access in DE)
    assert g.mmu.translate(DATA_LINEAR, WRITE) is None and g.mmu.page_fault == (DATA_LINEAR, PF_P | PF_W)
    if paging:
        assert g.pte(DATA_LINEAR) & A == 0


# ------------------------------------------------------------------ the movable data window

@CLASSES
def test_data_window_bases(cls):
    g = Guest(cls)
    mmu = g.mmu
    for base in (0, 0x1000, 0x00500000, 0x7FF00000, 0x7FF01000, TC_LINEAR - DATA_SIZE, DATA_LINEAR):
        mmu.set_data_base(base)                                 # 4 KiB aligned, clear of the TC
        assert mmu.data_base == base
    mmu.set_data_base(0x7FF00000)
    for base in (0x7FF00800, 0x1, TC_LINEAR - DATA_SIZE + 0x1000, TC_LINEAR - 0x80000, TC_LINEAR,
                 TC_LINEAR + 0x5000, TC_ALLOC_END, DATA_LINEAR - 0x1000, DATA_LINEAR + 0x1000, TOP,
                 -0x1000, 1 << 32, (1 << 32) + 0x7FF00000):
        with pytest.raises(ValueError):
            mmu.set_data_base(base)
        assert mmu.data_base == 0x7FF00000, hex(base)
    with pytest.raises(TypeError):
        mmu.set_data_base("0x7ff00000")


@CLASSES
@pytest.mark.parametrize("paging", [False, True], ids=["flat", "paging"])
@pytest.mark.parametrize("base", MOVED, ids=hex)
def test_moved_data_window(cls, paging, base):
    """The window at `base` follows the monitor-data policy onto the same frames;
    DATA_LINEAR.. is the guest's for every access, fetch included; the TC is unchanged."""
    g = Guest(cls)                                              # 16 MiB of RAM
    g.mmu.set_a20(True)
    if paging:
        g.map4k(base, 0x9000)                                   # hidden by the window
        g.map4k(base - 0x1000, 0x41000)
        g.map4k(base + DATA_SIZE, 0x42000)
        g.map4k(DATA_LINEAR, 0x43000)
        g.map4k(TOP, 0x44000)
        g.map4k(TC_PAGE, 0x7000)
        g.paging()
        below, above, old, top = 0x41000, 0x42000, 0x43000, 0x44000
    else:
        below, above, old, top = base - 0x1000, base + DATA_SIZE, VOID_PHYS, VOID_PHYS
        if base + DATA_SIZE > g.mem.ram_size:
            below = above = VOID_PHYS
    g.mmu.set_data_base(base)
    assert g.mmu.data_base == base
    # BT: the window is the monitor's frames, read-write, page for page.
    for off in (0, 0x5000, 0xFF000):
        for access in ACCESSES:
            assert g.mmu.translate(base + off, access) == (DATA_FRAMES + off, RW), (hex(off), access)
    # Its neighbours and its old place are the guest's (a write first: it sets D).
    for lin, phys in ((base - 0x1000, below), (base + DATA_SIZE, above), (DATA_LINEAR, old), (TOP, top)):
        for access in (WRITE, READ, FETCH):                     # fetch too: the TC is never there
            assert g.mmu.translate(lin, access) == (phys, RWX), (hex(lin), access)
    # The TC keeps its policy.
    assert g.mmu.translate(TC_PAGE, FETCH) == (MONITOR_PHYS + 0x5000, X)
    assert g.mmu.translate(TC_ALLOC_END, FETCH) == (MONITOR_PHYS + TC_ALLOC_END - TC_LINEAR, X)
    if paging:
        assert g.mmu.translate(TC_PAGE, WRITE) == (0x7000, RW)
    # DE at guest CPL 3: the window is read-only, a write or fetch faults; the
    # guest may run its own code at the top.
    g.mmu.set_cpl(3)
    g.mmu.set_world("de")
    assert g.mmu.translate(base + 0x5000, READ) == (DATA_FRAMES + 0x5000, R)
    assert g.mmu.translate(base + 0x5000, WRITE) is None
    assert g.mmu.page_fault == (base + 0x5000, PF_P | PF_W | PF_U)
    assert g.mmu.translate(base + 0xFF000, FETCH) is None
    assert g.mmu.page_fault == (base + 0xFF000, PF_P | PF_U)
    assert g.mmu.faults == 2
    for lin, phys in ((DATA_LINEAR, old), (TOP, top), (base + DATA_SIZE, above)):
        for access in ACCESSES:
            assert g.mmu.translate(lin, access) == (phys, RWX), (hex(lin), access)
    assert g.mmu.translate(TC_ALLOC_END, FETCH)[1] == X
    # walk() is the guest's translation, wherever the window is.
    if paging:
        assert g.pte(base) & A == 0                             # the window never walks
        assert g.mmu.walk(base + 0x123, READ) == 0x9123
        assert g.mmu.walk(TOP + 0x456, WRITE) == 0x44456
    else:
        assert g.mmu.walk(base + 0x123, READ) == base + 0x123
    # Back at the default: the top is the monitor's again.
    g.mmu.set_data_base(DATA_LINEAR)
    assert g.mmu.translate(TOP, READ) == (DATA_FRAMES + 0xFF000, R)
    flat = base if base < g.mem.ram_size else VOID_PHYS
    assert g.mmu.translate(base, READ) == ((0x9000, RX) if paging else (flat, RWX))


# ------------------------------------------------------------------ write traces

@CLASSES
def test_trace_is_on_the_physical_frame(cls):
    g = Guest(cls)
    g.mmu.set_a20(True)
    g.map4k(0x400000, 0x123000)
    g.map4k(0x900000, 0x123000, P | W | U | D)                 # an alias, already dirty
    g.map4k(0x123000, 0x300000)                                # identity-numbered but another frame
    g.paging()
    g.mmu.trace_page(0x123)
    assert g.mmu.translate(0x900000, READ) == (0x123000, RX)     # dirty, but traced: no write
    assert g.mmu.translate(0x123000, WRITE) == (0x300000, RWX)   # linear 0x123000 is not traced
    assert g.mmu.translate(0x400000, WRITE) is None              # first write through any alias
    assert g.fired == [0x123] and g.mmu.trace_exit and g.mmu.page_fault is None
    assert g.pte(0x400000) & D                                   # the walk ran (the write is retried)
    assert g.mmu.translate(0x900000, WRITE) == (0x123000, RWX)
    assert g.mmu.translate(0x400000, READ) == (0x123000, RWX)


# ------------------------------------------------------------------ native == twin

def _random_tables(g: Guest, rng: random.Random) -> list[int]:
    """Random 4K / 4M mappings with random flags in a few page tables; returns
    the linear pages worth asking about (mapped ones, their neighbours, the monitor region)."""
    pages = []
    for _ in range(60):
        lin = rng.randrange(0, 48) << 22 | rng.randrange(0, 1024) << 12
        flags = rng.choice([0, P, P | W, P | U, P | W | U]) | rng.choice([0, A, D, A | D])
        if rng.random() < 0.15:
            g.map4m(lin & 0xFFC00000, rng.randrange(0, 6) << 22, flags | P)
        else:
            pde_flags = rng.choice([P, P | W, P | U, P | W | U, P | W | U, P | W | U, 0])
            g.map4k(lin, rng.randrange(0, 0x1800) << 12, flags, pde_flags)
        pages += [lin, lin + 0x1000]
    g.map4k(TC_PAGE, 0x7000)
    g.map4k(TC_ALLOC_END, 0x8000, P | U)
    g.map4k(DATA_LINEAR, 0x9000, P | W | U)                   # seen when the window is moved
    g.map4k(TOP, 0xA000, P)
    g.map4k(0x7FF00000, 0xB000, P | W | U | D)                 # hidden while the window is there
    pages += [TC_PAGE, TC_PAGE + 0x1000, TC_ALLOC_END, DATA_LINEAR, DATA_LINEAR + 0x1000, TOP,
              0x7FEFF000, 0x7FF00000, 0x7FF5F000, 0x7FFFF000, 0x80000000,
              0x4FF000, 0x500000, 0x55F000, 0x5FF000, 0x600000]
    return pages


@pytest.mark.parametrize("seed", range(6))
def test_native_and_twin_agree_with_paging(seed):
    rng = random.Random(seed)
    guests = [Guest(NativeMMU, ram_mb=20), Guest(SoftMMU, ram_mb=20)]
    for g in guests:
        pages = _random_tables(g, random.Random(seed))
    for g in guests:
        for pfn in (0x7, 0x123, 0x500, 0x1200):
            g.mmu.trace_page(pfn)
    settings = [(wp, pse, cpl, world, a20, base) for wp in (False, True) for pse in (False, True)
                for cpl in (0, 1, 3) for world in ("bt", "de") for a20 in (True, False)
                for base in (DATA_LINEAR,) + MOVED]
    rng.shuffle(settings)
    for wp, pse, cpl, world, a20, base in settings[:24]:
        for g in guests:
            g.paging(wp=wp, pse=pse)
            g.mmu.set_cpl(cpl)
            g.mmu.set_world(world)
            g.mmu.set_a20(a20)
            g.mmu.set_data_base(base)
        for page in rng.sample(pages, 40):
            access = rng.choice(ACCESSES)
            answers = [(g.mmu.translate(page, access), g.mmu.page_fault, g.mmu.trace_exit) for g in guests]
            assert answers[0] == answers[1], (hex(page), access, wp, pse, cpl, world, a20, hex(base))
            lin = page | rng.randrange(0x1000)
            cpl_arg, set_ad = rng.choice([None, 0, 3]), rng.random() < 0.7
            walks = []
            for g in guests:
                try:
                    walks.append(g.mmu.walk(lin, access, cpl=cpl_arg, set_ad=set_ad))
                except PageFault as exc:
                    walks.append((exc.linear, exc.error_code))
            assert walks[0] == walks[1]
            for g in guests:
                g.mmu.clear_page_fault()
                g.mmu.trace_exit = False
    # The A/D side effects are the same byte for byte, and so is the bookkeeping.
    native, twin = guests
    assert bytes(native.ram[PD:native.next_pt]) == bytes(twin.ram[PD:twin.next_pt])
    assert bytes(native.ram) == bytes(twin.ram)
    assert (native.mmu.faults, native.mmu.trace_hits, native.fired) == (twin.mmu.faults, twin.mmu.trace_hits, twin.fired)
    assert native.mmu.faults > 0 and native.mmu.traced_pages() == twin.mmu.traced_pages()


@pytest.mark.parametrize("base", (DATA_LINEAR,) + MOVED, ids=hex)
@pytest.mark.parametrize("paging", [False, True], ids=["flat", "paging"])
def test_native_and_twin_agree_around_the_data_window(paging, base):
    """Every page of the top 4 MiB and of the window and its neighbours, every
    access, both worlds, both CPL classes."""
    guests = [Guest(NativeMMU), Guest(SoftMMU)]
    pages = list(range(TC_LINEAR, 1 << 32, 0x1000))
    pages += list(range(base - 0x2000, base + DATA_SIZE + 0x2000, 0x1000)) if base != DATA_LINEAR else []
    for g in guests:
        g.mmu.set_a20(True)
        if paging:
            for i, lin in enumerate(pages):
                if i % 7:                                       # some pages not present
                    g.map4k(lin, (0x100 + i % 0x700) << 12, [P, P | W, P | U, P | W | U][i % 4])
            g.paging(wp=True)
        g.mmu.set_data_base(base)
    for world in ("bt", "de"):
        for cpl in (0, 3):
            for g in guests:
                g.mmu.set_world(world)
                g.mmu.set_cpl(cpl)
            for page in pages:
                for access in ACCESSES:
                    answers = [(g.mmu.translate(page, access), g.mmu.page_fault) for g in guests]
                    assert answers[0] == answers[1], (hex(page), access, world, cpl)
    native, twin = guests
    assert bytes(native.ram) == bytes(twin.ram) and native.mmu.faults == twin.mmu.faults


# ------------------------------------------------------------------ a real run

CODE_LIN, CODE_PHYS = 0x00401000, 0x20000
DATA_LIN, DATA_PHYS = 0x00800000, 0x30000
PT0, PT1, PT2 = 0x11000, 0x12000, 0x13000


def _machine(cls):
    """Ring-0 flat protected mode on hybrid86's physical memory, paging on
    through the MMU (the real CR0 stays 0x11: the virtual TLB is the MMU)."""
    g = Guest(cls, ram_mb=4)
    g.mmu.set_a20(True)
    gdt = bytes(8) + descriptor(0, 0xFFFFF, 0x9B, 0xC) + descriptor(0, 0xFFFFF, 0x93, 0xC)
    g.ram[0x500:0x500 + len(gdt)] = gdt
    g.wr(PD, PT0 | P | W)
    for i in range(0x100):                                     # identity-map the low 1 MiB (GDT, stack)
        g.wr(PT0 + 4 * i, i << 12 | P | W)
    g.wr(PD + 4, PT1 | P | W | U)
    g.wr(PT1 + 4, CODE_PHYS | P | W | U)                       # code: 0x401000 -> 0x20000, user too
    g.wr(PD + 8, PT2 | P | W)                                  # data: PTEs filled in by the tests
    g.paging()
    g.uc.reg_write(UC_X86_REG_GDTR, (0, 0x500, len(gdt) - 1, 0))
    for reg, sel in ((UC_X86_REG_CS, 0x08), (UC_X86_REG_SS, 0x10), (UC_X86_REG_DS, 0x10), (UC_X86_REG_ES, 0x10)):
        g.uc.reg_write(reg, sel)
    g.uc.reg_write(UC_X86_REG_ESP, 0x9000)
    return g


def _load(g: Guest, source: str) -> int:
    code = assemble(source, org=CODE_LIN)
    g.ram[CODE_PHYS:CODE_PHYS + len(code)] = code
    return CODE_LIN + len(code)


@CLASSES
def test_run_faults_on_a_not_present_page_then_resumes(cls):
    g = _machine(cls)
    end = _load(g, f"nop\nmov eax, [{DATA_LIN + 0x123:#x}]\ninc eax\nmov [{DATA_LIN + 0x200:#x}], eax\nnop")
    with pytest.raises(UcError) as err:
        g.uc.emu_start(CODE_LIN, end - 1)
    assert err.value.errno == UC_ERR_EXCEPTION
    # The fill sees only the page (Unicorn passes address & ~0xFFF): CR2's page offset
    # is not reported.  EIP is at the faulting instruction, after the nop.
    assert g.mmu.page_fault == (DATA_LIN, 0) and g.mmu.faults == 1
    assert g.uc.reg_read(UC_X86_REG_EIP) == CODE_LIN + 1
    assert g.pte(CODE_LIN) & (A | D) == A                       # code fetched, never written
    # The monitor maps the page, clears the fault and resumes at EIP.
    g.wr(PT2, DATA_PHYS | P | W)
    g.wr(DATA_PHYS + 0x123, 41)
    g.mmu.clear_page_fault()
    g.mmu.invlpg(DATA_LIN)
    g.uc.emu_start(g.uc.reg_read(UC_X86_REG_EIP), end - 1)
    assert g.uc.reg_read(UC_X86_REG_EIP) == end - 1
    assert g.uc.reg_read(UC_X86_REG_EAX) == 42 and g.rd(DATA_PHYS + 0x200) == 42
    assert g.pte(DATA_LIN) & (A | D) == A | D and g.pde(DATA_LIN) & A
    assert g.mmu.page_fault is None and g.mmu.faults == 1


@CLASSES
@pytest.mark.parametrize("case", ["wp-write", "user-read", "fetch", "split-read"])
def test_run_protection_faults(cls, case):
    g = _machine(cls)
    g.wr(PT2, DATA_PHYS | P)                                   # 0x800000: supervisor, read-only
    g.wr(DATA_PHYS + 0x10, 7)
    source = {
        "wp-write": f"mov eax, [{DATA_LIN + 0x10:#x}]\nmov [{DATA_LIN + 0x10:#x}], eax\nnop",
        "user-read": f"nop\nnop\nmov eax, [{DATA_LIN + 0x10:#x}]\nnop",
        "fetch": f"mov eax, 1\njmp {DATA_LIN + 0x1000:#x}\nnop",       # 0x801000 is not present
        "split-read": f"mov eax, [{DATA_LIN + 0xFFE:#x}]\nnop",          # second page not present
    }[case]
    end = _load(g, source)
    if case == "wp-write":
        g.paging(wp=True)
    if case == "user-read":
        g.mmu.set_cpl(3)                                       # the guest's CPL, not the real CPU's
    with pytest.raises(UcError) as err:
        g.uc.emu_start(CODE_LIN, end - 1)
    assert err.value.errno == UC_ERR_EXCEPTION
    page, code, eip = {
        "wp-write": (DATA_LIN, PF_P | PF_W, CODE_LIN + 5),
        "user-read": (DATA_LIN, PF_P | PF_U, CODE_LIN + 2),
        "fetch": (DATA_LIN + 0x1000, 0, DATA_LIN + 0x1000),     # EIP = the jump's target
        "split-read": (DATA_LIN + 0x1000, 0, CODE_LIN),
    }[case]
    assert g.mmu.page_fault == (page, code)
    assert g.uc.reg_read(UC_X86_REG_EIP) == eip
    if case == "wp-write":
        assert g.uc.reg_read(UC_X86_REG_EAX) == 7 and g.pte(DATA_LIN) & D == 0
        g.paging(wp=False)                                     # supervisor writes allowed again
        g.mmu.clear_page_fault()
        g.uc.emu_start(eip, end - 1)
        assert g.pte(DATA_LIN) & D and g.uc.reg_read(UC_X86_REG_EIP) == end - 1


@CLASSES
def test_run_fetch_fault_of_an_instruction_crossing_into_a_missing_page(cls):
    """Unicorn translates a block before running it: when an instruction of the
    block crosses into a page the fill refuses, the run ends with EIP at the
    *block's* start (nothing of it ran), not at the crossing instruction."""
    g = _machine(cls)
    code = b"\x41" * 0xFFE + b"\xb8\x44"                       # inc ecx x 4094; mov eax, imm32 across
    g.ram[CODE_PHYS:CODE_PHYS + len(code)] = code
    with pytest.raises(UcError):
        g.uc.emu_start(CODE_LIN, CODE_LIN + 0x1010)
    eip = g.uc.reg_read(UC_X86_REG_EIP)
    assert g.mmu.page_fault == (CODE_LIN + 0x1000, 0)
    assert CODE_LIN <= eip < CODE_LIN + 0xFFE                  # a block start, not 0x401FFE
    assert g.uc.reg_read(UC_X86_REG_ECX) == eip - CODE_LIN     # state consistent with that EIP
    g.wr(PT1 + 8, 0x21000 | P | W)
    g.ram[0x21000:0x21003] = b"\x33\x22\x11"
    g.mmu.clear_page_fault()
    g.uc.emu_start(eip, CODE_LIN + 0x1003)                      # the end of the crossing mov
    assert g.uc.reg_read(UC_X86_REG_EAX) == 0x11223344
    assert g.uc.reg_read(UC_X86_REG_ECX) == 0xFFE


PT3 = 0x14000                   # the page table of 0xFFC00000..0xFFFFFFFF
TOP_PHYS = 0x31000              # the guest frame the run maps at 0xFFFFF000


@CLASSES
@pytest.mark.parametrize("base", MOVED, ids=hex)
def test_run_guest_memory_at_the_top_with_the_window_moved(cls, base):
    """Ring-0 code maps 0xFFFFF000 to a guest frame and reads and writes it
    while the data window is at `base`; the window serves the monitor's bytes;
    moving the window back (a flush) makes the top the monitor's again."""
    g = _machine(cls)
    mon = g.mem.monitor
    off = DATA_LINEAR - MONITOR_LINEAR                         # the window's frames in memory.monitor
    struct.pack_into("<I", mon, off, 0xC0DE1234)               # first window page
    struct.pack_into("<I", mon, off + 0xFF000, 0x5EC0DE77)     # last window page (0xFFFFF000 by default)
    g.wr(PD + 4 * 1023, PT3 | P | W)                           # an empty page table for the top 4 MiB
    g.wr(TOP_PHYS + 0x10, 1000)
    part1 = (f"mov dword [{PT3 + 4 * 1023:#x}], {TOP_PHYS | P | W:#x}\n"   # map 0xFFFFF000 (PT3 is identity-mapped)
             f"mov eax, [{TOP + 0x10:#x}]\n"
             "inc eax\n"
             f"mov [{TOP + 0x14:#x}], eax\n"
             f"mov ebx, [{base:#x}]\n"                        # monitor data at the new base
             f"mov edx, [{base + 0xFF000:#x}]\n"
             f"mov [{base + 8:#x}], eax")                      # BT: the window is writable
    part2 = (f"mov ecx, [{TOP:#x}]\n"                         # the default window again
             f"mov [{TOP + 0x20:#x}], eax")
    mid = CODE_LIN + len(assemble(part1, org=CODE_LIN))
    end = _load(g, f"{part1}\nnop\n{part2}\nnop")
    g.mmu.set_data_base(base)
    g.uc.emu_start(CODE_LIN, mid)
    assert g.uc.reg_read(UC_X86_REG_EIP) == mid and g.mmu.page_fault is None
    assert g.uc.reg_read(UC_X86_REG_EAX) == 1001 and g.rd(TOP_PHYS + 0x14) == 1001
    assert g.rd(PT3 + 4 * 1023) & (A | D) == A | D             # the guest's PTE, walked and dirtied
    assert g.uc.reg_read(UC_X86_REG_EBX) == 0xC0DE1234
    assert g.uc.reg_read(UC_X86_REG_EDX) == 0x5EC0DE77
    assert struct.unpack_from("<I", mon, off + 8)[0] == 1001
    assert bytes(mon[off + 0xFF010:off + 0xFF018]) == bytes(8)  # the guest's accesses missed the monitor
    g.mmu.set_data_base(DATA_LINEAR)                            # flushes 0xFFFFF000 -> TOP_PHYS
    g.uc.emu_start(mid, end - 1)
    assert g.uc.reg_read(UC_X86_REG_EIP) == end - 1 and g.mmu.page_fault is None
    assert g.uc.reg_read(UC_X86_REG_ECX) == 0x5EC0DE77
    assert struct.unpack_from("<I", mon, off + 0xFF020)[0] == 1001 and g.rd(TOP_PHYS + 0x20) == 0
