"""Hypothesis strategies for the protected modes and V8086 (importable:
``from monitor.fuzz.pmstrategies import pm_cases``).

A case is an *environment* (the guest's GDT with code aliases and random
descriptors, LDT, IDT gate privileges, TSS I/O bitmap, CR0, CR4, SYSENTER
MSRs, CPL, segment registers: ``env_strategy``), an initial register state
(``pm_initial_state``) and a block of items (``items_strategy(mode)``).

Items come from the same two sources as in real mode
(``monitor/fuzz/strategies.py``): the opcode table (every IDENT integer
instruction, with 32-bit ModRM/SIB forms in 32-bit code and the ``66``/
``67`` size prefixes) and builders for the classes whose meaning depends on
the block or the state.  In protected mode the builders differ from the
real-mode ones where the architecture does:

* far transfers name code-segment *aliases* of the block (``far_delta`` =
  ``("same", k)``, ``("outer", k)`` for a ``retf``/``iretd`` from ring 0 to
  ring 3, ``("bad", selector)`` for one that faults);
* memory the builders need (far pointers, ``lgdt`` images, indirect branch
  targets, ``lds`` pointers) is built on the stack (``[esp]``/``[bp]``):
  code segments are not writable, and DS may be anything;
* selectors are drawn from the table (fixed entries, aliases, random
  entries, beyond the limit, LDT, every RPL);
* self-modifying stores go through the flat data segment (``push ds; push
  FLAT; pop ds; mov byte [lin32], imm8; pop ds``).

V8086 code is real-mode code: the V8086 mode uses the real-mode builders
(``strategies.CLASSES``) with a V8086 layout.
"""

from __future__ import annotations


from hypothesis import strategies as st

from bt.decoder import decode
from bt.opcodes import Attr, Imm
from monitor import descriptors as D
from monitor.fuzz import pmenv as E
from monitor.fuzz import strategies as R
from monitor.fuzz.case import AC, AF, CF, DF, IF, IOPL, NT, OF, PF, SF, ZF, Case, Item

MAX_ITEMS = 16
u8, u16, u32 = R.u8, R.u16, R.u32
ram32 = st.integers(0, 0x1FFFFF)
ram_ptr = st.integers(0x1000, 0x1E0000)
reg32 = st.one_of(ram32, ram32, ram32, R.interesting32, u32)


_w, _d = R._w, R._d


# --------------------------------------------------------------------------- environments

BASES = (0, 0, 0, 0x10000, 0x100000, 0x1EF000, 0x12340, 0x2F000)
LIMITS = (0xFFFFFFFF, 0xFFFFFFFF, 0xFFFF, 0xFFF, 0x1FFFF, 0xFFFFFFFF, 0xFFFF, 0x7FFF)
SYS_KINDS = ("ldt", "tss", "tss-busy", "tss16", "call", "int", "trap", "task", "reserved")


def descriptor_from(v: int) -> bytes:
    """A table entry of any kind (data of every type, code, system, gates)
    from the bits of one integer (one draw: cheap to generate and to shrink;
    0 is a plain present data segment)."""
    kind = ("data", "data", "data", "data", "data", "code", "code", "code", "sys", "sys")[v % 10]
    v //= 10
    dpl, v = v & 3, v >> 2
    present, v = (v & 15) != 15, v >> 4
    accessed, v = bool(v & 1), v >> 1
    base, v = BASES[v & 7], v >> 3
    limit, v = LIMITS[v & 7], v >> 3
    if kind == "data":
        d = D.data(base, limit, dpl=dpl, writable=(v & 3) != 3, expand_down=(v >> 2 & 7) == 7,
                   big=not v >> 5 & 1, present=present)
    elif kind == "code":
        d = D.code(base, limit, dpl=dpl, readable=(v & 3) != 3, conforming=bool(v >> 2 & 1),
                   bits=16 if v >> 3 & 1 else 32, present=present)
    else:
        which = SYS_KINDS[v % len(SYS_KINDS)]
        if which == "ldt":
            d = D.ldt(E.SYS_LDT, E.LDT_ENTRIES * 8 - 1, dpl=dpl)
        elif which.startswith("tss"):
            d = D.tss(E.SYS_TSS2, 0x67, dpl=dpl, busy=which == "tss-busy", bits=16 if which == "tss16" else 32)
        elif which == "call":
            return D.call_gate(E.SEL_CODE0, E.HANDLERS, dpl=dpl).encode()
        elif which == "int":
            return D.int_gate(E.SEL_CODE0, E.HANDLERS, dpl=dpl).encode()
        elif which == "trap":
            return D.trap_gate(E.SEL_CODE0, E.HANDLERS, dpl=dpl).encode()
        elif which == "task":
            return D.task_gate(E.SEL_TSS2, dpl=dpl).encode()
        else:
            return D.Descriptor(base, 0xFFFF, (dpl << 5) | 0x80 | (0, 8, 10, 13)[v >> 4 & 3], 0).encode()
        if not present:
            d = d.with_access(d.access & ~D.ACC_PRESENT)
        return d.encode()
    return d.with_access(d.access | (D.ACC_ACCESSED if accessed else 0)).encode()


def random_descriptor(bits: int = 32):
    return st.integers(0, 2**24 - 1).map(descriptor_from)


def _alias_bases(draw, bits: int, n: int) -> list[int]:
    if bits == 16:
        # IPs of the whole block must stay within 0..0xFFFF
        return [draw(st.integers(E.BLOCK_LINEAR - 0xF700, E.BLOCK_LINEAR)) for _ in range(n)]
    return [draw(st.sampled_from([0, 0, 0x10000, 0x20000, 0x2F000, E.BLOCK_LINEAR]) |
                 st.integers(0, E.BLOCK_LINEAR)) for _ in range(n)]


