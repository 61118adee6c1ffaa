"""The shadow-descriptor manager (monitor/shadow.py).

lsl/lar/verr/verw are checked against Unicorn as the oracle (descriptor-table
limits, lsl and lar work there: contract fact U1), on random guest GDTs and
LDTs, for every selector and RPL, at CPL 0 and CPL 3.  Truncation, gate hiding
and bit-for-bit preservation are property tests; sgdt/sidt/sldt/str/smsw
operand-size rules are checked against Unicorn too.
"""

import os
import struct
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st
from unicorn.x86_const import (
    UC_X86_REG_CR0, UC_X86_REG_EAX, UC_X86_REG_EBX, UC_X86_REG_ECX, UC_X86_REG_EDX,
    UC_X86_REG_GDTR, UC_X86_REG_IDTR,
)

from monitor import descriptors as D
from monitor import shadow as S
from monitor.descriptors import Descriptor
from monitor.shadow import GuestTables, Note
from x86env import CODE, DATA3, GDT_BASE, World, assemble, descriptor

MB = S.MONITOR_BASE
raw8 = st.binary(min_size=8, max_size=8)


# ====================================================================== Unicorn as the oracle

LDT_SEL = 0x48          # GDT entry 9: the LDT descriptor (entries 0-8 are x86env.World's)
LDT_BASE = 0x3000
SELS = 0x5000           # dword selector list
RESULTS = 0x20000       # 32 bytes per selector
SENTINEL = 0xDEADBEEF

PROBE = assemble(f"""
    mov ax, {DATA3}
    mov ds, ax
    mov es, ax
    mov esi, {SELS}
    mov edi, {RESULTS}
    mov ebp, [esi]
    add esi, 4
.next:
    mov edx, [esi]
    mov eax, {SENTINEL}
    lsl eax, dx
    setz byte [edi + 16]
    mov [edi], eax
    mov eax, {SENTINEL}
    lar eax, dx
    setz byte [edi + 17]
    mov [edi + 4], eax
    mov eax, {SENTINEL}
    lsl ax, dx
    setz byte [edi + 18]
    mov [edi + 8], eax
    mov eax, {SENTINEL}
    lar ax, dx
    setz byte [edi + 19]
    mov [edi + 12], eax
    verr dx
    setz byte [edi + 20]
    verw dx
    setz byte [edi + 21]
    add esi, 4
    add edi, 32
    dec ebp
    jnz .next
    nop
""", org=CODE)
PROBE_END = CODE + len(PROBE) - 1
SET_LDTR = assemble("lldt ax\nnop", org=CODE + 0x8000)


def _entry(base, limit, access, flags):
    return descriptor(base, limit, access, flags)


# Entries: half fully random bytes, half structured with every access byte (all
# code/data types, all 16 system types, every DPL, P on and off) and small bases.
entry_st = st.one_of(
    raw8,
    st.builds(_entry, st.integers(0, 0xFFFFFFFF), st.integers(0, 0xFFFFF), st.integers(0, 255), st.integers(0, 15)),
)


def _table(entries, short):
    data = b"".join(entries)
    return data[:len(data) - short]


@st.composite
def guest_tables(draw):
    fixed = World().uc.mem_read(GDT_BASE, 9 * 8)       # null, ring-0/3 code and data, TSS, code16, small, gate
    ldt_entries = draw(st.lists(entry_st, min_size=1, max_size=12))
    ldt_short = draw(st.integers(0, 7))
    ldt = _table(ldt_entries, ldt_short)
    ldt_desc = D.ldt(LDT_BASE, len(ldt) - 1).encode()
    gdt_entries = [bytes(fixed), ldt_desc] + draw(st.lists(entry_st, min_size=1, max_size=24))
    gdt = _table(gdt_entries, draw(st.integers(0, 7)))
    load_ldt = draw(st.booleans())
    return gdt, ldt, load_ldt


