"""Execution counters: u32 in monitor data, folded into Python integers."""

import struct

from unicorn import UC_ARCH_X86, UC_MODE_32, Uc

from bt.tc import Unit
from monitor.counters import CounterPool, increment
from monitor.memory import MONITOR_LINEAR, PhysicalMemory


def pool():
    mem = PhysicalMemory(Uc(UC_ARCH_X86, UC_MODE_32), 1 << 20)
    return CounterPool(mem.monitor), mem


def poke(mem, addr, value):
    struct.pack_into("<I", mem.monitor, addr - MONITOR_LINEAR, value)


def test_fold_keeps_totals_and_clears_memory():
    counters, mem = pool()
    a, b = counters.allocate(), counters.allocate()
    poke(mem, a, 0xFFFFFFF0)
    poke(mem, b, 3)
    counters.fold()
    assert counters.read(a) == 0xFFFFFFF0 and counters.read(b) == 3
    poke(mem, a, 0x20)                       # would have wrapped a u32 without the fold
    assert counters.read(a) == 0xFFFFFFF0 + 0x20
    units = [Unit(key=("real", 0, 0), tc_start=0, tc_end=1, guest_len=1, pages=(), n_insns=5, counter=a),
             Unit(key=("real", 0, 1), tc_start=1, tc_end=2, guest_len=1, pages=(), n_insns=2, counter=b)]
    expected = (0xFFFFFFF0 + 0x20) * 5 + 3 * 2
    assert counters.executed(units) == expected
    counters.fold_and_reset(units)           # a TC flush keeps the total
    assert counters.used == 0 and counters.executed([]) == expected


def test_increment_code_is_flag_free_moves_and_lea():
    import capstone

    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_32)
    mnemonics = [i.mnemonic for i in md.disasm(increment(0xFFF50000), 0)]
    assert mnemonics == ["mov", "mov", "lea", "mov", "mov"]
