"""The software MMU: the native fill hook and its Python twin give the same
answer for every kind of page, and the policy is the documented one."""

from __future__ import annotations

import pytest
from unicorn import UC_ARCH_X86, UC_MEM_FETCH, UC_MEM_READ, UC_MEM_WRITE, UC_MODE_32, UC_PROT_EXEC, UC_PROT_READ, Uc

from _native import NativeMMU
from monitor.memory import DATA_LINEAR, MONITOR_PHYS, TC_ALLOC_END, TC_LINEAR, VOID_PHYS, PhysicalMemory
from monitor.mmu import RW, RWX, RX, SoftMMU

ACCESSES = (UC_MEM_READ, UC_MEM_WRITE, UC_MEM_FETCH)


def make(cls, ram_mb=2):
    uc = Uc(UC_ARCH_X86, UC_MODE_32)
    mem = PhysicalMemory(uc, ram_mb << 20)
    fired = []
    return cls(uc, mem, on_code_write=fired.append), fired


PAGES = [0x0, 0x7000, 0xB8000, 0xFF000, 0x100000, 0x101000, 0x1FF000, 0x200000, 0x5000000,
         TC_LINEAR, TC_LINEAR + 0x5000, DATA_LINEAR - 0x1000, DATA_LINEAR, 0xFFFFF000,
         # around the moved monitor-data windows below
         0x4FF000, 0x500000, 0x5FF000, 0x600000, 0x7FEFF000, 0x7FF00000, 0x7FFFF000, 0x80000000]
MOVED = 0x7FF00000                      # a data window below the TC


@pytest.mark.parametrize("data_base", [DATA_LINEAR, MOVED, 0x500000], ids=hex)
@pytest.mark.parametrize("a20", [False, True])
@pytest.mark.parametrize("world", ["bt", "de"])
@pytest.mark.parametrize("cpl", [0, 3])
@pytest.mark.parametrize("paging", [False, True])
def test_native_and_twin_agree_on_every_page(a20, world, cpl, paging, data_base):
    native, _ = make(NativeMMU)
    twin, _ = make(SoftMMU)
    for mmu in (native, twin):
        ram = mmu.memory.ram
        # With paging: a page directory at 0x1000 whose first table identity-maps
        # the low 4 MiB (user, writable) and whose last maps the monitor region's
        # linear pages onto low RAM (supervisor, read-only); tests/test_mmu_paging.py
        # has the thorough comparison.
        ram[0x1000:0x1004] = (0x2000 | 0x7).to_bytes(4, "little")
        ram[0x1FFC:0x2000] = (0x3000 | 0x1).to_bytes(4, "little")
        for i in range(1024):
            ram[0x2000 + 4 * i:0x2004 + 4 * i] = (i << 12 | 0x7).to_bytes(4, "little")
            ram[0x3000 + 4 * i:0x3004 + 4 * i] = (i << 12 | 0x1).to_bytes(4, "little")
        mmu.set_a20(a20)
        mmu.trace_page(0x7)
        mmu.set_control(0x80000011 if paging else 0x11, 0x1000, 0)
        mmu.set_world(world)
        mmu.set_cpl(cpl)
        mmu.set_data_base(data_base)
        assert mmu.data_base == data_base
    for page in PAGES:
        for access in ACCESSES:
            if page == 0x7000 and access == UC_MEM_WRITE:
                continue            # consumes the trace; checked below
            assert native.translate(page, access) == twin.translate(page, access), (hex(page), access)
            assert native.page_fault == twin.page_fault
    assert native.faults == twin.faults
    assert bytes(native.memory.ram[:0x4000]) == bytes(twin.memory.ram[:0x4000])   # A/D bits


def test_policy():
    for cls in (NativeMMU, SoftMMU):
        mmu, fired = make(cls)
        mmu.set_a20(False)
        assert mmu.translate(0x100000, UC_MEM_READ) == (0x0, RWX)           # A20 off: wraps to 0
        mmu.set_a20(True)
        assert mmu.translate(0x100000, UC_MEM_READ) == (0x100000, RWX)
        assert mmu.translate(TC_LINEAR, UC_MEM_FETCH) == (MONITOR_PHYS, UC_PROT_EXEC)   # TC: fetch only
        assert mmu.translate(TC_LINEAR, UC_MEM_WRITE) == (VOID_PHYS, RW)    # data: the guest's (no RAM there)
        assert mmu.translate(DATA_LINEAR, UC_MEM_READ)[0] == MONITOR_PHYS + (DATA_LINEAR - TC_LINEAR)
        assert mmu.translate(0x300000, UC_MEM_READ) == (VOID_PHYS, RWX)     # beyond 2 MiB of RAM
        mmu.trace_page(0x7)
        assert mmu.is_traced(0x7)
        assert mmu.translate(0x7000, UC_MEM_READ) == (0x7000, RX)           # traced: not writable
        assert mmu.translate(0x7000, UC_MEM_WRITE) is None                  # first write: refused...
        assert fired == [0x7] and mmu.trace_exit and not mmu.is_traced(0x7)  # ...after telling the monitor
        assert mmu.translate(0x7000, UC_MEM_WRITE) == (0x7000, RWX)         # then writable
        mmu.set_world("de")                                                 # direct execution:
        assert mmu.translate(TC_LINEAR, UC_MEM_FETCH) == (VOID_PHYS, RWX)   # a TC fetch is the guest's
        assert mmu.translate(TC_ALLOC_END, UC_MEM_FETCH)[1] == UC_PROT_EXEC  # but the until page (U19)
        assert mmu.translate(DATA_LINEAR, UC_MEM_WRITE) is None             # monitor data: read-only
        assert mmu.page_fault == (DATA_LINEAR, 0x3) and mmu.faults == 1
        # The monitor-data window moved below the TC: same frames, same policy;
        # its old place is the guest's (beyond 2 MiB of RAM: the void frame).
        assert mmu.data_base == DATA_LINEAR
        mmu.set_data_base(MOVED)
        assert mmu.data_base == MOVED
        assert mmu.translate(MOVED + 0x5000, UC_MEM_READ) == (MONITOR_PHYS + (DATA_LINEAR - TC_LINEAR) + 0x5000,
                                                              UC_PROT_READ)
        assert mmu.translate(MOVED, UC_MEM_WRITE) is None
        assert mmu.translate(DATA_LINEAR, UC_MEM_WRITE) == (VOID_PHYS, RWX)
        assert mmu.translate(0xFFFFF000, UC_MEM_FETCH) == (VOID_PHYS, RWX)
        mmu.set_world("bt")
        assert mmu.translate(MOVED, UC_MEM_WRITE) == (MONITOR_PHYS + (DATA_LINEAR - TC_LINEAR), RW)
        assert mmu.translate(DATA_LINEAR, UC_MEM_FETCH) == (VOID_PHYS, RWX)  # the TC is never there
        with pytest.raises(ValueError):
            mmu.set_data_base(TC_LINEAR - 0x80000)                          # would overlap the TC
        assert mmu.data_base == MOVED
