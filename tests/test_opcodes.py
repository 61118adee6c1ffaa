"""Integrity of the opcode table (bt/opcodes.py) and pins of its classes.

The pins decode real encodings through bt.decoder, so they hold the whole
path (table -> flattened C arrays -> Insn) to the translator's contract: a
future edit that makes, say, LGDT IDENT or drops STACK from IRET fails here.
"""

import pytest

from bt import opcodes
from bt.decoder import decode, entry_count, entry_info
from bt.opcodes import Attr, Flow, Imm, Kind, Priv, Sens, Status

LEAVES = list(opcodes.entries())


def test_every_opcode_byte_is_accounted_for():
    for table in (opcodes.ONE_BYTE, opcodes.TWO_BYTE):
        assert sorted(table) == list(range(256))
        for b, e in table.items():
            assert e.kind in Kind
            if e.kind in (Kind.GROUP, Kind.X87):
                assert len(e.sub) == 16, hex(b)
            else:
                assert e.sub is None, hex(b)
    # Exactly the legacy prefixes are prefixes; 0F is the only escape.
    assert {b for b, e in opcodes.ONE_BYTE.items()
            if e.kind == Kind.PREFIX} == set(opcodes.PREFIXES)
    assert [b for b, e in opcodes.ONE_BYTE.items()
            if e.kind == Kind.ESCAPE] == [0x0F]
    assert {b for b, e in opcodes.TWO_BYTE.items()
            if e.kind == Kind.ESCAPE3} == {0x38, 0x3A}


def test_every_leaf_has_status_flow_and_class():
    for m, b, slot, e in LEAVES:
        where = (m, hex(b), slot)
        assert e.kind == Kind.INSN, where
        assert e.status in (Status.OK, Status.INVALID, Status.UNSUPPORTED)
        assert e.flow in Flow and e.sens in Sens and e.priv in Priv, where
        assert e.imm in Imm, where
        if e.status != Status.OK:
            # #UD and unmodelled slots make no translator claims.
            assert (e.flow, e.sens, e.priv) == (Flow.NONE, Sens.IDENT,
                                                Priv.NONE), where


def test_operand_codes_agree_with_modrm_and_immediate():
    for m, b, slot, e in LEAVES:
        if e.status != Status.OK:
            continue
        where = (m, hex(b), slot, e.mnemonic)
        uses_modrm = any(o[0] in "EGMSCDRF" and o not in
                         ("CS", "DS", "SS", "ES", "FS", "GS", "DX", "CL")
                         for o in e.operands)
        # Group members inherit the group's ModRM byte.
        assert e.modrm == (uses_modrm or slot is not None) or slot is not None
        if slot is None:
            assert e.modrm == uses_modrm, where
        if "Jb" in e.operands or "Jz" in e.operands:
            assert e.flow in (Flow.JCC, Flow.JMP, Flow.CALL, Flow.LOOP,
                              Flow.JCXZ), where
        if e.flow in (Flow.JCC, Flow.JMP, Flow.CALL, Flow.LOOP, Flow.JCXZ):
            assert e.imm in (Imm.JB, Imm.JZ), where
        if e.flow in (Flow.JMPF, Flow.CALLF):
            assert e.imm == Imm.AP, where
        if e.attrs & Attr.LOCK:
            # Only read-modify-write instructions with an r/m destination.
            assert e.operands[0][0] in "EM", where
        if e.attrs & Attr.MEM_ONLY:
            assert any(o[0] == "M" for o in e.operands), where
        if e.attrs & Attr.STRING:
            assert any(o[0] in "XY" for o in e.operands), where
            assert e.attrs & (Attr.REP | Attr.REPZ), where


def test_flow_and_far_classes_agree():
    far = {Flow.JMPF, Flow.JMPF_IND, Flow.CALLF, Flow.CALLF_IND, Flow.RETF}
    for m, b, slot, e in LEAVES:
        if e.status != Status.OK:
            continue
        assert (e.flow in far) == (e.sens == Sens.FAR_FLOW), (hex(b), e)
        if e.flow in (Flow.CALL, Flow.CALL_IND, Flow.CALLF, Flow.CALLF_IND,
                      Flow.RET, Flow.RETF, Flow.IRET, Flow.INT, Flow.INT3,
                      Flow.INTO):
            assert e.attrs & Attr.STACK, (hex(b), e)


