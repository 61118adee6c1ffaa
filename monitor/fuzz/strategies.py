"""Hypothesis strategies for real-mode translator-versus-interpreter fuzzing.

Importable by users (``from monitor.fuzz.strategies import real_mode_cases``).
Instructions come from two sources:

* the opcode table itself (``bt.opcodes.entries()``): every defined P6
  integer instruction the translator copies (class IDENT, no control flow)
  with its ModRM forms (all 16-bit addressing forms, register forms), the
  group members, immediates by the table's immediate kind, 66 and segment-
  override prefixes and LOCK where the table allows it.  Every generated
  encoding is checked with the decoder (status OK, length as built);
* small builders for the classes whose meaning depends on the surrounding
  block or state: branches whose targets stay in the block, indirect and far
  control flow with computed targets, string instructions with ``rep`` and a
  bounded count, flags, segment loads and reads, system registers, software
  interrupts, I/O, self-modifying stores, invalid encodings.

Shrinking works on the item list (dropping items, simplifying each) and on
the state; placeholders keep branch targets valid while items disappear.
"""

from __future__ import annotations

import struct

from hypothesis import strategies as st

from bt.decoder import decode
from bt.opcodes import Attr, Flow, Imm, Kind, Sens, Status, entries
from monitor.fuzz.case import (AC, AF, CF, DF, IF, IOPL, NT, OF, PF, RESET_CR0, SF, TF, ZF,
                               Item, make_case)

MAX_ITEMS = 16
X87 = range(0xD8, 0xE0)
SEG_PREFIX = (None, 0x26, 0x2E, 0x36, 0x3E, 0x64, 0x65)


def _alu_entries():
    out = []
    for m, b, slot, e in entries():
        if m == 1 and b in X87:
            continue
        if e.status != Status.OK or e.kind != Kind.INSN or e.flow != Flow.NONE or e.sens != Sens.IDENT:
            continue
        if e.attrs & Attr.STRING:
            continue                                   # the string builder does these with a bounded count
        out.append((m, b, slot, e))
    return tuple(out)


ALU_ENTRIES = _alu_entries()

# Sensitive / special classes the campaign reports coverage of (issue 6 list,
# real-mode meaning).  Each generated item carries one of these names.
SENSITIVE_NAMES = (
    "cli", "sti", "pushf", "popf", "popf-stack", "iret", "int", "int3", "into",
    "mov-sreg", "pop-sreg", "push-sreg", "mov-from-sreg", "lds", "les", "lfs", "lgs", "lss",
    "jmpf", "callf", "retf", "lgdt", "lidt", "sgdt", "sidt", "sldt", "str", "smsw", "lmsw",
    "lsl", "lar", "verr", "verw", "in", "out", "mov-to-cr", "mov-from-cr", "sysenter", "sysexit", "smc",
)

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
interesting32 = st.sampled_from([0, 1, 2, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x10000,
                                 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF])
reg32 = st.one_of(u32, interesting32)


def _w(v: int) -> bytes:
    return struct.pack("<H", v & 0xFFFF)


def _d(v: int) -> bytes:
    return struct.pack("<I", v & 0xFFFFFFFF)


@st.composite
def modrm_mem(draw, reg: int):
    """A 16-bit memory ModRM (all forms): (bytes of modrm+disp)."""
    mod = draw(st.integers(0, 2))
    rm = draw(st.integers(0, 7))
    out = bytes([(mod << 6) | (reg << 3) | rm])
    if mod == 0 and rm == 6:
        out += _w(draw(u16))
    elif mod == 1:
        out += bytes([draw(u8)])
    elif mod == 2:
        out += _w(draw(u16))
    return out


def _seg(draw, p=True) -> bytes:
    s = draw(st.sampled_from(SEG_PREFIX)) if p else None
    return b"" if s is None else bytes([s])


# --------------------------------------------------------------------------- table-driven

