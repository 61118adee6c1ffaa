"""bt.decoder against Capstone (oracle), Unicorn (referee) and the SDM.

Layout:
  1. helpers: Capstone in 16/32-bit mode, a Unicorn #UD probe, `compare`
  2. EXCLUSIONS: every place where Capstone 5 disagrees with the SDM for a P6,
     each with a reason, an SDM reference, sample encodings, and what Unicorn
     does with them (checked, so the table cannot rot)
  3. every opcode of the one-byte and 0F maps x ModRM/SIB forms x prefixes
  4. field-by-field tests of the stages (prefixes, ModRM/SIB, displacement,
     immediates, 15-byte cap, truncation, branch targets)
  5. hypothesis fuzzing (bounded; a `long` variant runs many more examples)
"""

from dataclasses import dataclass
from typing import Callable, Optional

import pytest
from capstone import CS_ARCH_X86, CS_MODE_16, CS_MODE_32, Cs
from capstone import x86 as csx86
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from unicorn import UC_ARCH_X86, UC_HOOK_INTR, UC_MODE_16, UC_MODE_32, Uc, UcError
from unicorn.unicorn_const import UC_ERR_INSN_INVALID
from unicorn.x86_const import (
    UC_X86_REG_EAX, UC_X86_REG_EBP, UC_X86_REG_EBX, UC_X86_REG_ECX,
    UC_X86_REG_EDI, UC_X86_REG_EDX, UC_X86_REG_EIP, UC_X86_REG_ESI,
    UC_X86_REG_ESP,
)

from bt import decoder, opcodes
from bt.decoder import decode, decode_all, scan
from bt.opcodes import Attr, Flow, Kind, Sens, Status

# --------------------------------------------------------------- helpers --

_CS = {}


def capstone(mode):
    if mode not in _CS:
        md = Cs(CS_ARCH_X86, CS_MODE_32 if mode == 32 else CS_MODE_16)
        md.detail = True
        _CS[mode] = md
    return _CS[mode]


def cs_decode(code, mode, address):
    for insn in capstone(mode).disasm(code, address, count=1):
        return insn
    return None


def unicorn_outcome(code, mode=32):
    """Execute one instruction on Unicorn: 'UD' if it raises #UD, else 'runs'.

    Registers hold 0x100 so ModRM memory operands land in mapped memory;
    faults other than #UD (e.g. #GP from XGETBV) and memory errors also
    count as 'runs': the instruction was decoded.
    """
    uc = Uc(UC_ARCH_X86, UC_MODE_32 if mode == 32 else UC_MODE_16)
    uc.mem_map(0, 0x200000)
    base = 0x1000
    uc.mem_write(base, bytes(code) + b"\x90" * 16)
    for r in (UC_X86_REG_EAX, UC_X86_REG_EBX, UC_X86_REG_ECX, UC_X86_REG_EDX,
              UC_X86_REG_ESI, UC_X86_REG_EDI, UC_X86_REG_EBP):
        uc.reg_write(r, 0x100)
    uc.reg_write(UC_X86_REG_ESP, 0x8000)
    vectors = []

    def on_intr(uc_, intno, _data):
        vectors.append(intno)
        uc_.emu_stop()

    uc.hook_add(UC_HOOK_INTR, on_intr)
    try:
        uc.emu_start(base, base + 0x100, count=1)
    except UcError as exc:
        return "UD" if exc.errno == UC_ERR_INSN_INVALID else "runs"
    return "UD" if vectors[:1] == [6] else "runs"


def mask(bits):
    return (1 << bits) - 1


OK_LIKE = (Status.OK, Status.UNSUPPORTED)
REL_FLOWS = (Flow.JCC, Flow.JMP, Flow.CALL, Flow.LOOP, Flow.JCXZ)
# First-operand codes whose size Capstone reports the same way we do.
SIZED_FIRST = ("Eb", "Ev", "Ew", "Gb", "Gv", "Zb", "Zv", "AL", "eAX", "Rv/Mw")


def _modrm_fields(ins):
    return ins.opmap, ins.opcode, ins.mod, ins.reg, ins.modrm


# ------------------------------------------------------------ exclusions --

@dataclass(frozen=True)
class Exclusion:
    key: str
    reason: str
    sdm: str
    applies: Callable        # (ours: Instruction, cs: CsInsn|None) -> bool
    samples: tuple           # ((mode, hex), ...) where Capstone disagrees
    unicorn: Optional[str]   # what Unicorn does with the samples ('UD' or
                             # 'runs'), None when its CPU model differs


def _one(opcode, ins):
    return ins.opmap == 1 and ins.opcode == opcode


def _two(opcodes_, ins):
    return ins.opmap == 2 and ins.opcode in opcodes_


X87_ALIAS_SLOTS = {(0xDC, 2), (0xDC, 3), (0xDD, 1), (0xDE, 2), (0xDF, 1),
                   (0xDF, 2), (0xDF, 3)}
LOCK_REG_DEST = {b + d for b in range(0, 0x40, 8) for d in (2, 3)} - {0x3A, 0x3B}