def test_flattened_table_mirrors_opcodes():
    # The decoder's flat index space covers every slot of the Python table.
    assert entry_count() == 1 + 512 + sum(16 for t in (opcodes.ONE_BYTE,
                                                       opcodes.TWO_BYTE)
                                          for e in t.values()
                                          if e.sub is not None) + 2
    ins = decode(bytes.fromhex("0f0110"), 0, 32)
    assert entry_info(ins.entry_index).mnemonic == "lgdt"


# Pins: (mode, bytes) -> (mnemonic, sensitive class, priv, flow, stack?)
PINS = {
    # segment loads
    "8ed8": ("mov", Sens.SEG_LOAD, Priv.NONE, Flow.NONE, False),
    "1f": ("pop", Sens.SEG_LOAD, Priv.NONE, Flow.NONE, True),
    "07": ("pop", Sens.SEG_LOAD, Priv.NONE, Flow.NONE, True),
    "17": ("pop", Sens.SEG_LOAD, Priv.NONE, Flow.NONE, True),
    "0fa1": ("pop", Sens.SEG_LOAD, Priv.NONE, Flow.NONE, True),
    "0fa9": ("pop", Sens.SEG_LOAD, Priv.NONE, Flow.NONE, True),
    "c400": ("les", Sens.SEG_LOAD, Priv.NONE, Flow.NONE, False),
    "c500": ("lds", Sens.SEG_LOAD, Priv.NONE, Flow.NONE, False),
    "0fb200": ("lss", Sens.SEG_LOAD, Priv.NONE, Flow.NONE, False),
    "0fb400": ("lfs", Sens.SEG_LOAD, Priv.NONE, Flow.NONE, False),
    "0fb500": ("lgs", Sens.SEG_LOAD, Priv.NONE, Flow.NONE, False),
    # segment reads
    "8cc8": ("mov", Sens.SEG_READ, Priv.NONE, Flow.NONE, False),
    "0e": ("push", Sens.SEG_READ, Priv.NONE, Flow.NONE, True),
    "16": ("push", Sens.SEG_READ, Priv.NONE, Flow.NONE, True),
    "0fa0": ("push", Sens.SEG_READ, Priv.NONE, Flow.NONE, True),
    # flags
    "9c": ("pushfd", Sens.FLAGS, Priv.IOPL, Flow.NONE, True),
    "9d": ("popfd", Sens.FLAGS, Priv.IOPL, Flow.NONE, True),
    "fa": ("cli", Sens.FLAGS, Priv.IOPL, Flow.NONE, False),
    "fb": ("sti", Sens.FLAGS, Priv.IOPL, Flow.NONE, False),
    "9e": ("sahf", Sens.IDENT, Priv.NONE, Flow.NONE, False),
    "9f": ("lahf", Sens.IDENT, Priv.NONE, Flow.NONE, False),
    # I/O
    "e460": ("in", Sens.IO, Priv.IOPL, Flow.NONE, False),
    "e780": ("out", Sens.IO, Priv.IOPL, Flow.NONE, False),
    "ec": ("in", Sens.IO, Priv.IOPL, Flow.NONE, False),
    "ef": ("out", Sens.IO, Priv.IOPL, Flow.NONE, False),
    "6c": ("insb", Sens.IO, Priv.IOPL, Flow.NONE, False),
    "6d": ("insd", Sens.IO, Priv.IOPL, Flow.NONE, False),
    "6e": ("outsb", Sens.IO, Priv.IOPL, Flow.NONE, False),
    "6f": ("outsd", Sens.IO, Priv.IOPL, Flow.NONE, False),
    # system registers
    "0f0100": ("sgdt", Sens.SYSREG, Priv.NONE, Flow.NONE, False),
    "0f0108": ("sidt", Sens.SYSREG, Priv.NONE, Flow.NONE, False),
    "0f0110": ("lgdt", Sens.SYSREG, Priv.CPL0, Flow.NONE, False),
    "0f0118": ("lidt", Sens.SYSREG, Priv.CPL0, Flow.NONE, False),
    "0f01e0": ("smsw", Sens.SYSREG, Priv.NONE, Flow.NONE, False),
    "0f01f0": ("lmsw", Sens.SYSREG, Priv.CPL0, Flow.NONE, False),
    "0f00c0": ("sldt", Sens.SYSREG, Priv.NONE, Flow.NONE, False),
    "0f00c8": ("str", Sens.SYSREG, Priv.NONE, Flow.NONE, False),
    "0f00d0": ("lldt", Sens.SYSREG, Priv.CPL0, Flow.NONE, False),
    "0f00d8": ("ltr", Sens.SYSREG, Priv.CPL0, Flow.NONE, False),
    "0f00e0": ("verr", Sens.SYSREG, Priv.NONE, Flow.NONE, False),
    "0f00e8": ("verw", Sens.SYSREG, Priv.NONE, Flow.NONE, False),
    "0f02c0": ("lar", Sens.SYSREG, Priv.NONE, Flow.NONE, False),
    "0f03c0": ("lsl", Sens.SYSREG, Priv.NONE, Flow.NONE, False),
    "0f06": ("clts", Sens.SYSREG, Priv.CPL0, Flow.NONE, False),
    "0f20c0": ("mov", Sens.SYSREG, Priv.CPL0, Flow.NONE, False),
    "0f22d8": ("mov", Sens.SYSREG, Priv.CPL0, Flow.NONE, False),
    "0f21c0": ("mov", Sens.SYSREG, Priv.CPL0, Flow.NONE, False),
    "0f23f8": ("mov", Sens.SYSREG, Priv.CPL0, Flow.NONE, False),
    # caches and TLB
    "0f08": ("invd", Sens.CACHE_TLB, Priv.CPL0, Flow.NONE, False),
    "0f09": ("wbinvd", Sens.CACHE_TLB, Priv.CPL0, Flow.NONE, False),
    "0f0138": ("invlpg", Sens.CACHE_TLB, Priv.CPL0, Flow.NONE, False),
    # MSRs, CPUID, time, counters, fast system calls
    "0f30": ("wrmsr", Sens.MSR, Priv.CPL0, Flow.NONE, False),
    "0f32": ("rdmsr", Sens.MSR, Priv.CPL0, Flow.NONE, False),
    "0fa2": ("cpuid", Sens.CPUID, Priv.NONE, Flow.NONE, False),
    "0f31": ("rdtsc", Sens.RDTSC, Priv.CR4, Flow.NONE, False),
    "0f33": ("rdpmc", Sens.RDPMC, Priv.CR4, Flow.NONE, False),
    "0f34": ("sysenter", Sens.SYSCALL, Priv.NONE, Flow.SYS, False),
    "0f35": ("sysexit", Sens.SYSCALL, Priv.CPL0, Flow.SYS, False),
    # halt, interrupts
    "f4": ("hlt", Sens.HLT, Priv.CPL0, Flow.HLT, False),
    "cd21": ("int", Sens.INT, Priv.IOPL, Flow.INT, True),
    "cc": ("int3", Sens.INT, Priv.NONE, Flow.INT3, True),
    "ce": ("into", Sens.INT, Priv.NONE, Flow.INTO, True),
    "f1": ("int1", Sens.INT, Priv.NONE, Flow.INT, True),
    "cf": ("iretd", Sens.IRET, Priv.IOPL, Flow.IRET, True),
    # far control flow
    "ea000000000800": ("jmpf", Sens.FAR_FLOW, Priv.NONE, Flow.JMPF, False),
    "9a000000000800": ("callf", Sens.FAR_FLOW, Priv.NONE, Flow.CALLF, True),
    "ff28": ("jmpf", Sens.FAR_FLOW, Priv.NONE, Flow.JMPF_IND, False),
    "ff18": ("callf", Sens.FAR_FLOW, Priv.NONE, Flow.CALLF_IND, True),
    "cb": ("retf", Sens.FAR_FLOW, Priv.NONE, Flow.RETF, True),
    "ca0400": ("retf", Sens.FAR_FLOW, Priv.NONE, Flow.RETF, True),
    # near control flow and harmless stack users (IDENT)
    "c3": ("ret", Sens.IDENT, Priv.NONE, Flow.RET, True),
    "c20400": ("ret", Sens.IDENT, Priv.NONE, Flow.RET, True),
    "ffd0": ("call", Sens.IDENT, Priv.NONE, Flow.CALL_IND, True),
    "ffe0": ("jmp", Sens.IDENT, Priv.NONE, Flow.JMP_IND, False),
    "e800000000": ("call", Sens.IDENT, Priv.NONE, Flow.CALL, True),
    "7400": ("je", Sens.IDENT, Priv.NONE, Flow.JCC, False),
    "0f8500000000": ("jne", Sens.IDENT, Priv.NONE, Flow.JCC, False),
    "e200": ("loop", Sens.IDENT, Priv.NONE, Flow.LOOP, False),
    "e300": ("jecxz", Sens.IDENT, Priv.NONE, Flow.JCXZ, False),
    "0f0b": ("ud2", Sens.IDENT, Priv.NONE, Flow.UD, False),
    "0faa": ("rsm", Sens.IDENT, Priv.NONE, Flow.UD, False),
    "60": ("pushad", Sens.IDENT, Priv.NONE, Flow.NONE, True),
    "61": ("popad", Sens.IDENT, Priv.NONE, Flow.NONE, True),
    "c8080000": ("enter", Sens.IDENT, Priv.NONE, Flow.NONE, True),
    "c9": ("leave", Sens.IDENT, Priv.NONE, Flow.NONE, True),
    "50": ("push", Sens.IDENT, Priv.NONE, Flow.NONE, True),
    "8f00": ("pop", Sens.IDENT, Priv.NONE, Flow.NONE, True),
    "0f4fc1": ("cmovg", Sens.IDENT, Priv.NONE, Flow.NONE, False),
    "0fc8": ("bswap", Sens.IDENT, Priv.NONE, Flow.NONE, False),
    "0fb10b": ("cmpxchg", Sens.IDENT, Priv.NONE, Flow.NONE, False),
    "0fc10b": ("xadd", Sens.IDENT, Priv.NONE, Flow.NONE, False),
    "0fc70b": ("cmpxchg8b", Sens.IDENT, Priv.NONE, Flow.NONE, False),
    "0fa4c001": ("shld", Sens.IDENT, Priv.NONE, Flow.NONE, False),
    "0fbae001": ("bt", Sens.IDENT, Priv.NONE, Flow.NONE, False),
    "0f94c0": ("sete", Sens.IDENT, Priv.NONE, Flow.NONE, False),
    "0fbfc0": ("movsx", Sens.IDENT, Priv.NONE, Flow.NONE, False),
    "6300": ("arpl", Sens.IDENT, Priv.NONE, Flow.NONE, False),
    "d9e8": ("fld1", Sens.IDENT, Priv.NONE, Flow.NONE, False),
}


