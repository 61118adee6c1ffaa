"""monitor.regs: the views compose, the flag helpers hit the right bits."""

import pytest
from hypothesis import given, strategies as st

from monitor.regs import (
    FLAG_AF, FLAG_CF, FLAG_DF, FLAG_FIXED1, FLAG_IF, FLAG_OF, FLAG_PF, FLAG_SF, FLAG_TF,
    FLAG_ZF, GPR_NAMES, SEG_NAMES, RegisterFile,
)

u32 = st.integers(0, 0xFFFFFFFF)
u16 = st.integers(0, 0xFFFF)
u8 = st.integers(0, 0xFF)

WORD_VIEWS = {"ax": "eax", "cx": "ecx", "dx": "edx", "bx": "ebx", "sp": "esp", "bp": "ebp",
              "si": "esi", "di": "edi", "ip": "eip", "flags": "eflags"}
BYTE_PAIRS = {"ax": ("ah", "al"), "bx": ("bh", "bl"), "cx": ("ch", "cl"), "dx": ("dh", "dl")}


def test_defaults():
    r = RegisterFile()
    assert r.gprs() == [0] * 9 + [FLAG_FIXED1]
    assert r.segs() == [0] * 6


@given(u32, u16, st.sampled_from(sorted(WORD_VIEWS)))
def test_word_view_writes_low_half_only(initial, value, view):
    r = RegisterFile()
    setattr(r, WORD_VIEWS[view], initial)
    setattr(r, view, value)
    assert getattr(r, WORD_VIEWS[view]) == (initial & 0xFFFF0000) | value
    assert getattr(r, view) == value


@given(u32, u8, u8, st.sampled_from(sorted(BYTE_PAIRS)))
def test_high_then_low_byte_equals_word(initial, hi, lo, word):
    hname, lname = BYTE_PAIRS[word]
    a, b = RegisterFile(), RegisterFile()
    setattr(a, "e" + word, initial)
    setattr(b, "e" + word, initial)
    setattr(a, hname, hi)
    setattr(a, lname, lo)
    setattr(b, word, (hi << 8) | lo)
    assert a == b
    assert getattr(a, hname) == hi and getattr(a, lname) == lo


@given(u32, st.integers(-(1 << 40), 1 << 40))
def test_views_mask_out_of_range_values(initial, value):
    r = RegisterFile(eax=initial)
    r.al = value
    assert r.eax == (initial & 0xFFFFFF00) | (value & 0xFF)
    r.ah = value
    assert r.ah == value & 0xFF and r.eax >> 16 == initial >> 16


@pytest.mark.parametrize("name,bit", [
    ("cf", FLAG_CF), ("pf", FLAG_PF), ("af", FLAG_AF), ("zf", FLAG_ZF), ("sf", FLAG_SF),
    ("tf", FLAG_TF), ("if_", FLAG_IF), ("df", FLAG_DF), ("of", FLAG_OF),
])
def test_flag_properties(name, bit):
    r = RegisterFile(eflags=0xFFFFFFFF & ~bit)
    assert getattr(r, name) is False
    setattr(r, name, True)
    assert r.eflags == 0xFFFFFFFF and getattr(r, name) is True
    setattr(r, name, False)
    assert r.eflags == 0xFFFFFFFF & ~bit


@given(u32, st.integers(0, 3))
def test_iopl(eflags, level):
    r = RegisterFile(eflags=eflags)
    r.iopl = level
    assert r.iopl == level
    assert r.eflags & ~0x3000 == eflags & ~0x3000


@given(st.lists(u32, min_size=10, max_size=10), st.lists(u16, min_size=6, max_size=6))
def test_batch_round_trip_and_copy(gprs, segs):
    r = RegisterFile()
    r.set_gprs(gprs)
    r.set_segs(segs)
    assert r.gprs() == gprs and r.segs() == segs
    assert [getattr(r, n) for n in GPR_NAMES] == gprs
    assert [getattr(r, n) for n in SEG_NAMES] == segs
    c = r.copy()
    assert c == r and c is not r
    c.al ^= 1
    assert c != r


def test_set_gprs_order_and_errors():
    r = RegisterFile()
    r.set_gprs(range(1, 11))
    assert (r.eax, r.ecx, r.edx, r.ebx, r.esp, r.ebp, r.esi, r.edi, r.eip, r.eflags) == tuple(range(1, 11))
    with pytest.raises(ValueError, match="10 values"):
        r.set_gprs([0] * 9)
    with pytest.raises(AttributeError, match="no register 'rax'"):
        RegisterFile(rax=1)


def test_repr_is_hex():
    r = RegisterFile(eax=0xDEADBEEF, cs=0xF000)
    assert "eax=deadbeef" in repr(r) and "cs=f000" in repr(r)