EXCLUSIONS = (
    Exclusion(
        "x87-aliases",
        "Capstone rejects the undocumented x87 register-form aliases FCOM2 "
        "(DC D0+i), FCOMP3 (DC D8+i), FXCH4 (DD C8+i), FCOMP5 (DE D0+i), FXCH7 "
        "(DF C8+i), FSTP8/FSTP9 (DF D0+i/D8+i); Intel hardware and Unicorn "
        "execute them, and an IDENT copy preserves whatever the CPU does.",
        "SDM Vol. 2 Tables A-15..A-22 (blank cells); sandpile.org x87 aliases",
        lambda o, c: o.status == Status.OK and c is None and o.opmap == 1
        and (o.opcode, o.reg) in X87_ALIAS_SLOTS and o.mod == 3,
        ((32, "dcd1"), (32, "dcd9"), (32, "ddc9"), (16, "ded3"),
         (32, "dfc9"), (32, "dfd2"), (16, "dfdb")),
        "runs"),
    Exclusion(
        "grp3-reg1",
        "Capstone decodes F6 /1 and F7 /1 as TEST; the SDM leaves Group 3 /1 "
        "undefined and Unicorn raises #UD.",
        "SDM Vol. 2 Table A-6, Group 3",
        lambda o, c: o.status == Status.INVALID and o.opmap == 1
        and o.opcode in (0xF6, 0xF7) and o.reg == 1,
        ((32, "f6c812"), (16, "f7081234"), (32, "f70800000000")),
        "UD"),
    Exclusion(
        "mov-cs",
        "Capstone accepts MOV CS, r/m (8E /1).",
        "SDM Vol. 2 MOV: '#UD If attempt is made to load the CS register'",
        lambda o, c: o.status == Status.INVALID and _one(0x8E, o) and o.reg == 1,
        ((32, "8ec8"), (16, "8e08")),
        "UD"),
    Exclusion(
        "mov-crN",
        "Capstone accepts MOV to/from CR1, CR5, CR6, CR7.",
        "SDM Vol. 2 MOV-Move to/from Control Registers: #UD 'If an attempt "
        "is made to access CR1, CR5, CR6, or CR7'",
        lambda o, c: o.status == Status.INVALID and _two((0x20, 0x22), o)
        and o.reg in (1, 5, 6, 7),
        ((32, "0f20c8"), (32, "0f22e8"), (16, "0f20f0"), (32, "0f22f8")),
        "UD"),
    Exclusion(
        "grp7-later",
        "Capstone decodes the post-P6 0F 01 register forms (VMCALL, MONITOR, "
        "XGETBV, SWAPGS, RDTSCP, CLAC, ...) and F3 0F 01 /5 (RSTORSSP); on a "
        "P6 only SMSW/LMSW have register forms.  Unicorn's default CPU model "
        "is newer and executes some of them, so it cannot referee.",
        "SDM Vol. 2 Table A-6, Group 7 (P6-era edition: mod=11 reserved "
        "except /4 /6)",
        lambda o, c: o.status == Status.INVALID and _two((0x01,), o)
        and ((o.mod == 3 and o.reg not in (4, 6)) or o.reg == 5),
        ((32, "0f01c1"), (32, "0f01d0"), (16, "0f01f9"), (32, "f30f012800")),
        None),
    Exclusion(
        "grp9-later",
        "Capstone decodes RDRAND, RDSEED, RDPID, VMPTRLD, VMPTRST, VMCLEAR, "
        "VMXON, XSAVEC/XSAVES/XRSTORS in Group 9; a P6 has only CMPXCHG8B m64.",
        "SDM Vol. 2 Table A-6, Group 9",
        lambda o, c: o.status == Status.INVALID and _two((0xC7,), o),
        ((32, "0fc7f0"), (32, "0fc730"), (32, "660fc730"), (16, "0fc718")),
        None),
    Exclusion(
        "tsx",
        "Capstone decodes C6 F8 ib (XABORT) and C7 F8 (XBEGIN); on a P6 "
        "C6/C7 /7 are #UD.  Unicorn's model has RTM and executes them.",
        "SDM Vol. 2 Table A-6, Group 11",
        lambda o, c: o.status == Status.INVALID and o.opmap == 1
        and o.opcode in (0xC6, 0xC7) and o.modrm == 0xF8,
        ((32, "c6f801"), (32, "c7f800000000")),
        None),
    Exclusion(
        "vex",
        "Capstone decodes C4/C5 with mod=11 as VEX prefixes; on a P6 they are "
        "LES/LDS with a register operand: #UD.  Unicorn decodes VEX in "
        "protected mode (and raises #UD for C4/C5 mod=11 in real mode).",
        "SDM Vol. 2 LES/LDS: '#UD If source operand is not a memory location'",
        lambda o, c: o.status == Status.INVALID and o.opmap == 1
        and o.opcode in (0xC4, 0xC5) and o.mod == 3,
        ((32, "c5f810c0"), (32, "c4e37922c300")),
        None),
    Exclusion(
        "lock-reg-dest",
        "Capstone accepts LOCK on the r, r/m forms of ADD OR ADC SBB AND SUB "
        "XOR (02 03 0A 0B ...) whose destination is a register.",
        "SDM Vol. 2 LOCK: '#UD ... if the destination operand is not a "
        "memory operand'",
        lambda o, c: o.status == Status.INVALID and o.lock and o.opmap == 1
        and o.opcode in LOCK_REG_DEST,
        ((32, "f00200"), (32, "f00300"), (16, "f03300")),
        "UD"),
    Exclusion(
        "lock-then-rep",
        "When F0 comes before F2/F3, Capstone stops checking LOCK (it reads "
        "the pair as an XACQUIRE/XRELEASE hint) and accepts e.g. LOCK ADD AL, "
        "imm8 or LOCK NOP; Unicorn raises #UD for those.",
        "SDM Vol. 2 LOCK; 2.1.1 (XACQUIRE/XRELEASE need a lock-able "
        "memory-destination instruction)",
        lambda o, c: o.status == Status.INVALID and o.lock and c is not None
        and o.prefixes & 0x600,
        ((32, "f0f20400"), (16, "f0f30400"), (32, "f0f290")),
        "UD"),
    Exclusion(
        "lock-nop",
        "Capstone accepts LOCK NOP m (F0 0F 1F /0).  NOP is not lock-able; "
        "Unicorn (QEMU) does not check LOCK here and executes it.",
        "SDM Vol. 2 LOCK (list of lock-able instructions)",
        lambda o, c: o.status == Status.INVALID and o.lock
        and _two((0x1F,), o),
        ((32, "f00f1f00"),),
        "runs"),
    Exclusion(
        "hint-nops",
        "Capstone rejects most forms of the reserved-NOP space 0F 1A-1E (it "
        "only knows their MPX/CET meanings, and gives BNDLDX etc. 128-bit "
        "operands); the SDM reserves them as NOP and Unicorn executes every "
        "form as NOP.",
        "SDM Vol. 2 Table A-3 (0F 19-0F 1E 'Reserved-NOP'), NOP",
        lambda o, c: o.status == Status.OK and _two(range(0x19, 0x1F), o)
        and (c is None or c.mnemonic != "nop"),
        ((32, "0f1ac0"), (32, "0f1bc8"), (16, "0f1cc0"), (32, "0f1dc0"),
         (32, "0f1ec0")),
        "runs"),
    Exclusion(
        "getsec",
        "Capstone decodes 0F 37 (GETSEC, SMX); #UD on a P6.",
        "SDM Vol. 2 Table A-3",
        lambda o, c: o.status == Status.INVALID and _two((0x37,), o),
        ((32, "0f37"),),
        "UD"),
    Exclusion(
        "vmx-0f78",
        "Capstone decodes 0F 78/79 (VMREAD/VMWRITE, and EXTRQ/INSERTQ with "
        "66/F2).  VMX instructions are #UD outside VMX operation and a P6 has "
        "none of them.  Unicorn's model has SSE4a (66 0F 78 runs).",
        "SDM Vol. 3C 30.3 VMREAD: '#UD If not in VMX operation'",
        lambda o, c: o.status == Status.INVALID and _two((0x78, 0x79), o),
        ((32, "0f7800"), (32, "0f79c0")),
        "UD"),
    Exclusion(
        "padlock",
        "Capstone decodes 0F A6/A7 as VIA PadLock (MONTMUL, XSHA, XCRYPT); "
        "#UD on Intel (they held CMPXCHG on early 486 steppings only).",
        "SDM Vol. 2 Table A-3 (0F A6, 0F A7 blank)",
        lambda o, c: o.status == Status.INVALID and _two((0xA6, 0xA7), o),
        ((32, "0fa6c0"), (32, "0fa7c8")),
        "UD"),
    Exclusion(
        "ud1-modrm",
        "Capstone decodes UD1 (0F B9) without its ModRM byte.  It always "
        "raises #UD, so only the length reported for it differs.",
        "SDM Vol. 2 UD: '0F B9 /r UD1 r32, r/m32'",
        lambda o, c: _two((0xB9,), o) and c is not None
        and c.mnemonic == "ud1",
        ((32, "0fb9c0"), (16, "0fb90000")),
        "UD"),
    Exclusion(
        "mov-sreg-r16",
        "Capstone names the 32-bit register as the source of MOV Sreg, r "
        "in 32-bit code; the instruction reads only the 16-bit register.",
        "SDM Vol. 2 MOV: '8E /r MOV Sreg, r/m16'",
        lambda o, c: o.status == Status.OK and _one(0x8E, o) and o.mod == 3
        and c is not None,
        ((32, "8ed8"), (16, "668ec0")),
        None),
    Exclusion(
        "rep-0f-size16",
        "With an F2/F3 prefix on a 0F-map instruction (BT, SHLD, CMPXCHG, "
        "IMUL, CMOVcc, NOP Ev, ...) Capstone takes a 32-bit operand size "
        "whatever the mode and 66 say.  F2/F3 do not change the operand size; "
        "test_rep_prefix_keeps_operand_size_on_unicorn shows a 16-bit store.",
        "SDM Vol. 2 2.1.1 (F2/F3 apply to string instructions; otherwise "
        "reserved/ignored on a P6)",
        lambda o, c: o.status == Status.OK and c is not None and o.opmap == 2
        and o.prefixes & 0x600 and o.eff_opsize == 16,
        ((16, "f30fa310"), (16, "f20fb110"), (32, "66f30fa310")),
        None),
    Exclusion(
        "rep-mixed-0f",
        "Capstone rejects 0F-map instructions that carry F2/F3 together with "
        "67, or with 66 followed by a segment override (e.g. F2 67 0F AF /r, "
        "66 F2 26 0F AF /r); the prefixes are legal, change nothing for "
        "these instructions but the sizes, and Unicorn runs them.",
        "SDM Vol. 2 2.1.1 (one prefix from each group, in any order)",
        lambda o, c: o.status == Status.OK and c is None and o.opmap == 2
        and o.prefixes & 0x600 and o.prefixes & 0xFF,
        ((16, "f2670faf00"), (32, "f3670fb600"), (32, "66f2260faf00"),
         (32, "66f3260fa300")),
        "runs"),
    Exclusion(
        "f2-bsf",
        "Capstone rejects F2 0F BC/BD (it only knows F3 = TZCNT/LZCNT); on a "
        "P6 the F2 prefix is ignored and they are BSF/BSR, and Unicorn runs "
        "them.",
        "SDM Vol. 2 BSF, BSR; 2.1.1",
        lambda o, c: o.status == Status.OK and c is None
        and _two((0xBC, 0xBD), o) and o.prefixes & 0x200,
        ((32, "f20fbcc0"), (16, "f20fbd00")),
        "runs"),
    Exclusion(
        "pause-prefixes",
        "Capstone rejects PAUSE (F3 90) when a 66 or 67 prefix is also "
        "present; NOP/PAUSE ignore both and Unicorn executes them.",
        "SDM Vol. 2 PAUSE, NOP; 2.1.1 (prefixes that do not apply are "
        "ignored)",
        lambda o, c: o.status == Status.OK and c is None and _one(0x90, o)
        and o.prefixes & 0xC0 and o.prefixes & 0x600,
        ((32, "66f390"), (32, "6666f2f390"), (16, "67f390")),
        "runs"),
    Exclusion(
        "branch-target-size",
        "Capstone does not truncate relative branch targets by the operand "
        "size: with 66 in 32-bit code it keeps 32 bits (compare() masks its "
        "value, so that case needs no exclusion), with 66 in 16-bit code it "
        "cuts to 16 bits, and with 67 (an address-size prefix, irrelevant "
        "to EIP) it cuts to 16 bits.  The CPU sets EIP <- (EIP + rel) AND "
        "(2^operand-size - 1); test_branch_targets_match_unicorn executes "
        "such jumps.",
        "SDM Vol. 2 JMP: 'IF OperandSize = 16 THEN EIP <- tempEIP AND "
        "0000FFFFH'",
        lambda o, c: o.status == Status.OK and c is not None
        and o.flow in REL_FLOWS and o.prefixes & 0xC0,
        ((16, "66e980f0ff7f"), (32, "67e980f0ff7f")),
        None),
)