@st.composite
def table_insn(draw):
    """One IDENT instruction straight from the opcode table."""
    m, b, slot, e = draw(st.sampled_from(ALU_ENTRIES))
    opsize32 = draw(st.booleans()) if draw(st.integers(0, 4)) == 0 else False
    prefix = b"\x66" if opsize32 else b""
    opcode = bytes([b]) if m == 1 else bytes([0x0F, b])
    body = b""
    memory = False
    if e.modrm:
        if slot is not None:
            reg, mod_reg = slot & 7, slot >= 8
        else:
            regs = [r for r in range(8) if e.reg_ok >> r & 1]
            reg = draw(st.sampled_from(regs))
            mod_reg = True if e.attrs & Attr.REG_ONLY else (False if e.attrs & Attr.MEM_ONLY else draw(st.booleans()))
        if mod_reg:
            body = bytes([0xC0 | (reg << 3) | draw(st.integers(0, 7))])
        else:
            body = draw(modrm_mem(reg))
            memory = True
    if e.imm == Imm.MOFFS:
        memory = True
    if memory or e.attrs & Attr.XLAT:
        prefix += _seg(draw)
    if memory and e.attrs & Attr.LOCK and draw(st.integers(0, 5)) == 0:
        prefix = b"\xf0" + prefix
    imm = b""
    if e.imm == Imm.IB:
        imm = bytes([draw(u8)])
    elif e.imm == Imm.IW:
        imm = _w(draw(u16))
    elif e.imm == Imm.IZ:
        imm = _d(draw(u32)) if opsize32 else _w(draw(u16))
    elif e.imm == Imm.MOFFS:
        imm = _w(draw(u16))
    elif e.imm == Imm.IW_IB:
        imm = _w(draw(u16)) + bytes([draw(st.integers(0, 4))])
    code = prefix + opcode + body + imm
    insn = decode(code, 0, 16)
    if not insn.ok or insn.length != len(code):
        # (a combination the table forbids, e.g. LOCK on a register form): a NOP instead
        return Item("alu", "nop", (b"\x90",))
    imm_at = None
    if e.imm in (Imm.IB, Imm.IW, Imm.IZ) and imm:
        imm_at = len(code) - len(imm)
    cls = "mem" if memory else "alu"
    return Item(cls, insn.mnemonic, (code,), imm_at=imm_at)


# --------------------------------------------------------------------------- builders

def _flags_value(v: int, wide: bool) -> int:
    v &= ~TF                                           # single-step is not generated (docs/fuzzing.md)
    if wide:
        v &= 0x003F7FFF & ~0x30000                     # no VM, no RF
    return v & (0xFFFFFFFF if wide else 0xFFFF)


FAULTING_MEM = ("bound", "div", "idiv")     # memory-operand instructions that fault on data


def has_cs_prefix(item: Item) -> bool:
    code = item.parts[0] if item.parts and isinstance(item.parts[0], (bytes, bytearray)) else b""
    for b in code:
        if b == 0x2E:
            return True
        if b not in (0x26, 0x36, 0x3E, 0x64, 0x65, 0x66, 0x67, 0xF0, 0xF2, 0xF3):
            return False
    return False


def without_ac(item: Item) -> Item:
    """The item with EFLAGS.AC cleared in any 32-bit flags image it pops."""
    if item.name != "popf" or not item.parts or not bytes(item.parts[0]).startswith(b"\x66\x68"):
        return item
    v = struct.unpack_from("<I", item.parts[0], 2)[0] & ~AC
    return Item(item.cls, item.name, (b"\x66\x68" + _d(v),) + tuple(item.parts[1:]), insns=item.insns)


@st.composite
def string_item(draw):
    op = draw(st.sampled_from([0xA4, 0xA5, 0xA6, 0xA7, 0xAA, 0xAB, 0xAC, 0xAD]))
    rep = draw(st.sampled_from([b"", b"\xf3", b"\xf2"] if op in (0xA6, 0xA7, 0xAE, 0xAF) else [b"", b"\xf3"]))
    pre = (b"\x66" if op & 1 and draw(st.booleans()) else b"")
    seg = _seg(draw) if op in (0xA4, 0xA5, 0xA6, 0xA7, 0xAC, 0xAD) else b""
    count = draw(st.integers(0, 40))
    names = {0xA4: "movs", 0xA5: "movs", 0xA6: "cmps", 0xA7: "cmps", 0xAA: "stos", 0xAB: "stos",
             0xAC: "lods", 0xAD: "lods"}
    return Item("string", ("rep " if rep else "") + names[op], (b"\xb9" + _w(count), rep + pre + seg + bytes([op])),
                insns=2, imm_at=1)


