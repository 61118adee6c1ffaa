"""Descriptor and selector encoding (monitor/descriptors.py), SDM vol. 3, 3.4-3.5, 5.8, 6.11, 7.2."""

import struct

import pytest
from hypothesis import given, settings, strategies as st

from monitor import descriptors as D
from monitor.descriptors import Descriptor, Gate, Kind

raw8 = st.binary(min_size=8, max_size=8)


# ------------------------------------------------------------------ round trips

@settings(max_examples=400, deadline=None)
@given(raw8)
def test_every_8_byte_pattern_round_trips_bit_for_bit(raw):
    assert Descriptor.decode(raw).encode() == raw
    assert D.decode(raw).encode() == raw
    assert D.encode(D.decode(raw)) == raw


@settings(max_examples=200, deadline=None)
@given(raw8)
def test_gate_decode_round_trips_any_bytes(raw):
    assert Gate.decode(raw).encode() == raw


def test_existing_constructors_keep_their_encodings():
    # The encodings monitor/machine.py and the tests rely on (flat 4 GiB, 64 KiB).
    assert D.code32().encode() == bytes.fromhex("ffff0000009bcf00")
    assert D.data32().encode() == bytes.fromhex("ffff00000093cf00")
    assert D.code16().encode() == bytes.fromhex("ffff0000009b0000")
    assert D.data16(0x12340).encode() == bytes.fromhex("ffff4023019300" "00")
    assert D.code32(dpl=3).dpl == 3 and D.data32(0x1000, 0xFFF).limit == 0xFFF


def test_limit_scaling_by_granularity():
    raw = struct.pack("<HHBBBB", 0xBCDE, 0, 0, 0x93, 0x8A, 0)      # raw limit 0xABCDE, G=1
    d = Descriptor.decode(raw)
    assert d.granularity and d.raw_limit == 0xABCDE and d.limit == 0xABCDEFFF
    raw = struct.pack("<HHBBBB", 0xBCDE, 0, 0, 0x93, 0x0A, 0)      # G=0
    d = Descriptor.decode(raw)
    assert not d.granularity and d.raw_limit == 0xABCDE and d.limit == 0xABCDE
    assert d.with_raw_limit(0x12, True).limit == 0x12FFF
    assert d.with_raw_limit(0x12, True).encode()[:2] == b"\x12\x00"
    with pytest.raises(ValueError):
        d.with_raw_limit(0x100000, False)


def test_base_spans_bytes_2_3_4_and_7():
    d = Descriptor.decode(bytes([0, 0, 0x78, 0x56, 0x34, 0x92, 0, 0x12]))
    assert d.base == 0x12345678


# ------------------------------------------------------------------ code / data types (SDM Table 3-1)

# type: (code, readable, writable, expand_down, conforming)
TABLE_3_1 = {
    0x0: (False, True, False, False, False), 0x1: (False, True, False, False, False),
    0x2: (False, True, True, False, False), 0x3: (False, True, True, False, False),
    0x4: (False, True, False, True, False), 0x5: (False, True, False, True, False),
    0x6: (False, True, True, True, False), 0x7: (False, True, True, True, False),
    0x8: (True, False, False, False, False), 0x9: (True, False, False, False, False),
    0xA: (True, True, False, False, False), 0xB: (True, True, False, False, False),
    0xC: (True, False, False, False, True), 0xD: (True, False, False, False, True),
    0xE: (True, True, False, False, True), 0xF: (True, True, False, False, True),
}


@pytest.mark.parametrize("typ", range(16))
@pytest.mark.parametrize("dpl", range(4))
def test_code_and_data_type_bits(typ, dpl):
    d = Descriptor(0, 0xFFFF, 0x80 | D.ACC_S | (dpl << 5) | typ, 0)
    code, readable, writable, expand_down, conforming = TABLE_3_1[typ]
    assert d.is_segment and not d.is_system and not d.is_gate and d.present
    assert (d.is_code, d.is_data) == (code, not code)
    assert d.kind is (Kind.CODE if code else Kind.DATA)
    assert (d.readable, d.writable, d.expand_down, d.conforming) == (readable, writable, expand_down, conforming)
    assert d.accessed == bool(typ & 1) and d.dpl == dpl and d.type == typ


SYSTEM_KINDS = {
    0x0: Kind.RESERVED, 0x1: Kind.TSS16, 0x2: Kind.LDT, 0x3: Kind.TSS16_BUSY,
    0x4: Kind.CALL_GATE16, 0x5: Kind.TASK_GATE, 0x6: Kind.INT_GATE16, 0x7: Kind.TRAP_GATE16,
    0x8: Kind.RESERVED, 0x9: Kind.TSS32, 0xA: Kind.RESERVED, 0xB: Kind.TSS32_BUSY,
    0xC: Kind.CALL_GATE32, 0xD: Kind.RESERVED, 0xE: Kind.INT_GATE32, 0xF: Kind.TRAP_GATE32,
}


