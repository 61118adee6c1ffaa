"""Every instruction the decoder knows, translated as protected-mode code at
guest CPL 0 and CPL 3: the table of what becomes of it (IDENT copy, inline
translation, or a callout of which kind), and the property that matters most:
no privileged or sensitive instruction reaches the real CPU as a plain copy
unless running it there is exactly what the guest's CPU would do (docs/protected-mode.md)."""

from __future__ import annotations

import collections

import pytest

from bt import abi
from bt.decoder import decode
from bt.opcodes import Flow, Priv, Sens, Status, entries
from bt.protmode import CodeContext
from monitor import descriptors as D
from monitor.machine import Machine
from monitor.vcpu import CS

CODE = 0x10000


def _encodings():
    """One 32-bit encoding per decodable instruction slot."""
    out = []
    for m, opcode, slot, entry in entries():
        if entry.status != Status.OK:
            continue
        head = (b"\x0f" if m == 2 else b"") + bytes([opcode])
        if slot is None:
            modrms = [b"\x06"] if entry.modrm else [b""]          # [esi]
        elif slot < 8:
            modrms = [bytes([(slot << 3) | 6])]
        else:
            modrms = [bytes([0xC0 | ((slot - 8) << 3)])]
        for modrm in modrms:
            raw = head + modrm + bytes(8)
            insn = decode(raw[:15], CODE, 32)
            if insn.ok:
                out.append((raw[:insn.length], insn))
    return out


ENCODINGS = _encodings()


def _machine():
    m = Machine(memory_mb=2)
    m.vcpu.cr0 = 0x11
    m.set_segment(CS, 0x08, D.code32())
    return m


def translation(m, raw: bytes, cpl: int):
    """('ident' | 'inline' | callout kind name) of the first instruction at CODE."""
    m.memory.write(CODE, raw + b"\xf4")
    m.flush_translations()
    m.vcpu.cpl = cpl
    ctx = CodeContext(0x08 | cpl, 0, True, cpl)
    unit = m.pm_translator.translate(ctx, CODE)
    start = unit.insn_map[0][0]
    end = unit.insn_map[1][0] if len(unit.insn_map) > 1 else unit.tc_end
    code = bytes(m.tc.read(start, end - start))
    if code[:1] == bytes([abi.CALLOUT_OPCODE]):
        rec = m.callouts[int.from_bytes(code[1:5], "little")]
        return rec.kind.name
    if code[:len(raw)] == raw:
        return "ident"
    return "inline"


@pytest.fixture(scope="module")
def table():
    m = _machine()
    rows = {}
    for raw, insn in ENCODINGS:
        rows[raw] = (insn, translation(m, raw, 0), translation(m, raw, 3))
    return rows


# Instructions that are IDENT at guest CPL 0 on purpose: the real CPU runs the
# TC at CPL 0 too, so they do exactly what the guest's CPU would do.
IDENT_AT_CPL0 = {
    Sens.FLAGS: "cli/sti/pushf/popf: the guest's IF and IOPL are the real ones in BT",
    Sens.IO: "in/out: the real CPU's I/O hook dispatches to the virtual devices",
    Sens.RDTSC: "rdtsc: Unicorn's time-stamp counter (CR4.TSD is not virtualized)",
}


def test_every_decodable_instruction_is_covered(table):
    assert len(table) > 500
    kinds = collections.Counter(k0 for _, k0, _ in table.values())
    assert kinds["ident"] > 300 and kinds["SEG_LOAD"] > 0 and kinds["SYSREG"] > 10


def test_no_privileged_instruction_runs_as_a_copy(table):
    leaks = []
    for raw, (insn, at0, at3) in table.items():
        sensitive = insn.sensitive != Sens.IDENT or insn.flow not in (Flow.NONE,)
        if not sensitive:
            continue
        for cpl, kind in ((0, at0), (3, at3)):
            if kind != "ident":
                continue
            if cpl == 0 and insn.sensitive in IDENT_AT_CPL0:
                continue
            if insn.sensitive == Sens.RDTSC:
                continue
            leaks.append((raw.hex(), insn.mnemonic, cpl, Sens(insn.sensitive).name, Flow(insn.flow).name))
    assert leaks == []


def test_privileged_instructions_are_callouts_at_every_cpl(table):
    for raw, (insn, at0, at3) in table.items():
        if insn.priv == Priv.CPL0:
            assert at0 not in ("ident",) and at3 not in ("ident", "inline"), (insn.mnemonic, at0, at3)


@pytest.mark.parametrize("hexcode, cpl0, cpl3", [
    ("fa", "ident", "FLAGS"),              # cli
    ("9c", "ident", "FLAGS"),              # pushf
    ("e4 80", "ident", "IO"),              # in al, 0x80
    ("0f 01 16", "SYSREG", "SYSREG"),      # lgdt [esi]
    ("0f 00 d8", "SYSREG", "SYSREG"),      # ltr ax
    ("0f 22 d8", "SYSREG", "SYSREG"),      # mov cr3, eax
    ("0f 01 3e", "SYSREG", "SYSREG"),      # invlpg [esi]
    ("0f 30", "MSR", "MSR"),               # wrmsr
    ("0f 34", "SYS", "SYS"),               # sysenter
    ("0f 35", "SYS", "SYS"),               # sysexit
    ("f4", "HLT", "HLT"),                  # hlt
    ("cd 80", "INT", "INT"),               # int 0x80
    ("cf", "IRET", "IRET"),                # iret
    ("8e d8", "SEG_LOAD", "SEG_LOAD"),     # mov ds, ax
    ("8c d8", "inline", "inline"),         # mov eax, ds (the virtual selector)
    ("c3", "inline", "inline"),            # ret: in-TC lookup
    ("ff d0", "inline", "inline"),         # call eax
    ("c2 04 00", "RET", "RET"),            # ret 4: SP or ESP depends on SS
    ("ea 00 00 00 00 08 00", "JMPF", "JMPF"),
    ("0f a2", "CPUID", "CPUID"),
    ("0f 0b", "UD", "UD"),
    ("0f 01 06", "SYSREG", "SYSREG"),      # sgdt [esi]: the guest's GDTR
])
def test_pinned_translations(hexcode, cpl0, cpl3):
    m = _machine()
    raw = bytes.fromhex(hexcode.replace(" ", ""))
    assert (translation(m, raw, 0), translation(m, raw, 3)) == (cpl0, cpl3)