def known_difference(ours, cs):
    for exc in EXCLUSIONS:
        if exc.applies(ours, cs):
            return exc.key
    return None


# -------------------------------------------------------------- compare --

def compare(code, mode, address, ours=None, cs=None, exclusions=True):
    """Differences between our decode and Capstone's, as readable strings.

    Differences that an EXCLUSIONS entry explains are dropped unless
    `exclusions` is False.
    """
    if ours is None:
        ours = decode(code, address, mode)
        cs = cs_decode(code, mode, address)
    st_ = ours.status
    where = f"mode{mode} {code.hex()} @{address:#x}"
    if st_ == Status.TRUNCATED:
        if cs is None or (exclusions and known_difference(ours, cs)):
            return []
        return [f"{where}: TRUNCATED, capstone {cs.size}"]
    if st_ == Status.OK and cs is None:
        problem = f"{where}: OK ({ours!r}), capstone rejects"
    elif st_ in (Status.INVALID, Status.TOO_LONG) and cs is not None:
        problem = f"{where}: {st_.name}, capstone {cs.mnemonic} {cs.op_str}"
    elif st_ in OK_LIKE and cs is not None and cs.size != ours.length:
        problem = f"{where}: length {ours.length}, capstone {cs.size}"
    else:
        problem = None
    if problem:
        return [] if exclusions and known_difference(ours, cs) else [problem]
    if st_ != Status.OK or cs is None:
        return []
    out = _compare_fields(where, ours, cs, mode)
    return [] if out and exclusions and known_difference(ours, cs) else out