@pytest.mark.parametrize("hexcode", sorted(PINS))
def test_pinned_classes(hexcode):
    name, sens, priv, flow, stack = PINS[hexcode]
    ins = decode(bytes.fromhex(hexcode), 0, 32)
    assert ins.ok, ins
    assert ins.length == len(bytes.fromhex(hexcode))
    got = (ins.mnemonic, ins.sensitive, ins.priv, ins.flow, ins.uses_stack)
    assert got == (name, sens, priv, flow, stack)
    assert ins.privileged == (priv == Priv.CPL0)
    assert ins.ends_unit == (flow != Flow.NONE)


def test_no_unpinned_sensitive_instruction():
    """Every non-IDENT or privileged slot of the table matches a pin above
    (same table mnemonic, class and privilege), so adding a sensitive
    instruction means deciding its class in a test."""
    pinned = set()
    for hexcode in PINS:
        e = decode(bytes.fromhex(hexcode), 0, 32).entry
        pinned.add((e.mnemonic, e.sens, e.priv))
    for m, b, slot, e in LEAVES:
        if e.status != Status.OK:
            continue
        if e.sens == Sens.IDENT and e.priv == Priv.NONE:
            continue
        assert (e.mnemonic, e.sens, e.priv) in pinned, \
            (m, hex(b), slot, e.mnemonic, e.sens, e.priv)


def test_string_and_lock_attributes():
    for hexcode, attrs in (("a4", Attr.STRING | Attr.REP | Attr.STR_SRC
                            | Attr.STR_DST),
                           ("a6", Attr.STRING | Attr.REPZ),
                           ("ae", Attr.STRING | Attr.REPZ | Attr.STR_DST),
                           ("ac", Attr.STRING | Attr.REP | Attr.STR_SRC),
                           ("6d", Attr.STRING | Attr.REP | Attr.STR_DST)):
        ins = decode(bytes.fromhex(hexcode), 0, 32)
        assert ins.attrs & attrs == attrs, hexcode
    for hexcode in ("0000", "0fb000", "0fc000", "8600", "fe00", "f610",
                    "0fab00", "8300ff"):
        assert decode(bytes.fromhex(hexcode), 0, 32).lockable, hexcode
    for hexcode in ("3800", "8b00", "0fa300", "0fbc00", "f600ff"):
        assert not decode(bytes.fromhex(hexcode), 0, 32).lockable, hexcode