@pytest.mark.parametrize("typ", range(16))
def test_system_types(typ):
    raw = struct.pack("<HHBBBB", 0x67, 0x1000, 0, 0x80 | typ, 0, 0)
    entry = D.decode(raw)
    assert entry.kind is SYSTEM_KINDS[typ] and entry.is_system
    is_gate = typ in (4, 5, 6, 7, 0xC, 0xE, 0xF)
    assert isinstance(entry, Gate) == is_gate == entry.is_gate
    if not is_gate:
        assert entry.is_tss == (typ in (1, 3, 9, 0xB))
        assert entry.busy == (typ in (3, 0xB))
        assert entry.is_ldt == (typ == 2)
        assert not entry.readable and not entry.writable and not entry.expand_down


def test_flags_and_expand_down_offsets():
    up = D.data(0x1000, 0xFFF)
    assert up.offset_range() == (0, 0xFFF) and up.big and not up.long and not up.avl
    down32 = D.data(0, 0xFFF, expand_down=True)
    assert down32.offset_range() == (0x1000, 0xFFFFFFFF) and down32.upper_bound == 0xFFFFFFFF
    down16 = D.data(0, 0xFFF, expand_down=True, big=False)
    assert down16.offset_range() == (0x1000, 0xFFFF)
    assert D.data(0, 0xFFFF, expand_down=True, big=False).offset_range() is None    # empty
    d = Descriptor.decode(struct.pack("<HHBBBB", 0, 0, 0, 0x9A, 0x30, 0))
    assert d.long and d.avl and not d.big


# ------------------------------------------------------------------ gates

def test_call_gate_fields():
    g = D.call_gate(0x08, 0x12345678, dpl=3, params=5)
    raw = g.encode()
    assert raw == bytes.fromhex("7856" "0800" "05" "ec" "3412")
    back = D.decode(raw)
    assert isinstance(back, Gate) and back == g
    assert (back.selector, back.offset, back.param_count, back.dpl, back.present) == (8, 0x12345678, 5, 3, True)
    assert back.kind is Kind.CALL_GATE32 and back.is_32 and back.target_offset == 0x12345678
    g16 = D.call_gate(0x30, 0xABCD1234, bits=16, params=31)
    assert g16.kind is Kind.CALL_GATE16 and not g16.is_32 and g16.target_offset == 0x1234
    assert D.decode(g16.encode()).param_count == 31


def test_reserved_bits_of_the_count_byte_survive():
    raw = bytes.fromhex("0000" "0800" "e3" "8c" "0000")
    g = D.decode(raw)
    assert g.param_count == 3 and g.reserved == 7 and g.encode() == raw


@pytest.mark.parametrize("make,kind", [
    (lambda: D.int_gate(8, 0x1000), Kind.INT_GATE32),
    (lambda: D.int_gate(8, 0x1000, bits=16), Kind.INT_GATE16),
    (lambda: D.trap_gate(8, 0x1000), Kind.TRAP_GATE32),
    (lambda: D.trap_gate(8, 0x1000, bits=16), Kind.TRAP_GATE16),
    (lambda: D.task_gate(0x28, dpl=3), Kind.TASK_GATE),
])
def test_gate_constructors(make, kind):
    g = make()
    assert g.kind is kind and D.decode(g.encode()) == g


def test_system_segment_constructors():
    t = D.tss(0x60000, 0x67)
    assert t.kind is Kind.TSS32 and not t.busy and t.limit == 0x67 and t.base == 0x60000
    assert D.tss(0, busy=True).kind is Kind.TSS32_BUSY
    assert D.tss(0, bits=16).kind is Kind.TSS16 and D.tss(0, bits=16, busy=True).busy
    l = D.ldt(0x3000, 0xFF, dpl=0)
    assert l.kind is Kind.LDT and D.decode(l.encode()) == l


# ------------------------------------------------------------------ selectors

def test_selector_helpers():
    sel = D.make_selector(0x1F, ti=1, rpl=3)
    assert sel == 0xFF and D.selector_index(sel) == 0x1F and D.selector_ti(sel) == 1
    assert D.selector_rpl(sel) == 3 and D.selector_offset(sel) == 0xF8
    assert D.make_selector(8191, 0, 0) == 0xFFF8
    assert all(D.is_null_selector(s) for s in range(4))
    assert not any(D.is_null_selector(s) for s in range(4, 8))     # LDT entry 0 is not null
    with pytest.raises(ValueError):
        D.make_selector(8192)
    with pytest.raises(ValueError):
        D.make_selector(1, rpl=4)