def _compare_fields(where, ours, cs, mode):
    out = []
    md = capstone(mode)
    e = ours.entry
    cops = list(cs.operands)
    # Operand size of the first operand.
    if e.operands and e.operands[0] in SIZED_FIRST and cops and \
            cops[0].type in (csx86.X86_OP_REG, csx86.X86_OP_MEM):
        if cops[0].size * 8 != ours.operands[0][2]:
            out.append(f"{where}: operand size {ours.operands[0][2]}, "
                       f"capstone {cops[0].size * 8}")
    # Register operands, position by position.
    for k, (typ, reg, _size) in enumerate(ours.operands):
        # x87 "F" is the ModRM operand only; Capstone also lists ST(0).
        if typ == "reg" and e.operands[k] != "F" and k < len(cops) and cops[k].type == csx86.X86_OP_REG:
            if md.reg_name(cops[k].reg) != reg:
                out.append(f"{where}: operand {k} {reg}, capstone "
                           f"{md.reg_name(cops[k].reg)}")
    # The ModRM / moffs memory operand.
    m = ours.mem
    if m is not None and not (e.attrs & (Attr.STRING | Attr.XLAT)):
        cmem = [o.mem for o in cops if o.type == csx86.X86_OP_MEM]
        if len(cmem) != 1:
            out.append(f"{where}: capstone has {len(cmem)} memory operands")
        else:
            c = cmem[0]
            cbase = md.reg_name(c.base) if c.base else None
            cindex = md.reg_name(c.index) if c.index else None
            cseg = md.reg_name(c.segment) if c.segment else None
            addr_bits = ours.addrsize
            mine = (m.base, m.index, m.scale if m.index else 1,
                    m.disp & mask(addr_bits), ours.segment)
            theirs = (cbase, cindex, c.scale if cindex else 1,
                      c.disp & mask(addr_bits), cseg)
            if mine != theirs:
                out.append(f"{where}: mem {mine}, capstone {theirs}")
    imms = [o.imm for o in cops if o.type == csx86.X86_OP_IMM]
    if ours.flow in REL_FLOWS:
        tmask = mask(ours.eff_opsize)
        if not any((i & tmask) == ours.target for i in imms):
            out.append(f"{where}: target {ours.target:#x}, capstone {imms}")
    elif ours.far_target is not None:
        sel, off = ours.far_target
        if sel not in imms or off not in imms:
            out.append(f"{where}: far {sel:#x}:{off:#x}, capstone {imms}")
    else:
        for value, size in ((ours.imm, ours.imm_size),
                            (ours.imm2, ours.imm2_size)):
            if not size:
                continue
            bits = ours.eff_opsize if e.attrs & Attr.SEXT else size * 8
            if not any((i - value) % (1 << bits) == 0 for i in imms):
                out.append(f"{where}: imm {value:#x}/{size}, capstone {imms}")
    return out


# ---------------------------------------------- every opcode x forms --

SEGS = (0x26, 0x2E, 0x36, 0x3E, 0x64, 0x65)
# The byte after ModRM is a SIB, a displacement or an immediate; cycling
# through these covers SIB base=5 (no base with mod=00), index=4 (none),
# every scale, and sign bits.
AFTER_MODRM = (0x00, 0x24, 0x25, 0x65, 0x8D, 0xE3, 0x5C, 0xFF, 0xA0, 0x1C)
TAIL = bytes.fromhex("80f0ff7f3412cdab0000")
PREFIX_SETS = (
    b"\x66", b"\x67", b"\xf3", b"\xf2", b"\xf0",
    b"\x26\x3e\x65",            # last segment wins
    b"\x66\x67\x2e\xf3",        # combination
    b"\x66\x66\xf2\xf3",        # repeats; last of F2/F3
)
ADDRESSES = {16: (0x1000, 0xFFF0), 32: (0x1000, 0x1FFF0, 0xFFFFFFF0)}