@st.composite
def branch_item(draw, bits: int = 16):
    """Direct branches that stay in the block (`bits`: the code's operand size)."""
    near, cx = f"rel{bits}", "jcxz" if bits == 16 else "jecxz"
    kind = draw(st.sampled_from(["jcc8", "jmp8", f"jcc{bits}", f"jmp{bits}", "loop", "loope", "loopne", cx, "call"]))
    skip = draw(st.integers(0, 4))
    cc = draw(st.integers(0, 15))
    parts = {
        "jcc8": (bytes([0x70 | cc]), ("rel8", skip)),
        "jmp8": (b"\xeb", ("rel8", skip)),
        f"jcc{bits}": (bytes([0x0F, 0x80 | cc]), (near, skip)),
        f"jmp{bits}": (b"\xe9", (near, skip)),
        "loop": (b"\xe2", ("rel8", skip)),
        "loope": (b"\xe1", ("rel8", skip)),
        "loopne": (b"\xe0", ("rel8", skip)),
        cx: (b"\xe3", ("rel8", skip)),
        "call": (b"\xe8", (near, skip)),
    }[kind]
    return Item("branch", kind, parts)


@st.composite
def indirect_item(draw):
    kind = draw(st.sampled_from(["jmp-reg", "call-reg", "jmp-mem", "call-mem", "ret", "ret-imm"]))
    skip = draw(st.integers(0, 4))
    r = draw(st.sampled_from([0, 1, 2, 3, 5, 6, 7]))               # not SP
    if kind in ("jmp-reg", "call-reg"):
        op = 0xE0 if kind == "jmp-reg" else 0xD0
        return Item("indirect", kind, (bytes([0xB8 + r]), ("ip16", skip), bytes([0xFF, op | r])), insns=2)
    if kind in ("jmp-mem", "call-mem"):
        # mov word cs:[X], target ; jmp/call word cs:[X] ; X: dw 0
        modrm = 0x26 if kind == "jmp-mem" else 0x16
        return Item("indirect", kind, (b"\x2e\xc7\x06", ("label16", 0), ("ip16", skip),
                                       b"\x2e\xff" + bytes([modrm]), ("label16", 0), ("mark",), b"\0\0"), insns=2)
    if kind == "ret":
        return Item("indirect", kind, (b"\x68", ("ip16", skip), b"\xc3"), insns=2)
    return Item("indirect", kind, (b"\x68", ("ip16", skip), b"\xc2" + _w(draw(st.integers(0, 8)) * 2)), insns=2)


@st.composite
def far_item(draw):
    kind = draw(st.sampled_from(["jmpf", "callf", "retf", "retf-imm", "iret", "iret-pushf", "jmpf-mem", "callf-mem"]))
    delta = draw(st.integers(-0x80, 0x80))
    if kind == "jmpf":
        parts, n, name = (b"\xea", ("far_ip16",), ("far_cs16",)), 1, "jmpf"
    elif kind == "callf":
        parts, n, name = (b"\x9a", ("far_ip16",), ("far_cs16",)), 1, "callf"
    elif kind == "retf":
        parts, n, name = (b"\x68", ("far_cs16",), b"\x68", ("far_ip16",), b"\xcb"), 3, "retf"
    elif kind == "retf-imm":
        parts, n, name = (b"\x68", ("far_cs16",), b"\x68", ("far_ip16",), b"\xca" + _w(draw(st.integers(0, 4)) * 2)), 3, "retf"
    elif kind == "iret":
        fl = _flags_value(draw(u16), False)
        parts, n, name = (b"\x68" + _w(fl), b"\x68", ("far_cs16",), b"\x68", ("far_ip16",), b"\xcf"), 4, "iret"
    elif kind == "iret-pushf":
        parts, n, name = (b"\x9c\x68", ("far_cs16",), b"\x68", ("far_ip16",), b"\xcf"), 4, "iret"
    else:
        modrm = 0x2E if kind == "jmpf-mem" else 0x1E
        parts = (b"\x2e\xc7\x06", ("label16", 0), ("far_ip16",),
                 b"\x2e\xc7\x06", ("label16", 1), ("far_cs16",),
                 b"\x2e\xff" + bytes([modrm]), ("label16", 0), ("mark",), b"\0\0", ("mark",), b"\0\0")
        n, name = 3, "jmpf" if kind == "jmpf-mem" else "callf"
    return Item("far", name, parts, insns=n, far_delta=delta)