def loadable(desc_raw: bytes, sel: int, cpl: int, sreg: str) -> bool:
    """Could `sel` be in segment register `sreg` at `cpl` (a valid load)?"""
    d = D.decode(desc_raw)
    if isinstance(d, D.Gate) or not d.is_segment or not d.present:
        return False
    rpl = sel & 3
    if sreg == "ss":
        return d.is_data and d.writable and d.dpl == cpl and rpl == cpl and not d.expand_down
    if not (d.is_data or d.readable):
        return False
    if d.is_data or not d.conforming:
        return d.dpl >= max(cpl, rpl)
    return True


@st.composite
def env_strategy(draw, mode: str):
    """The guest's tables and system state for `mode` (pmenv.py)."""
    bits = 16 if mode in ("pm16", "v86") else 32
    cpl = 0 if mode in ("pm16", "pm32") else 3
    vm = mode == "v86"
    gdt = E.fixed_gdt()
    aliases = []

    def add(desc: bytes) -> int:
        gdt.append(desc)
        return (len(gdt) - 1) * 8

    if not vm:
        n = draw(st.integers(1, 3))
        code_dpl = cpl
        for base in _alias_bases(draw, bits, n):
            lim = 0xFFFF if bits == 16 else 0xFFFFFFFF
            sel = add(D.code(base, lim, dpl=code_dpl, bits=bits).with_access(0x80 | 0x1B | code_dpl << 5).encode())
            aliases.append((sel | cpl, base, cpl))
        if draw(st.booleans()):
            base = _alias_bases(draw, bits, 1)[0]
            lim = 0xFFFF if bits == 16 else 0xFFFFFFFF
            sel = add(D.code(base, lim, dpl=0, conforming=True, bits=bits).with_access(0x80 | 0x1F).encode())
            aliases.append((sel | cpl, base, cpl))
        if mode == "pm32":
            for base in _alias_bases(draw, bits, draw(st.integers(1, 2))):
                sel = add(D.code(base, dpl=3).with_access(0xFB).encode())
                aliases.append((sel | 3, base, 3))
    # the stack segment
    if vm:
        ss = draw(st.one_of(u16, st.sampled_from([0x1000, 0x5000, 0x9000])))
    elif mode == "pm16":
        ss = add(D.data16(draw(st.integers(0, 0x1E0000)) & ~0xF, 0xFFFF).encode())
    elif draw(st.booleans()):
        ss = E.SEL_DATA0 if cpl == 0 else E.SEL_DATA3 | 3
    else:
        ss = add(D.data32(draw(st.integers(0, 0x100000)) & ~0xFFF, dpl=cpl).encode()) | cpl
    for _ in range(draw(st.integers(3, 10))):
        add(draw(random_descriptor(bits)))
    ldt = [draw(random_descriptor(bits)) for _ in range(E.LDT_ENTRIES)]
    ldt[1] = D.data32(dpl=3).encode()                          # 0x0F: a usable LDT data segment
    # initial data segment registers
    segs = []
    for sreg in ("es", "ds", "fs", "gs"):
        if vm:
            segs.append(draw(st.one_of(u16, st.sampled_from([0, 0x1000, 0x2F00, 0xFFFF]))))
            continue
        nulls = [0] if cpl else [0, 3]         # (an iretd to ring 3 would null a null selector's RPL)
        cands, writable = [], []
        for i, raw in enumerate(gdt):
            for rpl in {cpl, 3}:
                if i and loadable(raw, i * 8 | rpl, cpl, sreg):
                    cands.append(i * 8 | rpl)
                    if D.decode(raw).writable:
                        writable.append(i * 8 | rpl)
        pick = draw(st.integers(0, 9))
        if pick == 0:
            segs.append(draw(st.sampled_from(nulls)))
        elif pick < 7 and writable:
            segs.append(draw(st.sampled_from(writable)))
        else:
            segs.append(draw(st.sampled_from(cands or nulls)))
    if vm:
        cs = draw(st.integers(0x2100, 0x2FF0))
        cs_base = cs << 4
        aliases = [(cs, cs_base, 3)]
    else:
        cs, cs_base, _ = aliases[0]
    # the accessed bit of what the initial state has loaded (the CPU set it)
    for sel in [cs, ss] + segs:
        if not vm and sel & 0xFFFC and not sel & 4:
            i = sel >> 3
            raw = bytearray(gdt[i])
            raw[5] |= 1
            gdt[i] = bytes(raw)
    ldtr = E.SEL_LDT if draw(st.integers(0, 3)) else 0
    cr0 = 0x11 | draw(st.integers(0, 0x3F)) & 0x2E | draw(st.sampled_from([0, 0, 0x10000, 0x60000000, 0x40000000]))
    cr4 = draw(st.sampled_from([0, 0, 0x200, 0x600, draw(st.integers(0, 0x7FF)) & 0x6DC]))
    msr_cs = draw(st.sampled_from([0, E.SEL_CODE0, E.SEL_CODE0]))
    env = {
        "mode": mode, "bits": bits, "cpl": cpl, "vm": vm,
        "gdt": b"".join(gdt).hex(), "ldt": b"".join(ldt).hex(), "ldtr": ldtr,
        "idt_seed": draw(st.integers(0, 2**16)), "idt_dpl3": draw(st.integers(0, 8)),
        "iomap_kind": draw(st.integers(0, 4)), "iomap_seed": draw(st.integers(0, 2**16)),
        "cr4": cr4, "msr": [msr_cs, draw(ram_ptr) & ~3, draw(ram_ptr)],
        "segs": [segs[0], cs, ss, segs[1], segs[2], segs[3]], "cs_base": cs_base,
        "aliases": aliases,
    }
    return env, cr0


# --------------------------------------------------------------------------- initial state