def _all_opcode_slots():
    for m, table in ((1, opcodes.ONE_BYTE), (2, opcodes.TWO_BYTE)):
        for b in range(256):
            if table[b].kind in (Kind.PREFIX, Kind.ESCAPE):
                continue
            yield pytest.param(m, b, id=f"{'0f' if m == 2 else ''}{b:02x}")


def _forms(m, b):
    """(code bytes) for one opcode: ModRM/SIB forms x prefix sets."""
    table = opcodes.ONE_BYTE if m == 1 else opcodes.TWO_BYTE
    e = table[b]
    head = bytes([b]) if m == 1 else bytes([0x0F, b])
    if e.kind == Kind.ESCAPE3:
        heads = [head + bytes([x]) for x in (0x00, 0x0F, 0xF0, 0xCC)]
    else:
        heads = [head]
    has_modrm = e.modrm or e.kind != Kind.INSN
    for h in heads:
        if not has_modrm:
            yield h + TAIL
            for i, p in enumerate(PREFIX_SETS):
                yield p + h + TAIL
            continue
        # No prefix: every ModRM byte (all mod/reg/rm combinations).
        for modrm in range(256):
            yield h + bytes([modrm, AFTER_MODRM[modrm % 10]]) + TAIL
        # With prefixes: every mod x rm, reg cycling, in 16- and 32-bit
        # addressing (67 flips it).
        for i, p in enumerate(PREFIX_SETS):
            for k, mod_rm in enumerate(range(0, 32)):
                mod, rm = mod_rm >> 3, mod_rm & 7
                reg = (k + i) % 8
                modrm = (mod << 6) | (reg << 3) | rm
                after = AFTER_MODRM[(k + i) % 10]
                yield p + h + bytes([modrm, after]) + TAIL
            for reg in range(8):
                yield p + h + bytes([0xC0 | (reg << 3) | (reg ^ i) & 7]) + TAIL


@pytest.mark.parametrize("m,b", list(_all_opcode_slots()))
def test_opcode_matches_capstone(m, b):
    problems = []
    for n, code in enumerate(_forms(m, b)):
        for mode in (16, 32):
            addrs = ADDRESSES[mode]
            problems += compare(code, mode, addrs[n % len(addrs)])
    assert not problems, f"{len(problems)} differences:\n" + "\n".join(
        problems[:15])


def test_opcode_sweep_exercises_every_status():
    """The sweep above meets OK, INVALID and UNSUPPORTED slots in both maps
    (so it is not vacuously passing on one kind)."""
    seen = {(m, s) for m, _b, _slot, e in opcodes.entries()
            for s in [e.status]}
    for m in (1, 2):
        assert (m, Status.OK) in seen and (m, Status.INVALID) in seen
    assert (2, Status.UNSUPPORTED) in seen


# ---------------------------------------------------------- exclusions --

@pytest.mark.parametrize("exc", EXCLUSIONS, ids=lambda e: e.key)
def test_exclusion_is_real_and_refereed(exc):
    """Each exclusion still describes a Capstone disagreement, matches its
    own samples, and Unicorn does what the exclusion says it does."""
    for mode, hexcode in exc.samples:
        code = bytes.fromhex(hexcode)
        ours = decode(code + TAIL, 0x1000, mode)
        cs = cs_decode(code + TAIL, mode, 0x1000)
        assert compare(code + TAIL, mode, 0x1000, exclusions=False), \
            f"{exc.key}: capstone now agrees on {hexcode}; drop the exclusion"
        assert exc.applies(ours, cs), f"{exc.key} does not match {hexcode}"
        if exc.unicorn is not None:
            assert unicorn_outcome(code, mode) == exc.unicorn, \
                f"{exc.key}: Unicorn no longer {exc.unicorn} on {hexcode}"


@pytest.mark.parametrize("mode,hexcode,expected", [
    (32, "d6", "runs"),          # SALC: decoded as OK
    (32, "d0f0", "runs"),        # SAL alias /6: OK
    (32, "0f1f00", "runs"),      # NOP Ev
    (32, "dfc0", "runs"),        # FFREEP alias
    (32, "8fc8", "runs"),        # 8F /1: we say #UD (SDM); QEMU ignores reg
    (32, "f087c0", "runs"),      # LOCK XCHG reg,reg: #UD per SDM; QEMU runs
    (32, "d9d1", "UD"),          # x87 blank cell
    (32, "0f0b", "UD"),          # UD2
    (16, "c5c0", "UD"),          # LDS reg form in real mode
])
def test_unicorn_referee_cases(mode, hexcode, expected):
    """What Unicorn does with encodings whose status we chose deliberately;
    docs/decoder.md lists where Unicorn itself departs from the SDM."""
    assert unicorn_outcome(bytes.fromhex(hexcode), mode) == expected


def _run_unicorn(code, mode, eip, regs=None, mem=None, pages=()):
    """Run one instruction at `eip` (flat, CS base 0); return the engine."""
    uc = Uc(UC_ARCH_X86, UC_MODE_32 if mode == 32 else UC_MODE_16)
    for page in {eip & ~0xFFF, 0x0, *pages}:
        uc.mem_map(page, 0x1000)
    uc.mem_write(eip, code)
    for reg, value in (regs or {}).items():
        uc.reg_write(reg, value)
    for addr, data in (mem or {}).items():
        uc.mem_write(addr, data)
    uc.emu_start(eip, eip + 0x100, count=1)
    return uc


@pytest.mark.parametrize("mode,eip,hexcode", [
    (32, 0x1FFF0, "66e9f0ff"),        # 16-bit opsize: EIP wraps to 16 bits
    (32, 0x1FFF0, "66eb20"),
    (32, 0xFFFFFFF0, "e920000000"),   # 32-bit wrap at 4 GiB
    (32, 0xFFFFF010, "67e980f0ff7f"),  # 67 does not truncate EIP
    (16, 0xFFF0, "e92000"),           # IP wraps at 64 KiB
    (16, 0x0010, "eb80"),             # backwards through 0
])
def test_branch_targets_match_unicorn(mode, eip, hexcode):
    code = bytes.fromhex(hexcode)
    ours = decode(code, eip, mode)
    page = ours.target & ~0xFFF
    uc = _run_unicorn(code, mode, eip, pages=[page, (page + 0x1000) & 0xFFFFFFFF])
    assert ours.target == uc.reg_read(UC_X86_REG_EIP)