@st.composite
def flags_item(draw):
    kind = draw(st.sampled_from(["cli", "sti", "pushf", "popf", "pushfd", "popfd", "push-popf", "push-popfd",
                                 "clc", "stc", "cmc", "cld", "std", "sahf", "lahf"]))
    simple = {"cli": b"\xfa", "sti": b"\xfb", "pushf": b"\x9c", "popf": b"\x9d", "pushfd": b"\x66\x9c",
              "popfd": b"\x66\x9d", "clc": b"\xf8", "stc": b"\xf9", "cmc": b"\xf5", "cld": b"\xfc",
              "std": b"\xfd", "sahf": b"\x9e", "lahf": b"\x9f"}
    if kind in simple:
        # a bare popf pops whatever the stack holds (TF included): "popf-stack"
        name = {"pushfd": "pushf", "popfd": "popf-stack", "popf": "popf-stack"}.get(kind, kind)
        return Item("flags", name, (simple[kind],))
    if kind == "push-popf":
        return Item("flags", "popf", (b"\x68" + _w(_flags_value(draw(u16), False)), b"\x9d"), insns=2)
    return Item("flags", "popf", (b"\x66\x68" + _d(_flags_value(draw(u32), True)), b"\x66\x9d"), insns=2)


SREG_LOADABLE = (0, 2, 3, 4, 5)


@st.composite
def segload_item(draw):
    kind = draw(st.sampled_from(["mov-reg", "mov-mem", "pop", "lds", "les", "lfs", "lgs", "lss"]))
    s = draw(st.sampled_from(SREG_LOADABLE))
    if kind == "mov-reg":
        r = draw(st.integers(0, 7))
        pre = b""
        if draw(st.booleans()) and r != 4:
            pre = bytes([0xB8 + r]) + _w(draw(u16))
        parts = (pre, bytes([0x8E, 0xC0 | (s << 3) | r]))
        return Item("segload", "mov-sreg", parts, insns=2 if pre else 1, imm_at=1 if pre else None)
    if kind == "mov-mem":
        return Item("segload", "mov-sreg", (_seg(draw) + b"\x8e" + draw(modrm_mem(s)),))
    if kind == "pop":
        op = {0: b"\x07", 2: b"\x17", 3: b"\x1f", 4: b"\x0f\xa1", 5: b"\x0f\xa9"}[s]
        pre = b"\x68" + _w(draw(u16)) if draw(st.booleans()) else b""
        return Item("segload", "pop-sreg", (pre, op), insns=2 if pre else 1)
    op = {"lds": b"\xc5", "les": b"\xc4", "lss": b"\x0f\xb2", "lfs": b"\x0f\xb4", "lgs": b"\x0f\xb5"}[kind]
    r = draw(st.integers(0, 7))
    pre = b"\x66" if draw(st.integers(0, 3)) == 0 else b""
    return Item("segload", kind, (pre + _seg(draw) + op + draw(modrm_mem(r)),))


@st.composite
def segread_item(draw):
    kind = draw(st.sampled_from(["mov-reg", "mov-mem", "push"]))
    s = draw(st.integers(0, 5))
    if kind == "mov-reg":
        pre = b"\x66" if draw(st.integers(0, 3)) == 0 else b""
        return Item("segread", "mov-from-sreg", (pre + bytes([0x8C, 0xC0 | (s << 3) | draw(st.integers(0, 7))]),))
    if kind == "mov-mem":
        return Item("segread", "mov-from-sreg", (_seg(draw) + b"\x8c" + draw(modrm_mem(s)),))
    op = {0: b"\x06", 1: b"\x0e", 2: b"\x16", 3: b"\x1e", 4: b"\x0f\xa0", 5: b"\x0f\xa8"}[s]
    pre = b"\x66" if draw(st.integers(0, 3)) == 0 else b""
    return Item("segread", "push-sreg", (pre + op,))


CR0_BITS = 0x2 | 0x4 | 0x8 | 0x20 | 0x10000 | 0x40000       # MP EM TS NE WP AM


