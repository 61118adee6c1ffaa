"""Guest RAM access: the native class and its twin agree, and both see what the
guest (Unicorn) sees, with no API call in between."""

import pytest
from hypothesis import given, settings, strategies as st
from unicorn import UC_ARCH_X86, UC_MODE_32, Uc

import _native
from monitor.memory import PhysicalMemory

IMPLS = pytest.mark.parametrize("impl", [_native.GuestRam, _native.PyGuestRam], ids=["native", "python"])


def ram(impl):
    uc = Uc(UC_ARCH_X86, UC_MODE_32)
    mem = PhysicalMemory(uc, 1 << 20)
    return uc, mem, impl(mem)


@IMPLS
def test_reads_and_writes_are_shared_with_the_guest(impl):
    uc, mem, r = ram(impl)
    r.write32(0x1000, 0x11223344)
    assert bytes(uc.mem_read(0x1000, 4)) == b"\x44\x33\x22\x11"
    uc.mem_write(0x2000, b"\xaa\xbb\xcc\xdd")
    assert (r.read8(0x2000), r.read16(0x2000), r.read32(0x2000)) == (0xAA, 0xBBAA, 0xDDCCBBAA)
    r.write(0x3000, b"hello")
    assert r.read(0x3000, 5) == b"hello" and bytes(mem.ram[0x3000:0x3005]) == b"hello"
    r.write16(0x4000, 0xBEEF)
    r.write8(0x4002, 0x7F)
    assert bytes(uc.mem_read(0x4000, 3)) == b"\xef\xbe\x7f"


@IMPLS
def test_out_of_range_is_an_index_error(impl):
    _, _, r = ram(impl)
    for call in (lambda: r.read32((1 << 20) - 2), lambda: r.write8(1 << 20, 0), lambda: r.read((1 << 20) - 1, 2)):
        with pytest.raises(IndexError):
            call()


@settings(max_examples=60, deadline=None)
@given(ops=st.lists(st.tuples(st.sampled_from(["8", "16", "32", "bytes"]),
                              st.integers(0, (1 << 20) - 8), st.integers(0, 0xFFFFFFFF)), max_size=20))
def test_native_and_twin_agree(ops):
    _, _, a = ram(_native.GuestRam)
    _, _, b = ram(_native.PyGuestRam)
    for kind, addr, value in ops:
        for r in (a, b):
            if kind == "8":
                r.write8(addr, value & 0xFF)
            elif kind == "16":
                r.write16(addr, value & 0xFFFF)
            elif kind == "32":
                r.write32(addr, value)
            else:
                r.write(addr, value.to_bytes(4, "little"))
        assert a.read(addr, 8) == b.read(addr, 8)
        assert a.read32(addr) == b.read32(addr) and a.read16(addr + 1) == b.read16(addr + 1)