def test_rep_prefix_keeps_operand_size_on_unicorn():
    """F3 0F B1 /r in 16-bit code is CMPXCHG r/m16, r16: a 16-bit store."""
    code = bytes.fromhex("f30fb117")     # cmpxchg [bx], dx
    ours = decode(code, 0x1000, 16)
    assert ours.ok and ours.operands[0][2] == 16
    uc = _run_unicorn(code, 16, 0x1000,
                      regs={UC_X86_REG_EBX: 0x200, UC_X86_REG_EAX: 0,
                            UC_X86_REG_EDX: 0xFFFFFFFF},
                      mem={0x200: b"\x00\x00\x00\x00"})
    assert uc.mem_read(0x200, 4) == b"\xff\xff\x00\x00"


# ------------------------------------------------------ stage by stage --

# 16-bit ModRM memory forms: rm -> (base, index, default segment).
FORMS16 = {0: ("bx", "si", "ds"), 1: ("bx", "di", "ds"), 2: ("bp", "si", "ss"),
           3: ("bp", "di", "ss"), 4: ("si", None, "ds"), 5: ("di", None, "ds"),
           6: ("bp", None, "ss"), 7: ("bx", None, "ds")}


@pytest.mark.parametrize("mode,prefix", [(16, b""), (32, b"\x67")])
def test_16bit_addressing_forms(mode, prefix):
    for mod in range(3):
        for rm in range(8):
            code = prefix + bytes([0x8B, (mod << 6) | (2 << 3) | rm]) + \
                bytes.fromhex("fe80ffff")
            ins = decode(code, 0, mode)
            m = ins.mem
            assert ins.addrsize == 16 and ins.reg == 2 and ins.sib is None
            if mod == 0 and rm == 6:
                # [disp16]: absolute, DS, zero-extended
                assert (m.base, m.index, m.segment) == (None, None, "ds")
                assert (m.disp, m.disp_size) == (0x80FE, 2)
            else:
                base, index, seg = FORMS16[rm]
                assert (m.base, m.index, m.segment) == (base, index, seg)
                assert m.disp_size == (0, 1, 2)[mod]
                assert m.disp == (0, -2, -0x7F02)[mod]
            assert ins.length == len(prefix) + 2 + m.disp_size
            if m.disp_size:
                assert m.disp_offset == len(prefix) + 2


def test_32bit_sib_forms():
    cases = {
        # modrm sib rest -> (base, index, scale, disp, disp_size, segment)
        "04 24": ("esp", None, 1, 0, 0, "ss"),           # [esp]
        "04 25 78563412": (None, None, 1, 0x12345678, 4, "ds"),  # no base
        "44 25 f0": ("ebp", None, 1, -16, 1, "ss"),       # base ebp, mod 01
        "04 8d 00000080": (None, "ecx", 4, -0x80000000, 4, "ds"),
        "84 c3 10000000": ("ebx", "eax", 8, 0x10, 4, "ds"),
        "04 65 00000000": (None, None, 1, 0, 4, "ds"),   # index 4 = none
        "05 00100000": (None, None, 1, 0x1000, 4, "ds"),  # [disp32]
        "45 00": ("ebp", None, 1, 0, 1, "ss"),
        "0c 6c": ("esp", "ebp", 2, 0, 0, "ss"),           # base esp => SS
        "0c 2c": ("esp", "ebp", 1, 0, 0, "ss"),
        "0c 2e": ("esi", "ebp", 1, 0, 0, "ds"),          # index ebp: DS
    }
    for text, (base, index, scale, disp, dsize, seg) in cases.items():
        code = bytes.fromhex("8b" + text.replace(" ", ""))
        ins = decode(code, 0, 32)
        m = ins.mem
        assert ins.ok and ins.length == len(code), text
        got = (m.base, m.index, m.scale if m.index else 1, m.disp,
               m.disp_size, m.segment)
        assert got == (base, index, scale, disp, dsize, seg), text


def test_prefix_rules():
    ins = decode(bytes.fromhex("26 2e 36 8b 00".replace(" ", "")), 0, 32)
    assert ins.segment == "ss" and ins.mem.segment == "ss"   # last wins
    assert ins.nprefixes == 3 and ins.prefixes == 0x007
    ins = decode(bytes.fromhex("6666 8b00".replace(" ", "")), 0, 32)
    assert ins.eff_opsize == 16 and ins.opsize == 16          # no toggle back
    ins = decode(bytes.fromhex("f2f3a6"), 0, 32)
    assert ins.rep == "rep" and ins.repable
    ins = decode(bytes.fromhex("f3f2a6"), 0, 16)
    assert ins.rep == "repne" and ins.addrsize == 16
    ins = decode(bytes.fromhex("3e8b45fc"), 0, 32)
    assert ins.mem.segment == "ds" and ins.segment == "ds"   # override SS
    ins = decode(bytes.fromhex("8b45fc"), 0, 32)
    assert ins.mem.segment == "ss" and ins.segment is None
    ins = decode(bytes.fromhex("67a13412"), 0, 32)           # moffs16
    assert ins.length == 4 and ins.mem.disp == 0x1234 and ins.opsize == 32
    ins = decode(bytes.fromhex("66a1785634120000"), 0, 16)   # moffs16, o32
    assert ins.length == 4 and ins.mem.disp == 0x5678 and ins.opsize == 32
    ins = decode(bytes.fromhex("f3a4"), 0, 32)
    assert ins.is_string and ins.mem is None
    ins = decode(bytes.fromhex("2ed7"), 0, 32)
    assert ins.mem is None and ins.segment == "cs"