@st.composite
def sysreg_item(draw):
    kind = draw(st.sampled_from(["smsw", "lmsw", "sgdt", "sidt", "lgdt", "lidt", "mov-from-cr", "mov-to-cr",
                                 "clts", "sldt", "str", "lldt", "ltr", "verr", "verw", "lar", "lsl"]))
    if kind == "smsw":
        if draw(st.booleans()):
            return Item("sysreg", "smsw", (b"\x0f\x01" + bytes([0xE0 | draw(st.integers(0, 7))]),))
        return Item("sysreg", "smsw", (_seg(draw) + b"\x0f\x01" + draw(modrm_mem(4)),))
    if kind == "lmsw":
        r = draw(st.sampled_from([0, 1, 2, 3, 5, 6, 7]))
        value = draw(u16) & 0xE | (1 if draw(st.integers(0, 7)) == 0 else 0)
        return Item("sysreg", "lmsw", (bytes([0xB8 + r]) + _w(value), b"\x0f\x01" + bytes([0xF0 | r])), insns=2)
    if kind in ("sgdt", "sidt"):
        pre = b"\x66" if draw(st.booleans()) else b""
        return Item("sysreg", kind, (pre + _seg(draw) + b"\x0f\x01" + draw(modrm_mem(0 if kind == "sgdt" else 1)),))
    if kind in ("lgdt", "lidt"):
        disp = draw(u16) & 0xFFF0
        limit = draw(st.integers(0x3FF, 0xFFFF)) if kind == "lidt" else draw(u16)
        if kind == "lidt":
            base = draw(st.sampled_from([0, 0, 0x400, 0x1000])) if draw(st.booleans()) else draw(st.integers(0, 0xEFFFF))
        else:
            base = draw(u32)
        pre = b"\x66" if draw(st.booleans()) else b""
        stores = (b"\xc7\x06" + _w(disp) + _w(limit) + b"\xc7\x06" + _w(disp + 2) + _w(base)
                  + b"\xc7\x06" + _w(disp + 4) + _w(base >> 16))
        return Item("sysreg", kind, (stores, pre + b"\x0f\x01" + bytes([0x16 if kind == "lgdt" else 0x1E]) + _w(disp)),
                    insns=4)
    if kind == "mov-from-cr":
        n = draw(st.sampled_from([0, 2, 3, 4]))
        return Item("sysreg", kind, (b"\x0f\x20" + bytes([0xC0 | (n << 3) | draw(st.integers(0, 7))]),))
    if kind == "mov-to-cr":
        n = draw(st.sampled_from([0, 2, 3, 4]))
        r = draw(st.sampled_from([0, 1, 2, 3, 5, 6, 7]))
        if n == 0:
            value = RESET_CR0 & ~0x60000000 | (draw(u32) & CR0_BITS) | draw(st.sampled_from([0, 0x40000000, 0x60000000]))
            if draw(st.integers(0, 7)) == 0:
                value |= 1
        elif n == 4:
            value = draw(u32) & 0x1FF
        else:
            value = draw(u32)
        return Item("sysreg", kind, (b"\x66" + bytes([0xB8 + r]) + _d(value), b"\x0f\x22" + bytes([0xC0 | (n << 3) | r])),
                    insns=2)
    if kind == "clts":
        return Item("sysreg", "clts", (b"\x0f\x06",))
    grp = {"sldt": 0, "str": 1, "lldt": 2, "ltr": 3, "verr": 4, "verw": 5}
    if kind in grp:
        return Item("sysreg", kind, (b"\x0f\x00" + bytes([0xC0 | (grp[kind] << 3) | draw(st.integers(0, 7))]),))
    op = b"\x0f\x02" if kind == "lar" else b"\x0f\x03"
    return Item("sysreg", kind, (op + bytes([0xC0 | (draw(st.integers(0, 7)) << 3) | draw(st.integers(0, 7))]),))


@st.composite
def int_item(draw):
    kind = draw(st.sampled_from(["int", "int3", "into", "bound"]))
    if kind == "int":
        return Item("int", "int", (b"\xcd" + bytes([draw(u8)]),))
    if kind == "int3":
        return Item("int", "int3", (b"\xcc",))
    if kind == "into":
        return Item("int", "into", (b"\xce",))
    return Item("int", "bound", (_seg(draw) + b"\x62" + draw(modrm_mem(draw(st.integers(0, 7)))),))