def _selectors(gdt, ldt):
    sels = []
    for ti, table in ((0, gdt), (1, ldt)):
        for index in range(len(table) // 8 + 2):      # one beyond the limit, one partial or past it
            sels += [(index << 3) | (ti << 2) | rpl for rpl in range(4)]
    return sels


def _run_oracle(gdt, ldt, load_ldt, sels):
    """Results for each selector at CPL 0 and CPL 3: {cpl: [(lsl32, lar32, lsl16, lar16, zf x6)]}."""
    w = World()
    w.uc.mem_write(GDT_BASE, gdt)
    w.uc.reg_write(UC_X86_REG_GDTR, (0, GDT_BASE, len(gdt) - 1, 0))
    w.uc.mem_write(LDT_BASE, ldt)
    w.uc.mem_write(SELS, struct.pack(f"<{len(sels) + 1}I", len(sels), *sels))
    seen = w.record_interrupts()
    w.uc.mem_write(CODE + 0x8000, SET_LDTR)
    w.uc.reg_write(UC_X86_REG_EAX, LDT_SEL if load_ldt else 0)
    w.uc.emu_start(CODE + 0x8000, CODE + 0x8000 + len(SET_LDTR) - 1)
    w.load(PROBE)
    out = {}
    for cpl in (0, 3):
        if cpl == 3:
            w.enter_ring3(CODE)
            assert w.cpl() == 3
        w.uc.mem_write(RESULTS, bytes(32 * len(sels)))
        w.uc.emu_start(CODE, PROBE_END)
        assert seen == [], seen
        raw = w.uc.mem_read(RESULTS, 32 * len(sels))
        out[cpl] = [struct.unpack_from("<4I6B", raw, 32 * i) for i in range(len(sels))]
    # The probe's own segment loads (DS, ES, and iret's CS and SS) set accessed
    # bits in the table (SDM 3.4.5.1); lsl/lar/verr/verw ran on the table as it
    # is now.  Nothing else may have changed.
    after = bytes(w.uc.mem_read(GDT_BASE, len(gdt)))
    for i in range(len(gdt) // 8):
        assert after[8 * i:8 * i + 8] == gdt[8 * i:8 * i + 8] or i in (1, 2, 3, 4), i
    return out, after


def _expected(sel, cpl, tables):
    """What the SDM says, through monitor.shadow, in the probe's record layout."""
    vals, zfs = [], []
    for fn, size in ((S.lsl, 32), (S.lar, 32), (S.lsl, 16), (S.lar, 16)):
        zf, value = fn(sel, cpl, tables, operand_size=size)
        zfs.append(int(zf))
        if not zf:
            vals.append(SENTINEL)
        elif size == 32:
            vals.append(value)
        else:
            vals.append((SENTINEL & 0xFFFF0000) | value)
    zfs += [int(S.verr(sel, cpl, tables)), int(S.verw(sel, cpl, tables))]
    return tuple(vals + zfs)


# A longer campaign: HYBRID86_ORACLE_EXAMPLES=2000 pytest tests/test_shadow.py -k unicorn
ORACLE_EXAMPLES = int(os.environ.get("HYBRID86_ORACLE_EXAMPLES", "100"))


@settings(max_examples=ORACLE_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(guest_tables())
def test_lsl_lar_verr_verw_agree_with_unicorn(tables_):
    gdt, ldt, load_ldt = tables_
    sels = _selectors(gdt, ldt)
    got, gdt = _run_oracle(gdt, ldt, load_ldt, sels)
    tables = GuestTables(gdt, ldt if load_ldt else None)
    bad = []
    for cpl in (0, 3):
        for sel, result in zip(sels, got[cpl]):
            want = _expected(sel, cpl, tables)
            if result != want:
                entry = tables.entry(sel)
                bad.append(f"cpl={cpl} sel={sel:#06x} entry={entry.hex() if entry else None} "
                           f"unicorn={[hex(v) for v in result]} sdm={[hex(v) for v in want]}")
    assert not bad, "\n".join(bad[:20])


# Hand-picked cases (documentation of the rules, and a regression net).
def _gdt(*entries):
    return bytes(8) + b"".join(e.encode() for e in entries)


def test_lsl_lar_rules_by_hand():
    t = GuestTables(_gdt(
        D.data(0, 0xFFFFF, dpl=0),                                  # 0x08
        Descriptor(0, 0xFFFFFFFF, 0x92 | 0x60, D.FLAG_G | D.FLAG_DB),  # 0x10 DPL3 4 GiB
        D.code(0x1000, 0xFFF, dpl=0, conforming=True, readable=True),  # 0x18 conforming
        D.call_gate(0x08, 0x1234, dpl=3),                           # 0x20
        D.int_gate(0x08, 0x1234, dpl=3),                            # 0x28
        D.tss(0x60000, 0x67, dpl=3),                                # 0x30
        D.data(0, 0xFFF, dpl=3, present=False),                     # 0x38 not present
        D.code(0, 0xFFF, dpl=3, readable=False),                    # 0x40 execute-only
    ))
    assert S.lsl(0x08, 0, t) == (True, 0xFFFFF)
    assert S.lsl(0x0B, 0, t) == (False, None)              # RPL 3 > DPL 0
    assert S.lsl(0x08, 3, t) == (False, None)              # CPL 3 > DPL 0
    assert S.lsl(0x13, 3, t) == (True, 0xFFFFFFFF)         # G scales the limit
    assert S.lsl(0x13, 3, t, operand_size=16) == (True, 0xFFFF)
    assert S.lsl(0x1B, 3, t) == (True, 0xFFF)              # conforming code: no DPL check
    assert S.lsl(0x20, 0, t) == (False, None)              # gates have no limit
    assert S.lar(0x20, 3, t) == (True, 0x0000EC00)         # call gate: valid for LAR
    assert S.lar(0x28, 0, t) == (False, None)              # interrupt gate: not valid
    assert S.lsl(0x30, 3, t) == (True, 0x67) and S.lar(0x30, 3, t) == (True, 0x0000E900)
    assert S.lar(0x38, 3, t) == (True, 0x00407200)         # P is not checked
    assert S.lar(0x13, 3, t) == (True, 0x00C0F200)         # bits 19:16 (limit) masked out
    assert S.lar(0x13, 3, t, operand_size=16) == (True, 0xF200)
    assert S.lsl(0, 0, t) == (False, None) and S.lar(3, 0, t) == (False, None)      # null
    assert S.lsl(0x48, 0, t) == (False, None)              # beyond the GDT limit
    assert S.lsl(0x0C, 0, t) == (False, None)              # LDT selector, LDTR null
    assert S.verr(0x13, 3, t) and S.verw(0x13, 3, t)
    assert S.verr(0x1B, 3, t) and not S.verw(0x1B, 0, t)   # conforming readable code; code never writable
    assert not S.verr(0x43, 3, t)                          # execute-only
    assert not S.verr(0x30, 3, t) and not S.verw(0x20, 3, t)   # system descriptors
    assert S.verr(0x38, 3, t)                              # P not checked


# ====================================================================== sgdt sidt sldt str smsw

def test_system_register_stores_agree_with_unicorn():
    w = World()
    code = assemble(f"""
        mov ax, {LDT_SEL}
        lldt ax
        sgdt [0x1100]
        o16 sgdt [0x1110]
        sidt [0x1120]
        o16 sidt [0x1130]
        mov eax, 0xFFFFFFFF
        sldt eax
        mov ebx, 0xFFFFFFFF
        o16 sldt bx
        mov ecx, 0xFFFFFFFF
        str ecx
        mov word [0x1140], 0xAAAA
        mov word [0x1142], 0xBBBB
        sldt [0x1140]
        mov edx, 0xFFFFFFFF
        smsw edx
        o16 smsw [0x1150]
        mov dword [0x1154], 0xCCCCCCCC
        smsw [0x1154]
        nop
    """, org=CODE)
    gdt = w.uc.mem_read(GDT_BASE, 9 * 8) + D.ldt(LDT_BASE, 0x17).encode()
    w.uc.mem_write(GDT_BASE, bytes(gdt))
    w.uc.reg_write(UC_X86_REG_GDTR, (0, GDT_BASE, len(gdt) - 1, 0))
    # An IDT base with a high byte, so a 24-bit store shows (sidt reads no table).
    w.uc.reg_write(UC_X86_REG_IDTR, (0, 0xAB0C0000, 0x7FF, 0))
    w.uc.reg_write(UC_X86_REG_CR0, 0x60000031)        # CD NW NE ET PE
    seen = w.record_interrupts()
    w.uc.emu_start(w.load(code), CODE + len(code) - 1)
    assert seen == []
    mem = lambda a, n: bytes(w.uc.mem_read(a, n))
    assert mem(0x1100, 6) == S.sgdt(GDT_BASE, len(gdt) - 1) == mem(0x1110, 6)
    assert mem(0x1120, 6) == S.sidt(0xAB0C0000, 0x7FF)
    # Unicorn vs SDM: with a 16-bit operand Unicorn stores a 24-bit base and a
    # zero byte (older SDM editions); the current SDM and AMD's APM store the
    # full base.  The SDM wins: excluded from the oracle comparison, pinned here
    # so a Unicorn change shows.
    assert mem(0x1130, 6) == bytes.fromhex("ff07" "00000c00")
    assert S.sidt(0xAB0C0000, 0x7FF, operand_size=16) == bytes.fromhex("ff07" "00000cab")
    assert S.sldt(LDT_SEL) == (w.uc.reg_read(UC_X86_REG_EAX), 4)              # zero-extended
    value, width = S.sldt(LDT_SEL, operand_size=16)
    assert width == 2 and w.uc.reg_read(UC_X86_REG_EBX) == 0xFFFF0000 | value
    assert S.str_(0x28) == (w.uc.reg_read(UC_X86_REG_ECX), 4)
    assert S.sldt(LDT_SEL, dest_is_register=False) == (LDT_SEL, 2) and mem(0x1140, 4) == bytes([LDT_SEL, 0, 0xBB, 0xBB])
    # smsw r32: SDM bits 31:16 undefined; Unicorn keeps them (a 16-bit write).
    assert S.smsw(0x60000031) == (0x31, 2) and w.uc.reg_read(UC_X86_REG_EDX) == 0xFFFF0031
    assert S.smsw(0x60000031, dest_is_register=False) == (0x31, 2)
    assert mem(0x1150, 2) == b"\x31\x00" and mem(0x1154, 4) == b"\x31\x00\xcc\xcc"


def test_stores_give_the_guests_values_not_the_monitors():
    assert S.sgdt(0x00012345, 0x27) == bytes.fromhex("2700" "45230100")
    assert S.sidt(0, 0x3FF) == bytes.fromhex("ff03" "00000000")
    assert S.str_(0x2B, operand_size=16) == (0x2B, 2)
    assert S.smsw(0x80050033, operand_size=16) == (0x0033, 2)


# ====================================================================== truncation

def _linear_pieces(base, lo, hi):
    """Linear byte ranges of offsets lo..hi of a segment at `base` (wrapping mod 2^32)."""
    start, end = (base + lo) & 0xFFFFFFFF, (base + hi) & 0xFFFFFFFF
    if hi - lo >= 0xFFFFFFFF:
        return [(0, 0xFFFFFFFF)]
    if start <= end:
        return [(start, end)]
    return [(start, 0xFFFFFFFF), (0, end)]


def _reaches(d, mb=MB):
    rng = d.offset_range()
    if rng is None:
        return False
    return any(hi >= mb for _lo, hi in _linear_pieces(d.base, *rng))


def _mask_limit(raw):
    """The bytes truncation may change: limit 15:0, limit 19:16 and G. Everything else."""
    b = bytearray(raw)
    b[0] = b[1] = 0
    b[6] &= 0x70
    return bytes(b)


segment_st = st.builds(
    _entry,
    st.one_of(st.integers(0, 0xFFFFFFFF), st.sampled_from([0, 0x400000, MB - 0x1000, MB - 0x800, MB - 1, MB, 0xFFFFF000]),
              st.integers(MB - 0x200000, 0xFFFFFFFF)),
    st.one_of(st.integers(0, 0xFFFFF), st.sampled_from([0, 0xFFF, 0xFFFF, 0xFFFFF])),
    st.builds(lambda dpl, typ: 0x90 | (dpl << 5) | typ, st.integers(0, 3), st.integers(0, 15)),  # present code/data
    st.integers(0, 15),
)


@settings(max_examples=1500, deadline=None)
@given(segment_st, st.sampled_from([MB, 0xC0000000, 0x80000000]))
def test_truncation_never_reaches_the_monitor_region(raw, mb):
    guest = Descriptor.decode(raw)
    shadowed, note = S.shadow_entry(raw, mb)
    sh = Descriptor.decode(shadowed)
    if note & Note.UNSHADOWABLE:
        # Expand-up with its first byte in the region: no limit can help, so not present.
        assert not guest.expand_down and guest.base >= mb
        assert not sh.present and shadowed[:5] + shadowed[6:] == raw[:5] + raw[6:]
        return
    assert sh.present and not _reaches(sh, mb)
    assert _mask_limit(shadowed) == _mask_limit(raw)            # base, type, DPL, P, D/B, L, AVL kept
    assert bool(note & Note.TRUNCATED) == (shadowed != raw) == _reaches(guest, mb)
    # Truncation only ever removes offsets, and keeps every guest offset it can.
    g, s = guest.offset_range(), sh.offset_range()
    if s is not None:
        assert g[0] <= s[0] and s[1] <= g[1]
    if shadowed != raw and s is not None:
        # The largest safe range: one more byte (at G's granularity) would reach the region.
        step = 0x1000 if sh.granularity else 1
        if guest.expand_down:
            wider = Descriptor(sh.base, sh.limit - step, sh.access, sh.flags)
            assert wider.limit < guest.limit or _reaches(wider, mb)
        else:
            wider = Descriptor(sh.base, sh.limit + step, sh.access, sh.flags)
            assert wider.limit > guest.limit or _reaches(wider, mb)


@pytest.mark.parametrize("guest,limit,flags", [
    (D.data32(), 0xFFBFFFFF, 0xC),                                    # flat 4 GiB: up to the region
    (D.code32(0x400000), 0xFF7FFFFF, 0xC),
    (D.data32(MB - 0x800), 0x7FF, 0x4),                               # G=1 cannot say 2 KiB: G flips
    (D.data32(MB - 0x1800), 0xFFF, 0xC),                              # G=1 rounds down
    (D.data(0, 0xFFFF, expand_down=True), 0xFFFFFFFF, 0xC),           # top in the region: empty
    (D.data(0x400000, 0, expand_down=True), 0xFFBFFFFF, 0xC),         # keep the part above, wrapped
    (D.data(0x1000, 0xFFFFF, expand_down=True, big=False), 0xFFFFF, 0x0),  # nothing reaches: unchanged
])
def test_truncation_examples(guest, limit, flags):
    raw = guest.encode()
    sh = Descriptor.decode(S.shadow_entry(raw)[0])
    assert (sh.limit, sh.flags) == (limit, flags), (hex(sh.limit), sh.flags)


def test_expand_down_16bit_stack_straddling_the_region_is_emptied():
    d = D.data(MB - 0x8000, 0, expand_down=True, big=False)     # offsets 1..0xFFFF, top in the region
    sh = Descriptor.decode(S.shadow_entry(d.encode())[0])
    assert sh.offset_range() is None and sh.present


# ====================================================================== whole tables

table_st = st.lists(st.one_of(raw8, segment_st), min_size=1, max_size=40)


@settings(max_examples=300, deadline=None)
@given(table_st, st.integers(0, 7), st.booleans())
def test_shadow_table_index_for_index(entries, short, is_ldt):
    guest = _table(entries, short)
    assume(guest)
    sh = S.shadow_table(guest, ldt=is_ldt)
    assert len(sh.data) == len(guest) and len(sh.notes) == len(guest) // 8
    assert sh.data[len(guest) // 8 * 8:] == guest[len(guest) // 8 * 8:]        # partial entry verbatim
    if not is_ldt and sh.notes:
        assert sh.data[:8] == guest[:8] and sh.notes[0] == Note.NONE         # GDT entry 0 verbatim
    for i, note in enumerate(sh.notes):
        g, s = guest[8 * i:8 * i + 8], sh.data[8 * i:8 * i + 8]
        if i == 0 and not is_ldt:
            continue
        gd, sd = Descriptor.decode(g), Descriptor.decode(s)
        if gd.is_gate:
            assert not sd.present and note & Note.GATE                        # never a present gate
            assert s == g[:5] + bytes([g[5] & 0x7F]) + g[6:]                  # only P changes
        elif not gd.present or g == bytes(8):
            assert s == g                                                     # null / not present
        elif gd.is_system:
            if gd.type in (D.SYS_TSS16, D.SYS_TSS32):
                assert s == g[:5] + bytes([g[5] & 0x7F]) + g[6:] and note == Note.SYSTEM | Note.HIDDEN
            else:
                assert s == g and note == Note.SYSTEM                         # busy TSS, LDT, reserved
        elif note & Note.UNSHADOWABLE:
            assert not sd.present
        else:
            assert not _reaches(sd) and _mask_limit(s) == _mask_limit(g)
            assert bool(note & Note.TRUNCATED) == (s != g)
    assert set(sh.gates) == {i for i in range(len(sh.notes)) if (i or is_ldt)
                             and not guest[8 * i + 5] & 0x10 and guest[8 * i + 5] & 0xF in D.GATE_TYPES}
    assert sum(sh.counts().values()) >= len(sh.hidden)


def test_notes_and_counts():
    g = _gdt(D.data32(), D.code32(0x1000, 0xFFFF), D.call_gate(8, 0), D.tss(0x60000),
             D.tss(0x60000, busy=True), D.ldt(0x3000, 0x1F), D.data32(MB + 0x1000, 0xFF), D.task_gate(0x20))
    sh = S.shadow_table(g)
    assert sh.truncated == [1] and sh.gates == [3, 8]
    assert sh.hidden == [3, 4, 7, 8]
    assert sh.notes[5] == Note.SYSTEM and sh.notes[6] == Note.SYSTEM
    assert sh.counts() == {"truncated": 1, "gate": 2, "system": 5, "hidden": 4, "unshadowable": 1}


def test_reshadow_follows_guest_writes():
    guest = bytearray(_gdt(D.data32(0, 0xFFFF), D.data32(0, 0xFFFF)))
    shadow = bytearray(S.shadow_table(bytes(guest)).data)
    guest[16:24] = D.call_gate(8, 0x1000).encode()      # the guest writes entry 2
    changed = S.reshadow(shadow, bytes(guest), 16 + 5, 16 + 6)
    assert changed == {2: Note.GATE | Note.SYSTEM | Note.HIDDEN}
    assert bytes(shadow) == S.shadow_table(bytes(guest)).data
    guest[4:12] = b"\xff" * 8                           # a write straddling entries 0 and 1
    changed = S.reshadow(shadow, bytes(guest), 4, 12)
    assert set(changed) == {0, 1} and bytes(shadow) == S.shadow_table(bytes(guest)).data


# ====================================================================== the shadow on Unicorn

U6_CHILD = """
import sys; sys.path.insert(0, {tests!r})
from x86env import World, assemble, CODE, GATE3, GDT_BASE
from monitor.shadow import shadow_table
w = World()
guest = bytes(w.uc.mem_read(GDT_BASE, w.gdt_limit + 1))
w.uc.mem_write(GDT_BASE, shadow_table(guest).data)
w.load(assemble("call {gate}:0"))
w.enter_ring3(CODE)
seen = w.record_interrupts()
w.uc.emu_start(CODE, CODE + 7)
print("survived", seen)
"""


def test_shadowed_call_gate_faults_instead_of_aborting_the_host():
    """U6: a call through a call gate from CPL 3 aborts the host; the shadow gate raises #NP."""
    from x86env import GATE3
    child = U6_CHILD.format(tests=os.path.dirname(__file__), gate=GATE3)
    res = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=60,
                         cwd=os.path.dirname(os.path.dirname(__file__)))
    assert res.returncode == 0, (res.returncode, res.stderr[-800:])
    assert f"survived [(11, {CODE})]" in res.stdout               # #NP at the call


def test_shadowed_available_tss_cannot_switch_tasks():
    from x86env import TSS
    w = World()
    guest = bytes(w.uc.mem_read(GDT_BASE, w.gdt_limit + 1))
    w.uc.mem_write(GDT_BASE, S.shadow_table(guest).data)
    code = assemble(f"jmp {TSS}:0")
    seen = w.record_interrupts()
    w.uc.emu_start(w.load(code), CODE + len(code))
    assert seen == [(11, CODE)]


def test_shadow_lsl_in_direct_execution_shows_the_truncated_limit():
    """What DE reveals: lsl runs on the real CPU against the shadow (docs/shadowing.md)."""
    w = World()
    guest = bytes(w.uc.mem_read(GDT_BASE, w.gdt_limit + 1))
    w.uc.mem_write(GDT_BASE, S.shadow_table(guest).data)
    code = assemble(f"mov eax, {DATA3}\nlsl ebx, eax\nnop")
    w.load(code)
    w.enter_ring3(CODE)
    w.uc.emu_start(CODE, CODE + len(code) - 1)
    assert w.uc.reg_read(UC_X86_REG_EBX) == MB - 1
    assert S.lsl(DATA3, 3, GuestTables(guest)) == (True, 0xFFFFFFFF)   # what the guest's CPU says


# ====================================================================== reversibility

def test_reversibility_cases():
    flat = D.data32(dpl=3)
    gdt = GuestTables(_gdt(flat, D.data32(0x1000, 0xFFF), D.data(0, 0xFFF, present=False),
                           D.call_gate(8, 0)))
    assert S.is_reversible(flat, flat.encode())
    # The load set the accessed bit; the guest may clear it later: a reload sets it again.
    assert S.is_reversible(flat, flat.with_access(flat.access & ~D.ACC_ACCESSED).encode())
    # The same byte limit through G=0 or G=1 is the same hidden part.
    assert S.is_reversible(Descriptor(0, 0xFFF, 0x93, 0x4), Descriptor(0, 0xFFF, 0x93, 0xC))
    # The table changed since the load.
    assert not S.is_reversible(flat, D.data32(0x1000).encode())
    assert not S.is_reversible(flat, D.data32(dpl=2).encode())
    assert not S.is_reversible(flat, D.data32(limit=0xFFFFF).encode())
    assert not S.is_reversible(flat, Descriptor(0, 0xFFFFFFFF, 0xF3, 0x8).encode())    # D/B changed
    # Loaded in real mode: base = value * 16, limit 64 KiB (what the slots hold).
    real = D.data16(0x1000 * 16)
    assert not S.is_reversible(real, D.data32(dpl=0).encode())
    assert S.is_reversible(real, real.encode())
    # A reload must be possible: not present, system, beyond the limit.
    assert not S.is_reversible(D.data(0, 0xFFF, present=False), D.data(0, 0xFFF, present=False).encode())
    assert not S.is_reversible(flat, None)
    assert not S.is_reversible(flat, D.call_gate(8, 0).encode())
    # Null selectors.
    assert S.is_reversible(None, None) and not S.is_reversible(None, flat.encode())
    assert gdt.reversible(0x0B, flat) and gdt.reversible(0x08, flat)   # RPL does not matter
    assert gdt.reversible(0, None) and gdt.reversible(3, None)
    assert not gdt.reversible(0x18, D.data(0, 0xFFF, present=False))
    assert not gdt.reversible(0x28, flat)                               # beyond the GDT limit
    assert not gdt.reversible(0x0C, flat)                               # LDT, LDTR null
    assert S.is_reversible(flat.encode(), flat)                         # bytes or Descriptor
    assert gdt.all_reversible([(0x0B, flat), (0, None), (0x10, D.data32(0x1000, 0xFFF))])
    assert not gdt.all_reversible([(0x0B, flat), (0x10, flat)])


@settings(max_examples=300, deadline=None)
@given(segment_st, st.integers(0, 7), st.integers(0, 7))
def test_reversible_exactly_when_only_a_or_g_encoding_differ(raw, byte, bit):
    """Flip one bit of a present segment entry: reversible iff the hidden part is unchanged."""
    cached = Descriptor.decode(raw)
    flipped = bytearray(raw)
    flipped[byte] ^= 1 << bit
    entry = Descriptor.decode(bytes(flipped))
    same = (entry.base, entry.limit, entry.access | 1, entry.flags & 7) == \
           (cached.base, cached.limit, cached.access | 1, cached.flags & 7)
    assert S.is_reversible(cached, bytes(flipped)) == (same and entry.present and entry.is_segment)