@pytest.mark.parametrize("hexcode,ok", [
    ("f00000", True),            # lock add [eax], al
    ("f00fb108", True),          # lock cmpxchg [eax], ecx
    ("f00fc708", True),          # lock cmpxchg8b [eax]
    ("f0860b", True),            # lock xchg [ebx], cl
    ("f0f610", True),            # lock not byte [eax]
    ("f00fbb00", True),          # lock btc
    ("f00fba2801", True),        # lock bts [eax], 1
    ("f000c0", False),           # register destination
    ("f00200", False),           # add r8, r/m8: destination register
    ("f08b00", False),           # mov is not lock-able
    ("f03800", False),           # cmp is not lock-able
    ("f00fa300", False),         # bt only reads
    ("f00fba2001", False),       # bt Ev,Ib
    ("f0ff30", False),           # push
    ("f090", False),
    ("f0f600ff", False),         # test
    ("f087c0", False),           # xchg reg, reg
])
def test_lock_validity(hexcode, ok):
    ins = decode(bytes.fromhex(hexcode), 0, 32)
    assert (ins.status == Status.OK) is ok, ins
    if ok:
        assert ins.lock and ins.lockable


def test_fifteen_byte_limit():
    nop14 = b"\x26" * 14 + b"\x90"
    assert decode(nop14).length == 15 and decode(nop14).ok
    assert decode(b"\x26" * 15 + b"\x90").status == Status.TOO_LONG
    # Known to exceed 15 before the buffer ends: #GP, not "fetch more".
    code = b"\x26" * 11 + b"\x05\x11"            # add eax, imm32 needs 16
    assert decode(code).status == Status.TOO_LONG
    # Could still fit: truncated.
    code = b"\x26" * 10 + b"\x05\x11"
    assert decode(code).status == Status.TRUNCATED
    # A displacement plus an immediate push it over.
    code = b"\x26" * 6 + bytes.fromhex("c7800000000000000000")
    assert decode(code).status == Status.TOO_LONG
    assert decode(code[1:]).ok and decode(code[1:]).length == 15


@pytest.mark.parametrize("hexcode,mode", [
    ("2e66670f019000000000", 16), ("c784241122334455667788", 32),
    ("9a11223344", 16),
    ("66ea112233445566", 16), ("c8112233", 32), ("0f8411223344", 32),
    ("f3a5", 32), ("0f3a0fc001", 32), ("d9e0", 16), ("0fba2001", 32),
])
def test_every_short_buffer_is_truncated(hexcode, mode):
    code = bytes.fromhex(hexcode)
    full = decode(code, 0, mode)
    assert full.length == len(code) and full.status in OK_LIKE
    for n in range(len(code)):
        assert decode(code[:n], 0, mode).status == Status.TRUNCATED, n
    assert decode(code + b"\x90\xcc", 0, mode).length == len(code)


def test_immediate_offsets_and_values():
    ins = decode(bytes.fromhex("66c7842411223344aabb"), 0, 32)  # mov word
    assert ins.imm == 0xBBAA and ins.imm_size == 2 and ins.imm_offset == 8
    assert ins.mem.disp == 0x44332211 and ins.mem.disp_offset == 4
    ins = decode(bytes.fromhex("83c0ff"), 0, 32)
    assert ins.imm == 0xFFFFFFFF and ins.imm_size == 1       # sign-extended
    ins = decode(bytes.fromhex("6a80"), 0, 16)
    assert ins.imm == 0xFF80 and ins.uses_stack
    ins = decode(bytes.fromhex("80c0ff"), 0, 32)
    assert ins.imm == 0xFF and ins.opsize == 8
    ins = decode(bytes.fromhex("c8100203"), 0, 32)             # enter
    assert (ins.imm, ins.imm2, ins.imm_offset, ins.imm2_offset) == \
        (0x0210, 3, 1, 3)
    ins = decode(bytes.fromhex("ea785634122301"), 0, 32)
    assert ins.far_target == (0x0123, 0x12345678) and ins.length == 7
    assert ins.flow == Flow.JMPF and ins.sensitive == Sens.FAR_FLOW
    ins = decode(bytes.fromhex("9a34122301"), 0, 16)
    assert ins.far_target == (0x0123, 0x1234) and ins.flow == Flow.CALLF
    ins = decode(bytes.fromhex("66ea341223010000"), 0, 16)
    assert ins.length == 8 and ins.far_target == (0, 0x01231234)
    ins = decode(bytes.fromhex("c20800"), 0, 32)
    assert ins.flow == Flow.RET and ins.imm == 8
    ins = decode(bytes.fromhex("e2fe"), 0x500, 32)
    assert ins.flow == Flow.LOOP and ins.target == 0x500 and ins.rel == -2
    ins = decode(bytes.fromhex("67e3fe"), 0x500, 32)
    assert ins.flow == Flow.JCXZ and ins.mnemonic == "jcxz"
    assert decode(bytes.fromhex("e3fe"), 0, 32).mnemonic == "jecxz"


def test_register_operands_and_reg_only_forms():
    ins = decode(bytes.fromhex("0f2218"), 0, 32)     # mov cr3, eax; mod=00
    assert ins.ok and ins.length == 3 and ins.mem is None
    assert ins.operands == (("reg", "cr3", 32), ("reg", "eax", 32))
    assert ins.privileged and ins.sensitive == Sens.SYSREG
    ins = decode(bytes.fromhex("0f2304"), 0, 32)     # mov dr0, esp; no SIB
    assert ins.length == 3 and ins.operands[1] == ("reg", "esp", 32)
    ins = decode(bytes.fromhex("8cd8"), 0, 32)
    assert ins.operands == (("reg", "eax", 32), ("reg", "ds", 16))
    ins = decode(bytes.fromhex("8c18"), 0, 32)
    assert ins.operands[0] == ("mem", None, 16)
    assert decode(bytes.fromhex("8ef8"), 0, 32).status == Status.INVALID
    assert decode(bytes.fromhex("8cf8"), 0, 32).status == Status.INVALID
    ins = decode(bytes.fromhex("0fb6c3"), 0, 16)
    assert ins.operands == (("reg", "ax", 16), ("reg", "bl", 8))