@st.composite
def io_item(draw):
    kind = draw(st.sampled_from(["in-imm", "out-imm", "in-dx", "out-dx", "ins", "outs"]))
    wide = draw(st.sampled_from([b"", b"", b"\x66"]))
    size = draw(st.integers(0, 1))
    if kind in ("in-imm", "out-imm"):
        op = (0xE4 if kind == "in-imm" else 0xE6) | size
        return Item("io", kind[:-4] if kind.startswith("out") else "in",
                    ((wide if size else b"") + bytes([op, draw(u8)]),), imm_at=1 + (1 if wide and size else 0))
    pre = b"\xba" + _w(draw(u16))
    if kind in ("in-dx", "out-dx"):
        op = (0xEC if kind == "in-dx" else 0xEE) | size
        return Item("io", "in" if kind == "in-dx" else "out", (pre, (wide if size else b"") + bytes([op])), insns=2)
    op = (0x6C if kind == "ins" else 0x6E) | size
    rep = b"\xf3" if draw(st.booleans()) else b""
    seg = _seg(draw) if kind == "outs" else b""
    return Item("io", "in" if kind == "ins" else "out",
                (pre, b"\xb9" + _w(draw(st.integers(0, 8))), rep + seg + (wide if size else b"") + bytes([op])), insns=3)


@st.composite
def smc_item(draw):
    """mov byte cs:[X], imm8 where X is the immediate of a later item (or,
    when there is none, a data byte this item jumps over)."""
    return Item("smc", "smc", (b"\x2e\xc6\x06", ("smc16", draw(st.integers(0, 3))), bytes([draw(u8)]),
                               b"\xeb\x01", ("mark",), b"\x90"), insns=2)


INVALID_ENCODINGS = (
    b"\x0f\x0b",          # ud2
    b"\x0f\xb9\xc0",      # ud1
    b"\x8e\xc8",          # mov cs, ax
    b"\xf6\xc8",          # group 3 /1 (SDM blank; Unicorn #UD)
    b"\xc4\xc0",          # les ax, <register>: #UD (VEX only in protected mode)
    b"\xc5\xc0",          # lds ax, <register>
    b"\x0f\x37",          # getsec
    b"\xfe\xf8",          # group 4 /7
    b"\x8d\xc0",          # lea ax, <register>
)


@st.composite
def invalid_item(draw):
    return Item("invalid", "ud", (draw(st.sampled_from(INVALID_ENCODINGS)),))


@st.composite
def sys_item(draw):
    kind = draw(st.sampled_from(["sysenter", "sysexit"]))
    return Item("sys", kind, (b"\x0f\x34" if kind == "sysenter" else b"\x0f\x35",))


def hlt_item():
    return st.just(Item("hlt", "hlt", (b"\xf4",)))


# class -> (strategy, weight).  The run-ending classes are rarer so that most
# blocks run to their end.
CLASSES = {
    "alu": (table_insn(), 40),
    "string": (string_item(), 5),
    "branch": (branch_item(), 8),
    "indirect": (indirect_item(), 4),
    "far": (far_item(), 4),
    "flags": (flags_item(), 6),
    "segload": (segload_item(), 6),
    "segread": (segread_item(), 4),
    "sysreg": (sysreg_item(), 4),
    "int": (int_item(), 2),
    "io": (io_item(), 4),
    "smc": (smc_item(), 3),
    "invalid": (invalid_item(), 1),
    "sys": (sys_item(), 1),
    "hlt": (hlt_item(), 1),
}


def items_strategy(classes=None):
    chosen = classes or list(CLASSES)
    weighted = [name for name in chosen for _ in range(CLASSES[name][1])]
    return st.sampled_from(weighted).flatmap(lambda name: CLASSES[name][0])


@st.composite
def initial_state(draw):
    regs = {name: draw(reg32) for name in ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi")}
    for s in ("es", "ss", "ds", "fs", "gs"):
        regs[s] = draw(st.one_of(u16, st.sampled_from([0, 0x1000, 0x2F00, 0xFFFF])))
    status = draw(st.integers(0, 0xFFFF)) & (CF | PF | AF | ZF | SF | OF | DF | IF | IOPL | NT)
    if draw(st.integers(0, 7)) == 0:
        status |= AC
    return regs, status | 0x2


@st.composite
def real_mode_cases(draw, classes=None, max_items: int = MAX_ITEMS):
    """A ``Case``: a block of generated items and a random initial state."""
    from hypothesis import reject
    items = draw(st.lists(items_strategy(classes), min_size=1, max_size=max_items))
    cs = draw(st.integers(0x2100, 0x2FF0))
    regs, eflags = draw(initial_state())
    seed = draw(st.integers(0, 2**32 - 1))
    try:
        return make_case(items, cs, regs, eflags, seed)
    except ValueError:
        reject()