@st.composite
def pm_initial_state(draw, mode: str, world: str | None = None):
    """(registers, EFLAGS, world label) for `mode`.  ring3: "DE" is IF=1 and
    IOPL < 3 (the decision rule runs it directly), "BT" is IOPL 3 or IF 0."""
    if mode == "v86":
        regs = {n: draw(R.reg32) for n in ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi")}
    else:
        regs = {n: draw(reg32) for n in ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi")}
    if mode == "pm16":
        regs["esp"] = (draw(u32) & 0xFFFF0000) | draw(st.integers(0x100, 0xFF00))
    elif mode in ("pm32", "ring3"):
        regs["esp"] = draw(st.integers(0x2000, 0x100000)) & ~draw(st.sampled_from([0, 3]))
    status = draw(st.integers(0, 0xFFFF)) & (CF | PF | AF | ZF | SF | OF | DF | IF | IOPL)
    if draw(st.integers(0, 7)) == 0:
        status |= AC
    label = "BT" if mode in ("pm16", "pm32") else "DE"
    if mode == "ring3":
        label = world or draw(st.sampled_from(["DE", "DE", "DE", "BT"]))
        if label == "DE":
            status = status | IF
            if status & IOPL == IOPL:
                status &= ~0x1000
        elif draw(st.booleans()):
            status |= IOPL
        else:
            status &= ~IF
    return regs, status | 0x2, label


# --------------------------------------------------------------------------- 32-bit operands

def _disp32(draw) -> bytes:
    return _d(draw(st.one_of(ram32, st.integers(-0x80, 0x7F), u32)))


@st.composite
def modrm_mem32(draw, reg: int):
    """A 32-bit memory ModRM (every form, SIB included): modrm [+sib] [+disp]."""
    mod = draw(st.integers(0, 2))
    rm = draw(st.integers(0, 7))
    out = bytes([(mod << 6) | (reg << 3) | rm])
    if rm == 4:
        base = draw(st.integers(0, 7))
        out += bytes([(draw(st.integers(0, 3)) << 6) | (draw(st.integers(0, 7)) << 3) | base])
        if mod == 0 and base == 5:
            out += _disp32(draw)
    elif mod == 0 and rm == 5:
        out += _disp32(draw)
    if mod == 1:
        out += bytes([draw(u8)])
    elif mod == 2:
        out += _disp32(draw)
    return out


SEG_PREFIX = R.SEG_PREFIX


def _seg(draw) -> bytes:
    s = draw(st.sampled_from(SEG_PREFIX))
    return b"" if s is None else bytes([s])


@st.composite
def table_insn(draw, bits: int):
    """One IDENT instruction from the opcode table, in `bits`-bit code."""
    m, b, slot, e = draw(st.sampled_from(R.ALU_ENTRIES))
    opsize_flip = draw(st.integers(0, 4)) == 0
    addr_flip = bits == 32 and draw(st.integers(0, 9)) == 0
    wide = (bits == 32) != opsize_flip
    prefix = (b"\x66" if opsize_flip else b"") + (b"\x67" if addr_flip else b"")
    addr16 = (bits == 16) != addr_flip
    opcode = bytes([b]) if m == 1 else bytes([0x0F, b])
    body, memory = b"", False
    if e.modrm:
        if slot is not None:
            reg, mod_reg = slot & 7, slot >= 8
        else:
            reg = draw(st.sampled_from([r for r in range(8) if e.reg_ok >> r & 1]))
            mod_reg = True if e.attrs & Attr.REG_ONLY else (False if e.attrs & Attr.MEM_ONLY else draw(st.booleans()))
        if mod_reg:
            body = bytes([0xC0 | (reg << 3) | draw(st.integers(0, 7))])
        else:
            body = draw(R.modrm_mem(reg) if addr16 else modrm_mem32(reg))
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
        imm = _d(draw(u32)) if wide else _w(draw(u16))
    elif e.imm == Imm.MOFFS:
        imm = _w(draw(u16)) if addr16 else _d(draw(ram32))
    elif e.imm == Imm.IW_IB:
        imm = _w(draw(st.integers(0, 64))) + bytes([draw(st.integers(0, 4))])
    code = prefix + opcode + body + imm
    insn = decode(code, 0, bits)
    if not insn.ok or insn.length != len(code):
        return Item("alu", "nop", (b"\x90",))
    imm_at = len(code) - len(imm) if e.imm in (Imm.IB, Imm.IW, Imm.IZ) and imm else None
    return Item("mem" if memory else "alu", insn.mnemonic, (code,), imm_at=imm_at)


# --------------------------------------------------------------------------- builders

def _flags_value(v: int, wide: bool) -> int:
    return R._flags_value(v, wide) & ~NT              # (and no task returns)


FIXED_SELECTORS = (0, 3, 0x08, 0x10, 0x13, 0x18, 0x1B, 0x20, 0x23, 0x28, 0x30, 0x38, 0x40, 0x43, 0x48, 0x4B,
                   0x50, 0x53, 0x58, 0x5B, 0x0F, 0x07, 0x0C, 0x17)
selector = st.one_of(st.sampled_from(FIXED_SELECTORS), st.integers(0, 0x17F), u16)


def _push_sel(sel: int, bits: int) -> bytes:
    return b"\x68" + (_d(sel) if bits == 32 else _w(sel))


def _stack_mem(bits: int, reg: int) -> bytes:
    """ModRM (+SIB/disp) for [esp] (32-bit) / [bp+0] after `mov bp, sp` (16-bit)."""
    if bits == 32:
        return bytes([(reg << 3) | 4, 0x24])
    return bytes([0x46 | (reg << 3), 0x00])


MOV_BP_SP = b"\x89\xe5"


@st.composite
def string_item(draw, bits: int):
    op = draw(st.sampled_from([0xA4, 0xA5, 0xA6, 0xA7, 0xAA, 0xAB, 0xAC, 0xAD]))
    rep = draw(st.sampled_from([b"", b"\xf3", b"\xf2"] if op in (0xA6, 0xA7) else [b"", b"\xf3"]))
    pre = (b"\x66" if op & 1 and draw(st.booleans()) else b"")
    seg = _seg(draw) if op in (0xA4, 0xA5, 0xA6, 0xA7, 0xAC, 0xAD) else b""
    count = draw(st.integers(0, 40))
    names = {0xA4: "movs", 0xA5: "movs", 0xA6: "cmps", 0xA7: "cmps", 0xAA: "stos", 0xAB: "stos",
             0xAC: "lods", 0xAD: "lods"}
    setup = b""
    if bits == 32 and draw(st.integers(0, 2)):
        setup = b"\xbe" + _d(draw(ram32)) + b"\xbf" + _d(draw(ram32))          # mov esi, .. ; mov edi, ..
    cnt = b"\xb9" + (_d(count) if bits == 32 else _w(count))
    return Item("string", ("rep " if rep else "") + names[op], (setup + cnt, rep + pre + seg + bytes([op])),
                insns=4 if setup else 2, imm_at=len(setup) + 1)


@st.composite
def indirect_item(draw, bits: int):
    kind = draw(st.sampled_from(["jmp-reg", "call-reg", "jmp-mem", "call-mem", "ret", "ret-imm"]))
    skip = draw(st.integers(0, 4))
    ip = ("ip32", skip) if bits == 32 else ("ip16", skip)
    r = draw(st.sampled_from([0, 1, 2, 3, 5, 6, 7]))
    if kind in ("jmp-reg", "call-reg"):
        op = 0xE0 if kind == "jmp-reg" else 0xD0
        return Item("indirect", kind, (bytes([0xB8 + r]), ip, bytes([0xFF, op | r])), insns=2)
    if kind in ("jmp-mem", "call-mem"):
        reg = 4 if kind == "jmp-mem" else 2
        if bits == 32:
            return Item("indirect", kind, (b"\x68", ip, b"\xff" + _stack_mem(32, reg)), insns=2)
        return Item("indirect", kind, (b"\x68", ip, MOV_BP_SP + b"\xff" + _stack_mem(16, reg)), insns=3)
    if kind == "ret":
        return Item("indirect", kind, (b"\x68", ip, b"\xc3"), insns=2)
    return Item("indirect", kind, (b"\x68", ip, b"\xc2" + _w(draw(st.integers(0, 8)) * 2)), insns=2)


@st.composite
def far_item(draw, bits: int, outer: bool):
    """Far jmp/call/retf/iret between the block's code aliases (pmenv.Region)."""
    kinds = ["jmpf", "callf", "retf", "retf-imm", "iret", "jmpf-mem", "callf-mem", "bad"]
    if outer:
        kinds += ["retf-outer", "iret-outer"]
    kind = draw(st.sampled_from(kinds))
    k = draw(st.integers(0, 3))
    ipk = ("far_ip32",) if bits == 32 else ("far_ip16",)
    pad = b"\0\0" if bits == 32 else b""
    cs = (("far_cs16",), pad)
    if kind == "bad":
        sel = draw(selector)
        op = draw(st.sampled_from([b"\xea", b"\x9a"]))
        return Item("far", "jmpf" if op == b"\xea" else "callf", (op, ipk, ("far_cs16",)),
                    far_delta=("bad", sel))
    if kind in ("jmpf", "callf"):
        return Item("far", kind, (b"\xea" if kind == "jmpf" else b"\x9a", ipk, ("far_cs16",)),
                    far_delta=("same", k))
    if kind in ("retf", "retf-imm"):
        tail = b"\xcb" if kind == "retf" else b"\xca" + _w(draw(st.integers(0, 4)) * (4 if bits == 32 else 2))
        return Item("far", "retf", (b"\x68", *cs, b"\x68", ipk, tail), insns=3, far_delta=("same", k))
    if kind == "iret":
        fl = _flags_value(draw(u32), bits == 32)
        flags = _d(fl) if bits == 32 else _w(fl)
        return Item("far", "iret", (b"\x68" + flags, b"\x68", *cs, b"\x68", ipk, b"\xcf"), insns=4,
                    far_delta=("same", k))
    if kind in ("jmpf-mem", "callf-mem"):
        reg = 5 if kind == "jmpf-mem" else 3
        if bits == 32:
            parts = (b"\x68", *cs, b"\x68", ipk, b"\xff" + _stack_mem(32, reg))
            n = 3
        else:
            parts = (b"\x68", *cs, b"\x68", ipk, MOV_BP_SP + b"\xff" + _stack_mem(16, reg))
            n = 4
        return Item("far", "jmpf" if kind == "jmpf-mem" else "callf", parts, insns=n, far_delta=("same", k))
    # to ring 3 (from ring 0, 32-bit code): ss, esp, [eflags,] cs, eip
    esp = draw(st.integers(0x2000, 0x100000)) & ~3
    pre = b"\x68" + _d(E.SEL_DATA3 | 3) + b"\x68" + _d(esp)
    if kind == "retf-outer":
        return Item("far", "retf", (pre, b"\x68", *cs, b"\x68", ipk, b"\xcb"), insns=5, far_delta=("outer", k))
    fl = _flags_value(draw(u32), True)
    return Item("far", "iret", (pre + b"\x68" + _d(fl), b"\x68", *cs, b"\x68", ipk, b"\xcf"), insns=6,
                far_delta=("outer", k))


@st.composite
def flags_item(draw, bits: int):
    kind = draw(st.sampled_from(["cli", "sti", "pushf", "popf", "pushf16", "popf16", "push-popf", "push-popf16",
                                 "clc", "stc", "cmc", "cld", "std", "sahf", "lahf"]))
    o = b"\x66"
    simple = {"cli": b"\xfa", "sti": b"\xfb", "pushf": b"\x9c", "popf": b"\x9d", "pushf16": o + b"\x9c",
              "popf16": o + b"\x9d", "clc": b"\xf8", "stc": b"\xf9", "cmc": b"\xf5", "cld": b"\xfc",
              "std": b"\xfd", "sahf": b"\x9e", "lahf": b"\x9f"}
    if kind in simple:
        name = {"pushf16": "pushf", "popf16": "popf-stack", "popf": "popf-stack"}.get(kind, kind)
        return Item("flags", name, (simple[kind],))
    wide = (bits == 32) == (kind == "push-popf")
    size_prefix = b"" if (bits == 32) == wide else o
    value = _flags_value(draw(u32), wide)
    push = size_prefix + b"\x68" + (_d(value) if wide else _w(value))
    return Item("flags", "popf", (push, size_prefix + b"\x9d"), insns=2)


SREG_LOADABLE = (0, 2, 3, 4, 5)


@st.composite
def segload_item(draw, bits: int):
    kind = draw(st.sampled_from(["mov-reg", "mov-reg", "mov-mem", "mov-stack", "pop", "lds", "les", "lfs",
                                 "lgs", "lss"]))
    s = draw(st.sampled_from(SREG_LOADABLE))
    sel = draw(selector)
    if kind == "mov-reg":
        r = draw(st.sampled_from([0, 1, 2, 3, 5, 6, 7]))
        return Item("segload", "mov-sreg", (b"\x66" * (bits == 32) + bytes([0xB8 + r]) + _w(sel),
                                            bytes([0x8E, 0xC0 | (s << 3) | r])), insns=2)
    if kind == "mov-mem":
        mem = draw(R.modrm_mem(s) if bits == 16 else modrm_mem32(s))
        return Item("segload", "mov-sreg", (_seg(draw) + b"\x8e" + mem,))
    if kind == "mov-stack":
        pre = MOV_BP_SP if bits == 16 else b""
        return Item("segload", "mov-sreg", (_push_sel(sel, bits), pre + b"\x8e" + _stack_mem(bits, s)),
                    insns=3 if pre else 2)
    if kind == "pop":
        op = {0: b"\x07", 2: b"\x17", 3: b"\x1f", 4: b"\x0f\xa1", 5: b"\x0f\xa9"}[s]
        return Item("segload", "pop-sreg", (_push_sel(sel, bits), op), insns=2)
    op = {"lds": b"\xc5", "les": b"\xc4", "lss": b"\x0f\xb2", "lfs": b"\x0f\xb4", "lgs": b"\x0f\xb5"}[kind]
    r = draw(st.integers(0, 7))
    if draw(st.integers(0, 3)) == 0:                          # a pointer from random memory
        mem = draw(R.modrm_mem(r) if bits == 16 else modrm_mem32(r))
        return Item("segload", kind, (_seg(draw) + op + mem,))
    off = draw(ram32)
    ptr = _push_sel(sel, bits) + b"\x68" + (_d(off) if bits == 32 else _w(off))
    pre = MOV_BP_SP if bits == 16 else b""
    return Item("segload", kind, (ptr, pre + op + _stack_mem(bits, r)), insns=4 if pre else 3)


@st.composite
def segread_item(draw, bits: int):
    kind = draw(st.sampled_from(["mov-reg", "mov-mem", "push"]))
    s = draw(st.integers(0, 5))
    if kind == "mov-reg":
        pre = b"\x66" if draw(st.integers(0, 3)) == 0 else b""
        return Item("segread", "mov-from-sreg", (pre + bytes([0x8C, 0xC0 | (s << 3) | draw(st.integers(0, 7))]),))
    if kind == "mov-mem":
        if draw(st.booleans()):
            pre = MOV_BP_SP if bits == 16 else b""
            return Item("segread", "mov-from-sreg", (pre + b"\x8c" + _stack_mem(bits, s),), insns=2 if pre else 1)
        mem = draw(R.modrm_mem(s) if bits == 16 else modrm_mem32(s))
        return Item("segread", "mov-from-sreg", (_seg(draw) + b"\x8c" + mem,))
    op = {0: b"\x06", 1: b"\x0e", 2: b"\x16", 3: b"\x1e", 4: b"\x0f\xa0", 5: b"\x0f\xa8"}[s]
    pre = b"\x66" if draw(st.integers(0, 3)) == 0 else b""
    return Item("segread", "push-sreg", (pre + op,))


def _mov_imm32(r: int, value: int, bits: int) -> bytes:
    return (b"\x66" if bits == 16 else b"") + bytes([0xB8 + r]) + _d(value)


def _mov_imm16(r: int, value: int, bits: int) -> bytes:
    return (b"\x66" if bits == 32 else b"") + bytes([0xB8 + r]) + _w(value)


CR0_BITS = 0x2 | 0x4 | 0x8 | 0x20 | 0x10000


@st.composite
def sysreg_item(draw, bits: int):
    kind = draw(st.sampled_from(["smsw", "lmsw", "sgdt", "sidt", "lgdt", "lidt", "mov-from-cr", "mov-to-cr",
                                 "clts", "sldt", "str", "lldt", "ltr", "verr", "verw", "lar", "lsl"]))
    o16 = b"\x66" if bits == 32 else b""
    r = draw(st.sampled_from([0, 1, 2, 3, 5, 6, 7]))
    if kind == "smsw":
        if draw(st.booleans()):                                 # r16 (smsw r32's top half is undefined)
            return Item("sysreg", "smsw", (o16 + b"\x0f\x01" + bytes([0xE0 | draw(st.integers(0, 7))]),))
        pre = MOV_BP_SP if bits == 16 else b""
        return Item("sysreg", "smsw", (pre + b"\x0f\x01" + _stack_mem(bits, 4),), insns=2 if pre else 1)
    if kind == "lmsw":
        value = draw(u16) & 0xE | 1
        return Item("sysreg", "lmsw", (_mov_imm16(r, value, bits), b"\x0f\x01" + bytes([0xF0 | r])), insns=2)
    if kind in ("sgdt", "sidt"):
        pre = (b"\x66" if draw(st.booleans()) else b"")
        reg = 0 if kind == "sgdt" else 1
        if draw(st.integers(0, 3)) == 0:
            mem = draw(R.modrm_mem(reg) if bits == 16 else modrm_mem32(reg))
            return Item("sysreg", kind, (pre + _seg(draw) + b"\x0f\x01" + mem,))
        mov = MOV_BP_SP if bits == 16 else b""
        return Item("sysreg", kind, (mov + pre + b"\x0f\x01" + _stack_mem(bits, reg),), insns=2 if mov else 1)
    if kind in ("lgdt", "lidt"):
        if kind == "lgdt":
            base = draw(st.sampled_from([E.SYS_GDT, E.SYS_GDT, E.SYS_GDT_ALT]) | ram32)
            limit = draw(st.sampled_from([0xFF, 0x1FF, 0xFFFF]) | u16)
        else:
            base = draw(st.sampled_from([E.SYS_IDT, E.SYS_IDT_ALT]))
            limit = 0x7FF                                      # delivery faults are not virtualized
        o = draw(st.booleans())                                 # operand-size prefix: 24-bit base when 16-bit
        prefix = b"\x66" if o else b""
        reg = 2 if kind == "lgdt" else 3
        if bits == 32:
            parts = (b"\x68" + _d(base), b"\x66\x68" + _w(limit), prefix + b"\x0f\x01" + _stack_mem(32, reg))
            return Item("sysreg", kind, parts, insns=3)
        parts = (b"\x68" + _w(base >> 16), b"\x68" + _w(base), b"\x68" + _w(limit),
                 MOV_BP_SP + prefix + b"\x0f\x01" + _stack_mem(16, reg))
        return Item("sysreg", kind, parts, insns=5)
    if kind == "mov-from-cr":
        n = draw(st.sampled_from([0, 2, 3, 4]))
        return Item("sysreg", kind, (b"\x0f\x20" + bytes([0xC0 | (n << 3) | draw(st.integers(0, 7))]),))
    if kind == "mov-to-cr":
        n = draw(st.sampled_from([0, 2, 3, 4]))
        if n == 0:
            value = 0x11 | (draw(u32) & CR0_BITS) | draw(st.sampled_from([0, 0x40000000, 0x60000000]))
        elif n == 4:
            value = draw(u32) & 0x6DC
        else:
            value = draw(u32)
        return Item("sysreg", kind, (_mov_imm32(r, value, bits), b"\x0f\x22" + bytes([0xC0 | (n << 3) | r])),
                    insns=2)
    if kind == "clts":
        return Item("sysreg", "clts", (b"\x0f\x06",))
    grp = {"sldt": 0, "str": 1, "lldt": 2, "ltr": 3, "verr": 4, "verw": 5}
    if kind in ("sldt", "str"):
        if draw(st.booleans()):
            pre = b"\x66" if draw(st.booleans()) else b""
            return Item("sysreg", kind, (pre + b"\x0f\x00" + bytes([0xC0 | (grp[kind] << 3) | draw(st.integers(0, 7))]),))
        mov = MOV_BP_SP if bits == 16 else b""
        return Item("sysreg", kind, (mov + b"\x0f\x00" + _stack_mem(bits, grp[kind]),), insns=2 if mov else 1)
    if kind == "lldt":
        sel = draw(st.sampled_from([0, E.SEL_LDT, E.SEL_LDT, E.SEL_TSS2]) | selector)
    elif kind == "ltr":
        sel = draw(st.sampled_from([E.SEL_TSS2, E.SEL_TSS2, E.SEL_TSS, E.SEL_LDT]) | selector)
    else:
        sel = draw(selector)
    if kind in grp:
        return Item("sysreg", kind, (_mov_imm16(r, sel, bits), b"\x0f\x00" + bytes([0xC0 | (grp[kind] << 3) | r])),
                    insns=2)
    op = b"\x0f\x02" if kind == "lar" else b"\x0f\x03"
    pre = b"\x66" if draw(st.integers(0, 3)) == 0 else b""
    dst = draw(st.integers(0, 7))
    return Item("sysreg", kind, (_mov_imm16(r, sel, bits), pre + op + bytes([0xC0 | (dst << 3) | r])), insns=2)


@st.composite
def int_item(draw, bits: int):
    kind = draw(st.sampled_from(["int", "int3", "into", "bound"]))
    if kind == "int":
        return Item("int", "int", (b"\xcd" + bytes([draw(u8)]),))
    if kind == "int3":
        return Item("int", "int3", (b"\xcc",))
    if kind == "into":
        return Item("int", "into", (b"\xce",))
    r = draw(st.integers(0, 7))
    if draw(st.booleans()):
        lo, hi = sorted((draw(u16), draw(u16)))
        if bits == 32:
            return Item("int", "bound", (b"\x68" + _d(hi), b"\x68" + _d(lo), b"\x62" + _stack_mem(32, r)), insns=3)
        return Item("int", "bound", (b"\x68" + _w(hi), b"\x68" + _w(lo), MOV_BP_SP + b"\x62" + _stack_mem(16, r)),
                    insns=4)
    mem = draw(R.modrm_mem(r) if bits == 16 else modrm_mem32(r))
    return Item("int", "bound", (_seg(draw) + b"\x62" + mem,))


@st.composite
def io_item(draw, bits: int):
    kind = draw(st.sampled_from(["in-imm", "out-imm", "in-dx", "out-dx", "ins", "outs"]))
    wide = draw(st.sampled_from([b"", b"", b"\x66"]))
    size = draw(st.integers(0, 1))
    port = draw(st.one_of(u8, u16))
    if kind in ("in-imm", "out-imm"):
        op = (0xE4 if kind == "in-imm" else 0xE6) | size
        return Item("io", "in" if kind == "in-imm" else "out",
                    ((wide if size else b"") + bytes([op, port & 0xFF]),), imm_at=1 + (1 if wide and size else 0))
    pre = b"\xba" + _w(port) if bits == 16 else b"\x66\xba" + _w(port)
    if kind in ("in-dx", "out-dx"):
        op = (0xEC if kind == "in-dx" else 0xEE) | size
        return Item("io", "in" if kind == "in-dx" else "out", (pre, (wide if size else b"") + bytes([op])), insns=2)
    op = (0x6C if kind == "ins" else 0x6E) | size
    rep = b"\xf3" if draw(st.booleans()) else b""
    seg = _seg(draw) if kind == "outs" else b""
    count = draw(st.integers(1, 8))
    cnt = b"\xb9" + (_d(count) if bits == 32 else _w(count))
    setup = b""
    if bits == 32:
        setup = (b"\xbf" if kind == "ins" else b"\xbe") + _d(draw(ram32))
    return Item("io", "in" if kind == "ins" else "out",
                (pre, setup + cnt, rep + seg + (wide if size else b"") + bytes([op])), insns=4 if setup else 3)


@st.composite
def smc_item(draw, bits: int, flat: int):
    """A store into a later instruction's immediate through the flat data
    segment `flat` (code segments are not writable)."""
    imm = bytes([draw(u8)])
    store = (b"\xc6\x05", ("smclin32", draw(st.integers(0, 3))), imm) if bits == 32 else \
        (b"\x67\xc6\x05", ("smclin32", draw(st.integers(0, 3))), imm)
    return Item("smc", "smc", (b"\x1e", _push_sel(flat, bits), b"\x1f", *store, b"\x1f",
                               b"\xeb\x01", ("mark",), b"\x90"), insns=6)


@st.composite
def sys_item(draw, bits: int):
    kind = draw(st.sampled_from(["sysenter", "sysexit", "sysenter-msr", "sysexit-msr"]))
    op = b"\x0f\x34" if kind.startswith("sysenter") else b"\x0f\x35"
    if not kind.endswith("-msr"):
        return Item("sys", kind, (op,))
    cs = draw(st.sampled_from([0, E.SEL_CODE0]))
    setup = _mov_imm32(1, 0x174, bits) + _mov_imm32(0, cs, bits) + (b"\x66" if bits == 16 else b"") + b"\x31\xd2" \
        + b"\x0f\x30"
    return Item("sys", kind[:-4], (setup, op), insns=5)


# In protected mode (not V8086) Unicorn decodes C4/C5 with a register operand
# as a VEX prefix (#NM with CR0.TS, else #UD); a P6 raises #UD: left out.
PM_INVALID = tuple(e for e in R.INVALID_ENCODINGS if e[:1] not in (b"\xc4", b"\xc5"))


@st.composite
def invalid_item(draw):
    return Item("invalid", "ud", (draw(st.sampled_from(PM_INVALID)),))


def hlt_item():
    return st.just(Item("hlt", "hlt", (b"\xf4",)))


def classes_for(mode: str) -> dict:
    """class -> (strategy, weight) for `mode`."""
    if mode == "v86":
        return dict(R.CLASSES)
    bits = 16 if mode == "pm16" else 32
    flat = E.SEL_DATA0 if mode in ("pm16", "pm32") else E.SEL_DATA3 | 3
    return {
        "alu": (table_insn(bits), 40),
        "string": (string_item(bits), 5),
        "branch": (R.branch_item(bits), 8),
        "indirect": (indirect_item(bits), 4),
        "far": (far_item(bits, outer=mode == "pm32"), 4),
        "flags": (flags_item(bits), 6),
        "segload": (segload_item(bits), 7),
        "segread": (segread_item(bits), 4),
        "sysreg": (sysreg_item(bits), 5),
        "int": (int_item(bits), 2),
        "io": (io_item(bits), 4),
        "smc": (smc_item(bits, flat), 3),
        "invalid": (invalid_item(), 1),
        "sys": (sys_item(bits), 1),
        "hlt": (hlt_item(), 1),
    }


_CLASS_CACHE: dict = {}


def items_strategy(mode: str, classes=None):
    if mode not in _CLASS_CACHE:
        _CLASS_CACHE[mode] = classes_for(mode)
    table = _CLASS_CACHE[mode]
    chosen = [c for c in (classes or list(table)) if c in table]
    weighted = [name for name in chosen for _ in range(table[name][1])]
    return st.sampled_from(weighted).flatmap(lambda name: table[name][0])


# Items whose result differs in DE by design (docs/transparency.md, U26): the
# real CPU's sgdt/sidt/lsl/lar cannot be intercepted at CPL 3 and show the
# shadow tables.  Left out of DE runs (and after a transfer to ring 3).
DE_DIFFERENCES = {
    "sgdt": "U26: sgdt at CPL 3 in DE shows the shadow GDTR (no UMIP; VMware's own limitation)",
    "sidt": "U26: sidt at CPL 3 in DE shows the real IDTR, which the monitor never loads",
    "lsl": "lsl in DE shows the shadow descriptor's limit, truncated below the monitor region",
    "lar": "lar in DE shows the shadow's access byte (gates and available TSSes not present, A preset)",
}


def is_ins(item: Item) -> bool:
    """An `ins` (or `rep ins`) item."""
    return item.cls == "io" and bool(item.parts) and bytes(item.parts[-1])[-1:] in (b"\x6c", b"\x6d")


def make_pm_case(mode: str, items, env: dict, cr0: int, regs: dict, eflags: int, mem_seed: int = 0,
                 world: str = "") -> Case:
    """Lay `items` out in `env` and build the Case (raises ValueError when they do not fit)."""
    bits = env["bits"]
    start = E.Region(*env["aliases"][0])
    nxt = E.next_region_v86 if env["vm"] else E.next_region_pm(env)
    lay = E.layout_regions(items, start, nxt, bits)
    env = dict(env)
    env["world"] = world
    regs = dict(regs)
    for name, sel in zip(("es", "cs", "ss", "ds", "fs", "gs"), env["segs"]):
        if name != "cs":
            regs[name] = sel
    case = Case(code=lay.code, cs=start.sel, ip=lay.ip, regs=regs, eflags=eflags, mem_seed=mem_seed, cr0=cr0,
                classes=tuple(it.cls for it in items), names=tuple(it.name for it in items), insns=lay.insns,
                mode=mode, env=env)
    case.__dict__["_rebuild"] = (tuple(items),
                                 lambda its, r, fl, sd: make_pm_case(mode, its, env, cr0, r, fl, sd, world))
    return case


@st.composite
def pm_cases(draw, mode: str, classes=None, exclude=(), max_items: int = MAX_ITEMS):
    """A protected-mode or V8086 ``Case`` for `mode`."""
    from hypothesis import reject
    excluded = set(exclude or ())
    env, cr0 = draw(env_strategy(mode))
    regs, eflags, world = draw(pm_initial_state(mode))
    de = world == "DE" and mode in ("ring3", "v86")
    if de:
        excluded |= {"sgdt", "sidt"} | ({"lsl", "lar"} if mode == "ring3" else set())
    if mode == "v86":
        excluded |= {"sysenter", "sysexit"}
    after_outer = set(DE_DIFFERENCES)
    de_ins = "de-ins-dummy-store" in excluded
    items = draw(st.lists(items_strategy(mode, classes).filter(lambda it: it.name not in excluded),
                          min_size=1, max_size=max_items))
    if de_ins and de and any(is_ins(it) for it in items):
        # Unicorn departure: a denied `ins` run directly has already stored 0
        # (campaign.UNICORN_DEPARTURES): in DE, every port is allowed then
        env = dict(env, iomap_kind=4)
    if mode == "pm32":
        # after a transfer to ring 3 the rest may run in DE: no DE-differing items there
        out, outer = [], False
        for it in items:
            if outer and (it.name in after_outer or de_ins and is_ins(it)):
                it = Item("alu", "nop", (b"\x90",))
            out.append(it)
            outer = outer or (isinstance(it.far_delta, tuple) and it.far_delta[0] == "outer")
        items = out
    if "ac-flag" in excluded:
        eflags &= ~AC
    seed = draw(st.integers(0, 2**32 - 1))
    try:
        return make_pm_case(mode, items, env, cr0, regs, eflags, seed, world)
    except ValueError:
        reject()


def pm_case_from_bytes(code: bytes, mode: str = "pm32", regs: dict | None = None, eflags: int | None = None,
                       iomap_kind: int = 0, cr0: int = 0x11, cr4: int = 0, msr=(0, 0, 0), ldtr: int = 0,
                       extra_gdt=(), cs_base: int | None = None, segs: dict | None = None,
                       mem_seed: int = 0) -> Case:
    """A hand-written protected-mode or V8086 case (tests, reproducers): raw
    bytes at BLOCK_LINEAR (a hlt is appended), flat segments, a plain
    environment.  ring 0: CS 0x40 (16-bit for pm16), ring 3: CS 0x4B; V8086:
    CS 0x2F00.  ``extra_gdt`` entries follow the code alias (from 0x48)."""
    bits = 16 if mode in ("pm16", "v86") else 32
    cpl = 0 if mode in ("pm16", "pm32") else 3
    vm = mode == "v86"
    gdt = E.fixed_gdt()
    if vm:
        cs = 0x2F00
        base = cs << 4
        aliases = [(cs, base, 3)]
        seg = {"es": 0x1000, "ss": 0x5000, "ds": 0x1000, "fs": 0x1000, "gs": 0x1000}
    else:
        base = (E.BLOCK_LINEAR - 0x1000 if bits == 16 else 0) if cs_base is None else cs_base
        limit = 0xFFFF if bits == 16 else 0xFFFFFFFF
        gdt.append(D.code(base, limit, dpl=cpl, bits=bits).with_access(0x9B | cpl << 5).encode())
        aliases = [(0x40 | cpl, base, cpl)]
        cs = 0x40 | cpl
        flat = E.SEL_DATA0 if cpl == 0 else E.SEL_DATA3 | 3
        seg = {"es": flat, "ss": flat, "ds": flat, "fs": flat, "gs": flat}
        if mode == "pm16":
            gdt.append(D.data16(0x40000).encode())
            seg["ss"] = len(gdt) * 8 - 8
    gdt += [bytes(e) for e in extra_gdt]
    seg.update(segs or {})
    env = {"mode": mode, "bits": bits, "cpl": cpl, "vm": vm, "gdt": b"".join(gdt).hex(),
           "ldt": (D.data32(dpl=3).encode() * E.LDT_ENTRIES).hex(), "ldtr": ldtr, "idt_seed": 0, "idt_dpl3": 8,
           "iomap_kind": iomap_kind, "iomap_seed": 0, "cr4": cr4, "msr": list(msr),
           "segs": [seg["es"], cs, seg["ss"], seg["ds"], seg["fs"], seg["gs"]], "cs_base": base,
           "aliases": aliases, "world": ""}
    r = {n: 0 for n in ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi")}
    r["esp"] = 0x8000 if bits == 16 else 0x80000
    r.update(regs or {})
    if eflags is None:
        eflags = 0x202 if mode in ("ring3", "v86") else 0x2
    item = Item("raw", "raw", (bytes(code),), insns=1)
    return make_pm_case(mode, [item], env, cr0, r, eflags | 0x2, mem_seed, "")