@pytest.mark.parametrize("hexcode,mode", [
    ("8dc0", 32), ("c4c0", 16), ("62c0", 32), ("ffd8", 32), ("ffe8", 32),
    ("fff8", 32), ("fe10", 32), ("8f08", 32), ("c6c800", 32), ("c70800", 32),
    ("0f00300000", 32), ("0f01c0", 32), ("0f0128", 32), ("0fc7c8", 32),
    ("0fba0001", 32), ("0f20c8", 32), ("0fb2c0", 32), ("d908", 32),
    ("dde0" if False else "ddf0", 32), ("0f24c0", 32), ("0f04", 32),
])
def test_undefined_encodings_are_invalid(hexcode, mode):
    assert decode(bytes.fromhex(hexcode) + b"\x00" * 6, 0, mode).status \
        == Status.INVALID


def test_x87_lengths_follow_modrm():
    for esc in range(0xD8, 0xE0):
        for modrm in range(256):
            code = bytes([esc, modrm]) + b"\x11\x22\x33\x44\x55\x66"
            for mode in (16, 32):
                ins = decode(code, 0, mode)
                if modrm >= 0xC0 and modrm in opcodes.X87_REG_INVALID[esc]:
                    assert ins.status == Status.INVALID
                    continue
                if ins.status == Status.INVALID:     # reserved memory slot
                    assert modrm < 0xC0
                    continue
                mem = ins.mem
                expect = 2 + (mem.disp_size if mem else 0) + (
                    1 if ins.sib is not None else 0)
                assert ins.length == expect
                if ins.ok:
                    assert ins.sensitive == Sens.IDENT and ins.flow == Flow.NONE


def test_unsupported_keeps_length():
    for hexcode, length in (("0f70c001", 4), ("660f6f0424", 5), ("0f77", 2),
                            ("0f3800c0", 4), ("0f0fc00c", 4), ("0fae00", 3),
                            ("f30fb8c0", 4), ("0f05", 2)):
        ins = decode(bytes.fromhex(hexcode) + b"\x90", 0, 32)
        assert ins.status == Status.UNSUPPORTED and ins.length == length


def test_decode_all_and_scan():
    code = bytes.fromhex("5589e583ec08e8fcffffffc9c3")
    names = [i.mnemonic for i in decode_all(code, 0x400000, 32)]
    assert names == ["push", "mov", "sub", "call", "leave", "ret"]
    last = list(decode_all(code + b"\x0f", 0, 32))[-1]
    assert last.status == Status.TRUNCATED
    assert scan(code, 32) == (6, 0)
    assert scan(b"\x0f\x04\x90", 32) == (1, 1)     # 0F 04 #UD; 04 90 = add
    with pytest.raises(ValueError):
        decode(b"\x90", 0, 64)


def test_c_api_is_exported():
    # Other Cython modules cimport decode_insn through decoder.pxd.
    assert "decode_insn" in decoder.__pyx_capi__


# ---------------------------------------------------------- fuzzing --

_PREFIX_BYTES = sorted(opcodes.PREFIXES)
instruction_bytes = st.one_of(
    st.binary(min_size=1, max_size=16),
    st.builds(lambda p, o, t: bytes(p) + o + t,
              st.lists(st.sampled_from(_PREFIX_BYTES), max_size=4),
              st.one_of(st.integers(0, 255).map(lambda b: bytes([b])),
                        st.integers(0, 255).map(lambda b: bytes([0x0F, b]))),
              st.binary(min_size=0, max_size=12)),
)


def _check_random(code, mode, address):
    ours = decode(code, address, mode)
    problems = compare(code, mode, address, ours, cs_decode(code, mode, address))
    assert not problems, problems
    if ours.status in OK_LIKE:
        # Trailing bytes never matter; every shorter buffer is TRUNCATED.
        again = decode(code[:ours.length], address, mode)
        assert (again.status, again.length) == (ours.status, ours.length)
        cut = decode(code[:ours.length - 1], address, mode)
        assert cut.status == Status.TRUNCATED


_FUZZ = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])


@settings(max_examples=400, **_FUZZ)
@given(code=instruction_bytes, mode=st.sampled_from([16, 32]),
       address=st.integers(0, 0xFFFF))
def test_random_bytes_match_capstone(code, mode, address):
    _check_random(code, mode, address if mode == 16 else address << 12)


@pytest.mark.long
@settings(max_examples=50000, **_FUZZ)
@given(code=instruction_bytes, mode=st.sampled_from([16, 32]),
       address=st.integers(0, 0xFFFF))
def test_random_bytes_match_capstone_long(code, mode, address):
    _check_random(code, mode, address if mode == 16 else address << 12)


@pytest.mark.long
def test_decode_rate(capsys):
    """Benchmark of the C API (docs/decoder.md quotes its output):
    python -m pytest tests/test_decoder.py -m long -k decode_rate -s"""
    import random
    rng = random.Random(86)
    # A corpus of valid instructions drawn from the table's OK slots.
    pieces = []
    while len(pieces) < 200000:
        code = bytes(rng.randrange(256) for _ in range(12))
        ins = decode(code, 0, 32)
        if ins.ok:
            pieces.append(code[:ins.length])
    corpus = b"".join(pieces)
    good, bad = scan(corpus, 32)
    assert bad == 0 and good == len(pieces)
    best = min(_timed(lambda: scan(corpus, 32, 5)) / 5 for _ in range(3))
    rate = good / best
    with capsys.disabled():
        print(f"\ndecode_insn: {good} insns, {len(corpus)} bytes in "
              f"{best * 1e3:.1f} ms: {rate / 1e6:.1f} M insns/s")
    assert rate > 1e6


def _timed(fn):
    import time
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t
