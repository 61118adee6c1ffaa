"""The x86 opcode table of hybrid86: one-byte map and 0F two-byte map.

This module is THE table.  The Cython decoder (``bt/decoder.pyx``) flattens it
into C arrays when it is imported, the translator reads its classes from the
decoded instruction, and the tests derive their opcode lists and the
sensitive-instruction pins from it.  Nothing else in ``bt/`` may encode
opcode facts.

The target CPU is a P6 (Pentium Pro / Pentium II) running 16- or 32-bit code:
386..P6 integer instructions, x87, and the P6 system instructions.  Encodings
that appeared later (MMX, SSE.., 3DNow!, VMX, SMX, RDRAND, TSX, the 0F 01
register forms such as VMCALL or RDTSCP) are either UNSUPPORTED (a real
instruction on some CPU; length is still decoded) or INVALID (#UD on a P6).

Legend: operand codes (Intel SDM Vol. 2, Appendix A.2)
-------------------------------------------------------
Addressing method (first letter):

  A  direct far address ptr16:16 / ptr16:32 in the instruction (no ModRM):
     an offset of operand size followed by a 16-bit selector.
  C  ModRM.reg selects a control register (CR0..CR7).
  D  ModRM.reg selects a debug register (DR0..DR7).
  E  ModRM r/m: a general register or a memory operand.
  F  x87 ModRM: memory operand, or ST(i) when mod=11 (this table's own code).
  G  ModRM.reg selects a general register.
  I  immediate data.
  J  relative offset added to EIP of the next instruction (a branch).
  M  ModRM r/m that must be memory; mod=11 is #UD.
  O  memory offset (moffs) of address size, no ModRM, no base or index.
  R  ModRM r/m selects a general register; the mod bits are IGNORED (SDM:
     MOV to/from CRn/DRn "the 2 bits in the mod field are ignored"), so these
     instructions never have a SIB or displacement.
  S  ModRM.reg selects a segment register (ES CS SS DS FS GS; 6, 7 are #UD).
  X  string source DS:[eSI] (segment overridable, eSI or SI by address size).
  Y  string destination ES:[eDI] (never overridable).
  Z  general register in the low 3 bits of the opcode byte (AMD's notation;
     the SDM writes e.g. "rAX/r8").

Operand size (second letter):

  b  byte                 w  word              d  doubleword
  q  quadword             s  6-byte pseudo-descriptor (16-bit limit + base)
  v  word or doubleword by the effective operand size
  z  word for 16-bit operand size, doubleword for 32-bit (as v outside
     64-bit mode; used for immediates and for INS/OUTS)
  p  32- or 48-bit far pointer (offset of operand size + 16-bit selector)
  a  two words or two doublewords in memory (BOUND)
  Rv/Mw  a register of operand size, or a 16-bit word in memory (SDM
     notation for SLDT, STR, SMSW and MOV r/m,Sreg: stores to memory are
     always 16 bits, a register destination gets the full operand size)
  bs byte, sign-extended to the operand size (SDM footnote "Ib, sign-extended";
     this table's code, so the decoder knows which Ib to sign-extend)

Fixed operands are written by name: AL, CL, DX, eAX (AX or EAX by operand
size), ES CS SS DS FS GS (push/pop sreg), and 1 (the constant shift count).
"M" alone is a memory operand whose size does not matter (LEA, INVLPG).

Immediate kinds (derived from the operand codes)
------------------------------------------------
  NONE, IB (1 byte), IW (2), IZ (2 or 4 by operand size), JB (rel8), JZ (rel16
  or rel32 by operand size), AP (offset of operand size, then selector16),
  MOFFS (offset of *address* size, stored as the memory displacement),
  IW_IB (ENTER: size16 then level8).

Translator classes
------------------
``Flow``: how the instruction ends a translation unit (NONE: falls through).
``Sens``: the callout class; IDENT means "copy unchanged".
``Priv``: CPL0 needs CPL 0 (else #GP), IOPL is IOPL-sensitive (CLI/STI,
  IN/OUT/INS/OUTS, and in V86 mode PUSHF/POPF/INT n/IRET), CR4 depends on a
CR4 bit (RDTSC: TSD, RDPMC: PCE).
``Attr``: implicit facts (stack use, string, lock-able, rep-able, ...).

Entry status
------------
OK: defined on a P6.  INVALID: #UD on a P6 (undefined group slots, C6/C7
/1-/7, FE /2-/7, 8F /1-/7, memory-only forms with mod=11, F6/F7 /1, ...).
UNSUPPORTED: a real instruction of a later or other vendor's CPU that this
decoder does not model (MMX, SSE, 3DNow!, FXSAVE group, POPCNT, SYSCALL /
SYSRET which are AMD-only in legacy mode, FISTTP).  Its length is decoded.
"""

from collections import namedtuple
from enum import IntEnum


class Status(IntEnum):
    """Outcome of decoding one instruction."""
    OK = 0           # a defined P6 instruction, every field valid
    INVALID = 1      # #UD on a P6
    TRUNCATED = 2    # the buffer ended before the instruction did: fetch more
    TOO_LONG = 3     # longer than 15 bytes: #GP(0)
    UNSUPPORTED = 4  # real but unmodelled (MMX/SSE/...); length is valid


class Flow(IntEnum):
    """Control transfer: anything but NONE ends a translation unit."""
    NONE = 0
    JCC = 1          # Jcc rel8/rel16/rel32
    JMP = 2          # JMP rel
    CALL = 3         # CALL rel (pushes return address)
    RET = 4          # near RET, with or without imm16 (the imm says which)
    JMP_IND = 5      # JMP r/m
    CALL_IND = 6     # CALL r/m
    JMPF = 7         # JMP ptr16:16/32
    JMPF_IND = 8     # JMP m16:16/32
    CALLF = 9        # CALL ptr16:16/32
    CALLF_IND = 10   # CALL m16:16/32
    RETF = 11        # far RET, with or without imm16
    IRET = 12
    INT = 13         # INT n, INT1 (ICEBP)
    INT3 = 14
    INTO = 15
    LOOP = 16        # LOOP, LOOPE, LOOPNE (count in CX/ECX by address size)
    JCXZ = 17        # JCXZ/JECXZ (by address size)
    HLT = 18
    UD = 19          # always #UD: UD2, UD1, UD0, RSM outside SMM
    SYS = 20         # SYSENTER, SYSEXIT


class Sens(IntEnum):
    """Sensitive-instruction class: what callout the translator emits."""
    IDENT = 0        # harmless: copy unchanged
    SEG_LOAD = 1     # MOV Sreg, POP Sreg, LDS LES LFS LGS LSS
    SEG_READ = 2     # MOV r/m,Sreg; PUSH Sreg (reveal selector RPL)
    FLAGS = 3        # PUSHF POPF CLI STI (reveal/alter IF, IOPL)
    IO = 4           # IN OUT INS OUTS
    SYSREG = 5       # descriptor tables, MSW, CRn, DRn, LAR LSL VERR VERW, CLTS
    CACHE_TLB = 6    # INVD WBINVD INVLPG
    MSR = 7          # RDMSR WRMSR
    CPUID = 8
    RDTSC = 9
    SYSCALL = 10     # SYSENTER SYSEXIT
    HLT = 11
    INT = 12         # INT n, INT3, INTO, INT1
    IRET = 13
    FAR_FLOW = 14    # far JMP/CALL/RET (direct and indirect)
    RDPMC = 15       # performance counters (CR4.PCE)


class Priv(IntEnum):
    """Privilege requirement (SDM "Protected Mode Exceptions")."""
    NONE = 0
    CPL0 = 1         # #GP(0) unless CPL = 0
    IOPL = 2         # needs CPL <= IOPL (or IOPL 3 in V86 mode), else #GP
    CR4 = 3          # allowed at CPL>0 only when a CR4 bit says so


class Imm(IntEnum):
    NONE = 0
    IB = 1
    IW = 2
    IZ = 3
    JB = 4
    JZ = 5
    AP = 6
    MOFFS = 7
    IW_IB = 8


class Attr:
    """Bit flags of implicit instruction facts."""
    STACK = 0x0001      # reads/writes SS:[eSP] implicitly
    STRING = 0x0002     # string instruction (count in eCX when repeated)
    STR_SRC = 0x0004    # reads DS:[eSI] (segment overridable)
    STR_DST = 0x0008    # writes/reads ES:[eDI] (ES cannot be overridden)
    LOCK = 0x0010       # LOCK allowed when the destination is memory
    REP = 0x0020        # F3 = REP (MOVS STOS LODS INS OUTS)
    REPZ = 0x0040       # F3 = REPE, F2 = REPNE (CMPS SCAS)
    MEM_ONLY = 0x0080   # mod=11 is #UD
    REG_ONLY = 0x0100   # mod bits ignored, r/m is a register (MOV CRn/DRn)
    BYTE = 0x0200       # byte operation: operand size reported as 8
    XLAT = 0x0400       # reads DS:[eBX+AL] (segment overridable)
    ADDR_NAME = 0x0800  # 16/32 mnemonic picked by address size (JCXZ/JECXZ)
    COND = 0x1000       # condition-code instruction (Jcc, SETcc, CMOVcc)
    SEXT = 0x2000       # the byte immediate is sign-extended (Ibs)


class Kind(IntEnum):
    """What a table slot is, for the decoder's opcode stage."""
    INSN = 0        # an instruction (status OK, INVALID or UNSUPPORTED)
    GROUP = 1       # ModRM.reg (and mod=11 or not) selects a sub-entry
    PREFIX = 2      # a legacy prefix byte
    ESCAPE = 3      # 0F: the two-byte map follows
    ESCAPE3 = 4     # 0F 38 / 0F 3A: three-byte maps, all UNSUPPORTED
    X87 = 5         # D8-DF: group by ModRM, mod=11 forms checked per byte


# Operand codes the decoder knows, in the order of their C enum values.
OPERAND_CODES = (
    "", "Eb", "Ew", "Ed", "Ev", "Gb", "Gw", "Gv", "Ib", "Ibs", "Iw", "Iz",
    "Jb", "Jz", "Sw", "M", "Ma", "Mp", "Mq", "Ms", "Ap", "Ob", "Ov",
    "Xb", "Xv", "Yb", "Yv", "Xz", "Yz", "Rd", "Cd", "Dd", "Zb", "Zv",
    "AL", "CL", "DX", "eAX", "1", "ES", "CS", "SS", "DS", "FS", "GS", "F",
    "Rv/Mw",
)

_MODRM_METHODS = "EGMSCDRF"
_IMM_OF = {"Ib": Imm.IB, "Ibs": Imm.IB, "Iw": Imm.IW, "Iz": Imm.IZ,
           "Jb": Imm.JB, "Jz": Imm.JZ, "Ap": Imm.AP,
           "Ob": Imm.MOFFS, "Ov": Imm.MOFFS}


Op = namedtuple("Op", "mnemonic operands modrm imm flow sens priv attrs "
                      "reg_ok status kind sub")
Op.__doc__ = """One table slot.

mnemonic  name; "a/b" = 16-bit / 32-bit operand-size names (ADDR_NAME: by
          address size)
operands  tuple of operand codes from OPERAND_CODES
modrm     True when a ModRM byte follows the opcode
imm       Imm kind of the immediate / offset bytes after ModRM, SIB, disp
flow, sens, priv, attrs   the translator-facing facts
reg_ok    bit mask of ModRM.reg values that are defined (others #UD)
status    Status.OK, INVALID or UNSUPPORTED (for Kind.INSN)
kind      Kind
sub       for GROUP/X87: 16 sub-entries, [0..7] for mod!=11 by reg,
          [8..15] for mod=11 by reg
"""


def _imm_kind(operands):
    if operands == ("Iw", "Ib"):
        return Imm.IW_IB
    kinds = [_IMM_OF[o] for o in operands if o in _IMM_OF]
    assert len(kinds) <= 1, operands
    return kinds[0] if kinds else Imm.NONE


def op(mnemonic, operands="", flow=Flow.NONE, sens=Sens.IDENT,
       priv=Priv.NONE, attrs=0, reg_ok=0xFF):
    """A defined instruction; ModRM and immediate follow from its operands."""
    ops = tuple(o for o in operands.split(",") if o)
    for o in ops:
        assert o in OPERAND_CODES, (mnemonic, o)
    modrm = any(o[0] in _MODRM_METHODS for o in ops if o not in ("CS", "DS",
                                                                 "SS", "ES",
                                                                 "FS", "GS",
                                                                 "DX", "CL"))
    if ops and ops[0] in ("Eb", "Gb", "AL", "Zb", "Xb", "Yb", "Ob"):
        attrs |= Attr.BYTE
    if ops and ops[0] == "DX" and len(ops) > 1 and ops[1] == "Xb":
        attrs |= Attr.BYTE                  # OUTSB
    if ops and ops[0] == "Ib" and len(ops) > 1 and ops[1] == "AL":
        attrs |= Attr.BYTE                  # OUT Ib,AL
    if ops and ops[0] == "DX" and len(ops) > 1 and ops[1] == "AL":
        attrs |= Attr.BYTE                  # OUT DX,AL
    if "Ibs" in ops:
        attrs |= Attr.SEXT
    if any(o in ("M", "Ma", "Mp", "Mq", "Ms") for o in ops):
        attrs |= Attr.MEM_ONLY
    if "Rd" in ops:
        attrs |= Attr.REG_ONLY
    return Op(mnemonic, ops, modrm, _imm_kind(ops), flow, sens, priv, attrs,
              reg_ok, Status.OK, Kind.INSN, None)


def bad(modrm=False):
    """An undefined encoding: #UD on a P6."""
    return Op("(bad)", (), modrm, Imm.NONE, Flow.NONE, Sens.IDENT, Priv.NONE,
              0, 0xFF, Status.INVALID, Kind.INSN, None)


def unsup(mnemonic, modrm=True, imm=Imm.NONE):
    """A real instruction outside the P6 integer/x87 set; length decoded."""
    return Op(mnemonic, (), modrm, imm, Flow.NONE, Sens.IDENT, Priv.NONE, 0,
              0xFF, Status.UNSUPPORTED, Kind.INSN, None)


def group(mem, reg=None):
    """A ModRM.reg group: 8 memory-form entries and 8 register-form entries.

    ``reg`` defaults to ``mem`` with memory-only entries turned into #UD.
    """
    assert len(mem) == 8
    if reg is None:
        reg = [bad(True) if e.attrs & Attr.MEM_ONLY else e for e in mem]
    assert len(reg) == 8
    return Op("(group)", (), True, Imm.NONE, Flow.NONE, Sens.IDENT,
              Priv.NONE, 0, 0xFF, Status.OK, Kind.GROUP, tuple(mem) + tuple(reg))


def _special(kind, name, modrm=False):
    return Op(name, (), modrm, Imm.NONE, Flow.NONE, Sens.IDENT, Priv.NONE, 0,
              0xFF, Status.OK, kind, None)


CC = ("o", "no", "b", "ae", "e", "ne", "be", "a",
      "s", "ns", "p", "np", "l", "ge", "le", "g")

SEG_NAMES = ("es", "cs", "ss", "ds", "fs", "gs")

# Prefix bytes: value -> (bit in Insn.prefixes, segment number or -1).
PREFIXES = {
    0x26: (0x001, 0), 0x2E: (0x002, 1), 0x36: (0x004, 2), 0x3E: (0x008, 3),
    0x64: (0x010, 4), 0x65: (0x020, 5),
    0x66: (0x040, -1),   # operand-size override
    0x67: (0x080, -1),   # address-size override
    0xF0: (0x100, -1),   # LOCK
    0xF2: (0x200, -1),   # REPNE
    0xF3: (0x400, -1),   # REP / REPE
}

_A = Attr
_F = Flow
_S = Sens
_P = Priv

# ---------------------------------------------------------------- groups --

_ALU = ("add", "or", "adc", "sbb", "and", "sub", "xor", "cmp")


def _grp1(dst, src):
    # 80 81 82 83 /0../7: every ALU op but CMP may take LOCK.
    return group([op(m, f"{dst},{src}", attrs=0 if m == "cmp" else _A.LOCK)
                  for m in _ALU])


def _grp2(dst, count):
    # C0 C1 D0-D3: /6 is undocumented in the SDM map but executes as SHL on
    # Intel hardware and in Unicorn (QEMU); Capstone calls it SAL.
    names = ("rol", "ror", "rcl", "rcr", "shl", "shr", "sal", "sar")
    return group([op(m, f"{dst},{count}") for m in names])


def _grp3(e, i):
    # F6/F7: /1 is blank in SDM Table A-6 and #UD in Unicorn (some Intel
    # parts execute it as TEST; a P6 guest must not rely on it).
    return group([op("test", f"{e},{i}"), bad(True),
                  op("not", e, attrs=_A.LOCK), op("neg", e, attrs=_A.LOCK),
                  op("mul", e), op("imul", e), op("div", e), op("idiv", e)])


_GRP4 = group([op("inc", "Eb", attrs=_A.LOCK), op("dec", "Eb", attrs=_A.LOCK)]
              + [bad(True)] * 6)

_GRP5 = group([
    op("inc", "Ev", attrs=_A.LOCK),
    op("dec", "Ev", attrs=_A.LOCK),
    op("call", "Ev", flow=_F.CALL_IND, attrs=_A.STACK),
    op("callf", "Mp", flow=_F.CALLF_IND, sens=_S.FAR_FLOW, attrs=_A.STACK),
    op("jmp", "Ev", flow=_F.JMP_IND),
    op("jmpf", "Mp", flow=_F.JMPF_IND, sens=_S.FAR_FLOW),
    op("push", "Ev", attrs=_A.STACK),
    bad(True),
])

# 8F: only /0 (POP Ev) exists; /1-/7 are #UD (AMD XOP uses them in 64-bit
# capable parts, never on a P6).
_GRP1A = group([op("pop", "Ev", attrs=_A.STACK)] + [bad(True)] * 7)

# C6/C7: only /0 (MOV E,I); /1-/7 #UD (C6 F8 / C7 F8 are XABORT/XBEGIN on TSX).
_GRP11_B = group([op("mov", "Eb,Ib")] + [bad(True)] * 7)
_GRP11_V = group([op("mov", "Ev,Iz")] + [bad(True)] * 7)

# 0F 00 (group 6): LDTR/TR and selector checks.  /6 /7 #UD.
_GRP6 = group([
    op("sldt", "Rv/Mw", sens=_S.SYSREG),
    op("str", "Rv/Mw", sens=_S.SYSREG),
    op("lldt", "Ew", sens=_S.SYSREG, priv=_P.CPL0),
    op("ltr", "Ew", sens=_S.SYSREG, priv=_P.CPL0),
    op("verr", "Ew", sens=_S.SYSREG),
    op("verw", "Ew", sens=_S.SYSREG),
    bad(True), bad(True),
])

# 0F 01 (group 7): on a P6 only SMSW/LMSW have register forms; every other
# mod=11 encoding (VMCALL, MONITOR, XGETBV, SWAPGS, RDTSCP, ...) is #UD.
_GRP7_MEM = [
    op("sgdt", "Ms", sens=_S.SYSREG),
    op("sidt", "Ms", sens=_S.SYSREG),
    op("lgdt", "Ms", sens=_S.SYSREG, priv=_P.CPL0),
    op("lidt", "Ms", sens=_S.SYSREG, priv=_P.CPL0),
    op("smsw", "Rv/Mw", sens=_S.SYSREG),
    bad(True),
    op("lmsw", "Ew", sens=_S.SYSREG, priv=_P.CPL0),
    op("invlpg", "M", sens=_S.CACHE_TLB, priv=_P.CPL0),
]
_GRP7 = group(_GRP7_MEM, [bad(True)] * 4 + [_GRP7_MEM[4], bad(True),
                                             _GRP7_MEM[6], bad(True)])

# 0F BA (group 8): BT/BTS/BTR/BTC Ev,Ib; /0-/3 #UD.  BT only reads: no LOCK.
_GRP8 = group([bad(True)] * 4 + [
    op("bt", "Ev,Ib"),
    op("bts", "Ev,Ib", attrs=_A.LOCK),
    op("btr", "Ev,Ib", attrs=_A.LOCK),
    op("btc", "Ev,Ib", attrs=_A.LOCK),
])

# 0F C7 (group 9): CMPXCHG8B m64 only (P5+).  RDRAND/RDSEED/VMPTRLD.. #UD.
_GRP9 = group([bad(True), op("cmpxchg8b", "Mq", attrs=_A.LOCK)]
              + [bad(True)] * 6)

# ------------------------------------------------------------ x87 (D8-DF) --
# Every x87 escape has a ModRM byte; length never depends on anything else.
# Names per (escape, reg) for memory forms and for register forms.

_X87_MEM = {
    0xD8: ("fadd", "fmul", "fcom", "fcomp", "fsub", "fsubr", "fdiv", "fdivr"),
    0xD9: ("fld", None, "fst", "fstp", "fldenv", "fldcw", "fnstenv",
           "fnstcw"),
    0xDA: ("fiadd", "fimul", "ficom", "ficomp", "fisub", "fisubr", "fidiv",
           "fidivr"),
    0xDB: ("fild", "fisttp", "fist", "fistp", None, "fld", None, "fstp"),
    0xDC: ("fadd", "fmul", "fcom", "fcomp", "fsub", "fsubr", "fdiv", "fdivr"),
    0xDD: ("fld", "fisttp", "fst", "fstp", "frstor", None, "fnsave",
           "fnstsw"),
    0xDE: ("fiadd", "fimul", "ficom", "ficomp", "fisub", "fisubr", "fidiv",
           "fidivr"),
    0xDF: ("fild", "fisttp", "fist", "fistp", "fbld", "fild", "fbstp",
           "fistp"),
}

# Register forms (mod=11) by reg field.  Names in brackets are the
# undocumented aliases that Intel hardware and Unicorn execute (FCOM2,
# FCOMP3, FXCH4, FCOMP5, FXCH7, FSTP1, FSTP8, FSTP9, FFREEP).
_X87_REG = {
    0xD8: ("fadd", "fmul", "fcom", "fcomp", "fsub", "fsubr", "fdiv", "fdivr"),
    0xD9: ("fld", "fxch", "fnop", "[fstp1]", None, None, None, None),
    0xDA: ("fcmovb", "fcmove", "fcmovbe", "fcmovu", None, "fucompp", None,
           None),
    0xDB: ("fcmovnb", "fcmovne", "fcmovnbe", "fcmovnu", None, "fucomi",
           "fcomi", None),
    0xDC: ("fadd", "fmul", "[fcom2]", "[fcomp3]", "fsubr", "fsub", "fdivr",
           "fdiv"),
    0xDD: ("ffree", "[fxch4]", "fst", "fstp", "fucom", "fucomp", None, None),
    0xDE: ("faddp", "fmulp", "[fcomp5]", "fcompp", "fsubrp", "fsubp",
           "fdivrp", "fdivp"),
    0xDF: ("[ffreep]", "[fxch7]", "[fstp8]", "[fstp9]", "fnstsw", "fucomip",
           "fcomip", None),
}

# Names of the single-byte register forms (escape, modrm).
X87_NAMES = {
    (0xD9, 0xE0): "fchs", (0xD9, 0xE1): "fabs", (0xD9, 0xE4): "ftst",
    (0xD9, 0xE5): "fxam", (0xD9, 0xE8): "fld1", (0xD9, 0xE9): "fldl2t",
    (0xD9, 0xEA): "fldl2e", (0xD9, 0xEB): "fldpi", (0xD9, 0xEC): "fldlg2",
    (0xD9, 0xED): "fldln2", (0xD9, 0xEE): "fldz", (0xD9, 0xF0): "f2xm1",
    (0xD9, 0xF1): "fyl2x", (0xD9, 0xF2): "fptan", (0xD9, 0xF3): "fpatan",
    (0xD9, 0xF4): "fxtract", (0xD9, 0xF5): "fprem1", (0xD9, 0xF6): "fdecstp",
    (0xD9, 0xF7): "fincstp", (0xD9, 0xF8): "fprem", (0xD9, 0xF9): "fyl2xp1",
    (0xD9, 0xFA): "fsqrt", (0xD9, 0xFB): "fsincos", (0xD9, 0xFC): "frndint",
    (0xD9, 0xFD): "fscale", (0xD9, 0xFE): "fsin", (0xD9, 0xFF): "fcos",
    (0xDB, 0xE0): "[feni]", (0xDB, 0xE1): "[fdisi]", (0xDB, 0xE2): "fnclex",
    (0xDB, 0xE3): "fninit", (0xDB, 0xE4): "[fsetpm]", (0xDA, 0xE9): "fucompp",
    (0xDE, 0xD9): "fcompp", (0xDF, 0xE0): "fnstsw",
}


def _x87_byte_set(spec):
    """Expand 'd1-d7 e2' into a set of ModRM bytes."""
    out = set()
    for part in spec.split():
        lo, _, hi = part.partition("-")
        out.update(range(int(lo, 16), int(hi or lo, 16) + 1))
    return frozenset(out)


# mod=11 ModRM bytes that raise #UD (blank cells of SDM Tables A-11..A-22
# that real hardware also rejects; measured on Unicorn, which agrees).
X87_REG_INVALID = {
    0xD8: frozenset(),
    0xD9: _x87_byte_set("d1-d7 e2 e3 e6 e7 ef"),
    0xDA: _x87_byte_set("e0-e8 ea-ff"),
    0xDB: _x87_byte_set("e5-e7 f8-ff"),
    0xDC: frozenset(),
    0xDD: _x87_byte_set("f0-ff"),
    0xDE: _x87_byte_set("d8 da-df"),
    0xDF: _x87_byte_set("e1-e7 f8-ff"),
}


def _x87_group(esc):
    mem = []
    for r, name in enumerate(_X87_MEM[esc]):
        if name is None:
            mem.append(bad(True))        # D9 /1, DB /4 /6, DD /5: #UD
        elif name == "fisttp":
            mem.append(unsup("fisttp"))  # SSE3
        else:
            mem.append(op(name, "F"))
    reg = []
    for r, name in enumerate(_X87_REG[esc]):
        # A reg slot whose 8 bytes are all #UD is INVALID; partly-valid
        # slots are OK and X87_REG_INVALID refines them byte by byte.
        lo = 0xC0 | (r << 3)
        if all(b in X87_REG_INVALID[esc] for b in range(lo, lo + 8)):
            reg.append(bad(True))
        else:
            reg.append(op(name or "(x87)", "F"))
    g = group(mem, reg)
    return g._replace(kind=Kind.X87, mnemonic="(x87)")


# --------------------------------------------------------- one-byte map --

ONE_BYTE = {}


def _alu_block(base, name, lockable=True):
    la = _A.LOCK if lockable else 0
    ONE_BYTE[base + 0] = op(name, "Eb,Gb", attrs=la)
    ONE_BYTE[base + 1] = op(name, "Ev,Gv", attrs=la)
    ONE_BYTE[base + 2] = op(name, "Gb,Eb")
    ONE_BYTE[base + 3] = op(name, "Gv,Ev")
    ONE_BYTE[base + 4] = op(name, "AL,Ib")
    ONE_BYTE[base + 5] = op(name, "eAX,Iz")


for _i, _n in enumerate(_ALU):
    _alu_block(_i * 8, _n, lockable=_n != "cmp")


def _push_sreg(seg):
    return op("push", seg, sens=_S.SEG_READ, attrs=_A.STACK)


def _pop_sreg(seg):
    return op("pop", seg, sens=_S.SEG_LOAD, attrs=_A.STACK)


ONE_BYTE.update({
    0x06: _push_sreg("ES"), 0x07: _pop_sreg("ES"),
    0x0E: _push_sreg("CS"),
    # 0F: on the 8086 "POP CS"; from the 286 on the two-byte escape, so there
    # is no POP CS to reject in 16- or 32-bit code.
    0x0F: _special(Kind.ESCAPE, "(0f)"),
    0x16: _push_sreg("SS"), 0x17: _pop_sreg("SS"),
    0x1E: _push_sreg("DS"), 0x1F: _pop_sreg("DS"),
    0x27: op("daa"), 0x2F: op("das"), 0x37: op("aaa"), 0x3F: op("aas"),
    0x60: op("pusha/pushad", attrs=_A.STACK),
    0x61: op("popa/popad", attrs=_A.STACK),
    # BOUND with a register operand is #UD (EVEX on AVX-512 parts).
    0x62: op("bound", "Gv,Ma"),
    0x63: op("arpl", "Ew,Gw"),
    0x68: op("push", "Iz", attrs=_A.STACK),
    0x69: op("imul", "Gv,Ev,Iz"),
    0x6A: op("push", "Ibs", attrs=_A.STACK),
    0x6B: op("imul", "Gv,Ev,Ibs"),
    0x6C: op("insb", "Yb,DX", sens=_S.IO, priv=_P.IOPL,
             attrs=_A.STRING | _A.STR_DST | _A.REP | _A.BYTE),
    0x6D: op("insw/insd", "Yz,DX", sens=_S.IO, priv=_P.IOPL,
             attrs=_A.STRING | _A.STR_DST | _A.REP),
    0x6E: op("outsb", "DX,Xb", sens=_S.IO, priv=_P.IOPL,
             attrs=_A.STRING | _A.STR_SRC | _A.REP),
    0x6F: op("outsw/outsd", "DX,Xz", sens=_S.IO, priv=_P.IOPL,
             attrs=_A.STRING | _A.STR_SRC | _A.REP),
    0x80: _grp1("Eb", "Ib"), 0x81: _grp1("Ev", "Iz"),
    0x82: _grp1("Eb", "Ib"),     # alias of 80, valid outside 64-bit mode
    0x83: _grp1("Ev", "Ibs"),
    0x84: op("test", "Eb,Gb"), 0x85: op("test", "Ev,Gv"),
    # XCHG with memory is locked anyway; an explicit LOCK is allowed.
    0x86: op("xchg", "Eb,Gb", attrs=_A.LOCK),
    0x87: op("xchg", "Ev,Gv", attrs=_A.LOCK),
    0x88: op("mov", "Eb,Gb"), 0x89: op("mov", "Ev,Gv"),
    0x8A: op("mov", "Gb,Eb"), 0x8B: op("mov", "Gv,Ev"),
    # MOV r/m,Sreg: reg 6,7 name no segment register: #UD.
    0x8C: op("mov", "Rv/Mw,Sw", sens=_S.SEG_READ, reg_ok=0x3F),
    0x8D: op("lea", "Gv,M"),
    # MOV Sreg,r/m: loading CS this way is #UD (SDM MOV: "If attempt is
    # made to load the CS register"), as are reg 6,7.
    0x8E: op("mov", "Sw,Ew", sens=_S.SEG_LOAD, reg_ok=0x3D),
    0x8F: _GRP1A,
    0x90: op("nop"),            # XCHG eAX,eAX; F3 90 is PAUSE (a NOP on P6)
    0x98: op("cbw/cwde"), 0x99: op("cwd/cdq"),
    0x9A: op("callf", "Ap", flow=_F.CALLF, sens=_S.FAR_FLOW, attrs=_A.STACK),
    0x9B: op("fwait"),
    0x9C: op("pushf/pushfd", sens=_S.FLAGS, priv=_P.IOPL, attrs=_A.STACK),
    0x9D: op("popf/popfd", sens=_S.FLAGS, priv=_P.IOPL, attrs=_A.STACK),
    0x9E: op("sahf"), 0x9F: op("lahf"),
    0xA0: op("mov", "AL,Ob"), 0xA1: op("mov", "eAX,Ov"),
    0xA2: op("mov", "Ob,AL"), 0xA3: op("mov", "Ov,eAX"),
    0xA4: op("movsb", "Yb,Xb", attrs=_A.STRING | _A.STR_SRC | _A.STR_DST
             | _A.REP),
    0xA5: op("movsw/movsd", "Yv,Xv", attrs=_A.STRING | _A.STR_SRC
             | _A.STR_DST | _A.REP),
    0xA6: op("cmpsb", "Xb,Yb", attrs=_A.STRING | _A.STR_SRC | _A.STR_DST
             | _A.REPZ),
    0xA7: op("cmpsw/cmpsd", "Xv,Yv", attrs=_A.STRING | _A.STR_SRC
             | _A.STR_DST | _A.REPZ),
    0xA8: op("test", "AL,Ib"), 0xA9: op("test", "eAX,Iz"),
    0xAA: op("stosb", "Yb,AL", attrs=_A.STRING | _A.STR_DST | _A.REP),
    0xAB: op("stosw/stosd", "Yv,eAX", attrs=_A.STRING | _A.STR_DST | _A.REP),
    0xAC: op("lodsb", "AL,Xb", attrs=_A.STRING | _A.STR_SRC | _A.REP),
    0xAD: op("lodsw/lodsd", "eAX,Xv", attrs=_A.STRING | _A.STR_SRC | _A.REP),
    0xAE: op("scasb", "AL,Yb", attrs=_A.STRING | _A.STR_DST | _A.REPZ),
    0xAF: op("scasw/scasd", "eAX,Yv", attrs=_A.STRING | _A.STR_DST
             | _A.REPZ),
    0xC0: _grp2("Eb", "Ib"), 0xC1: _grp2("Ev", "Ib"),
    0xC2: op("ret", "Iw", flow=_F.RET, attrs=_A.STACK),
    0xC3: op("ret", flow=_F.RET, attrs=_A.STACK),
    # LES/LDS with mod=11 are #UD on a P6 (VEX prefixes on AVX parts).
    0xC4: op("les", "Gv,Mp", sens=_S.SEG_LOAD),
    0xC5: op("lds", "Gv,Mp", sens=_S.SEG_LOAD),
    0xC6: _GRP11_B, 0xC7: _GRP11_V,
    0xC8: op("enter", "Iw,Ib", attrs=_A.STACK),
    0xC9: op("leave", attrs=_A.STACK),
    0xCA: op("retf", "Iw", flow=_F.RETF, sens=_S.FAR_FLOW, attrs=_A.STACK),
    0xCB: op("retf", flow=_F.RETF, sens=_S.FAR_FLOW, attrs=_A.STACK),
    0xCC: op("int3", flow=_F.INT3, sens=_S.INT, attrs=_A.STACK),
    0xCD: op("int", "Ib", flow=_F.INT, sens=_S.INT, priv=_P.IOPL,
             attrs=_A.STACK),
    0xCE: op("into", flow=_F.INTO, sens=_S.INT, attrs=_A.STACK),
    0xCF: op("iret/iretd", flow=_F.IRET, sens=_S.IRET, priv=_P.IOPL,
             attrs=_A.STACK),
    0xD0: _grp2("Eb", "1"), 0xD1: _grp2("Ev", "1"),
    0xD2: _grp2("Eb", "CL"), 0xD3: _grp2("Ev", "CL"),
    0xD4: op("aam", "Ib"), 0xD5: op("aad", "Ib"),
    # D6: SALC, undocumented (blank in the SDM map) but executed by Intel
    # CPUs and by Unicorn; Capstone decodes it too.
    0xD6: op("salc"),
    0xD7: op("xlatb", attrs=_A.XLAT | _A.BYTE),
    0xE0: op("loopne", "Jb", flow=_F.LOOP),
    0xE1: op("loope", "Jb", flow=_F.LOOP),
    0xE2: op("loop", "Jb", flow=_F.LOOP),
    0xE3: op("jcxz/jecxz", "Jb", flow=_F.JCXZ, attrs=_A.ADDR_NAME),
    0xE4: op("in", "AL,Ib", sens=_S.IO, priv=_P.IOPL),
    0xE5: op("in", "eAX,Ib", sens=_S.IO, priv=_P.IOPL),
    0xE6: op("out", "Ib,AL", sens=_S.IO, priv=_P.IOPL),
    0xE7: op("out", "Ib,eAX", sens=_S.IO, priv=_P.IOPL),
    0xE8: op("call", "Jz", flow=_F.CALL, attrs=_A.STACK),
    0xE9: op("jmp", "Jz", flow=_F.JMP),
    0xEA: op("jmpf", "Ap", flow=_F.JMPF, sens=_S.FAR_FLOW),
    0xEB: op("jmp", "Jb", flow=_F.JMP),
    0xEC: op("in", "AL,DX", sens=_S.IO, priv=_P.IOPL),
    0xED: op("in", "eAX,DX", sens=_S.IO, priv=_P.IOPL),
    0xEE: op("out", "DX,AL", sens=_S.IO, priv=_P.IOPL),
    0xEF: op("out", "DX,eAX", sens=_S.IO, priv=_P.IOPL),
    # F1: INT1 / ICEBP, raises #DB like a trap through IDT vector 1.
    0xF1: op("int1", flow=_F.INT, sens=_S.INT, attrs=_A.STACK),
    0xF4: op("hlt", flow=_F.HLT, sens=_S.HLT, priv=_P.CPL0),
    0xF5: op("cmc"),
    0xF6: _grp3("Eb", "Ib"), 0xF7: _grp3("Ev", "Iz"),
    0xF8: op("clc"), 0xF9: op("stc"),
    0xFA: op("cli", sens=_S.FLAGS, priv=_P.IOPL),
    0xFB: op("sti", sens=_S.FLAGS, priv=_P.IOPL),
    0xFC: op("cld"), 0xFD: op("std"),
    0xFE: _GRP4, 0xFF: _GRP5,
})

for _b in PREFIXES:
    ONE_BYTE[_b] = _special(Kind.PREFIX, "(prefix)")
for _r in range(8):
    ONE_BYTE[0x40 + _r] = op("inc", "Zv")
    ONE_BYTE[0x48 + _r] = op("dec", "Zv")
    ONE_BYTE[0x50 + _r] = op("push", "Zv", attrs=_A.STACK)
    ONE_BYTE[0x58 + _r] = op("pop", "Zv", attrs=_A.STACK)
    ONE_BYTE[0xB0 + _r] = op("mov", "Zb,Ib")
    ONE_BYTE[0xB8 + _r] = op("mov", "Zv,Iz")
    ONE_BYTE[0xD8 + _r] = _x87_group(0xD8 + _r)
    if _r:
        ONE_BYTE[0x90 + _r] = op("xchg", "Zv,eAX")
for _c in range(16):
    ONE_BYTE[0x70 + _c] = op("j" + CC[_c], "Jb", flow=_F.JCC, attrs=_A.COND)

# --------------------------------------------------------- 0F two-byte map --

TWO_BYTE = {
    0x00: _GRP6,
    0x01: _GRP7,
    0x02: op("lar", "Gv,Rv/Mw", sens=_S.SYSREG),
    0x03: op("lsl", "Gv,Rv/Mw", sens=_S.SYSREG),
    0x05: unsup("syscall", modrm=False),   # AMD K6+ only in legacy mode
    0x06: op("clts", sens=_S.SYSREG, priv=_P.CPL0),
    0x07: unsup("sysret", modrm=False),    # AMD K6+ only in legacy mode
    0x08: op("invd", sens=_S.CACHE_TLB, priv=_P.CPL0),
    0x09: op("wbinvd", sens=_S.CACHE_TLB, priv=_P.CPL0),
    0x0B: op("ud2", flow=_F.UD),
    0x0D: unsup("prefetch"),               # 3DNow! / PREFETCHW
    0x0E: unsup("femms", modrm=False),     # 3DNow!
    0x0F: unsup("3dnow", imm=Imm.IB),      # ModRM then an opcode suffix byte
    0x18: unsup("prefetch"),               # SSE PREFETCHh
    # MOV to/from CRn/DRn: mod ignored (R).  CR1 and CR5-CR7 are #UD; DR4/DR5
    # alias DR6/DR7 unless CR4.DE=1 (a run-time check, not a decode one).
    0x20: op("mov", "Rd,Cd", sens=_S.SYSREG, priv=_P.CPL0, reg_ok=0x1D),
    0x21: op("mov", "Rd,Dd", sens=_S.SYSREG, priv=_P.CPL0),
    0x22: op("mov", "Cd,Rd", sens=_S.SYSREG, priv=_P.CPL0, reg_ok=0x1D),
    0x23: op("mov", "Dd,Rd", sens=_S.SYSREG, priv=_P.CPL0),
    0x30: op("wrmsr", sens=_S.MSR, priv=_P.CPL0),
    0x31: op("rdtsc", sens=_S.RDTSC, priv=_P.CR4),
    0x32: op("rdmsr", sens=_S.MSR, priv=_P.CPL0),
    0x33: op("rdpmc", sens=_S.RDPMC, priv=_P.CR4),
    0x34: op("sysenter", flow=_F.SYS, sens=_S.SYSCALL),
    0x35: op("sysexit", flow=_F.SYS, sens=_S.SYSCALL, priv=_P.CPL0),
    0x38: _special(Kind.ESCAPE3, "(0f38)"),
    0x3A: _special(Kind.ESCAPE3, "(0f3a)"),
    0x77: unsup("emms", modrm=False),
    0xA0: _push_sreg("FS"), 0xA1: _pop_sreg("FS"),
    0xA2: op("cpuid", sens=_S.CPUID),
    0xA3: op("bt", "Ev,Gv"),
    0xA4: op("shld", "Ev,Gv,Ib"), 0xA5: op("shld", "Ev,Gv,CL"),
    0xA8: _push_sreg("GS"), 0xA9: _pop_sreg("GS"),
    # RSM is #UD outside system-management mode, where guests never run.
    0xAA: op("rsm", flow=_F.UD),
    0xAB: op("bts", "Ev,Gv", attrs=_A.LOCK),
    0xAC: op("shrd", "Ev,Gv,Ib"), 0xAD: op("shrd", "Ev,Gv,CL"),
    0xAE: unsup("fxsave-group"),           # FXSAVE/FXRSTOR/LDMXCSR/fences
    0xAF: op("imul", "Gv,Ev"),
    0xB0: op("cmpxchg", "Eb,Gb", attrs=_A.LOCK),
    0xB1: op("cmpxchg", "Ev,Gv", attrs=_A.LOCK),
    0xB2: op("lss", "Gv,Mp", sens=_S.SEG_LOAD),
    0xB3: op("btr", "Ev,Gv", attrs=_A.LOCK),
    0xB4: op("lfs", "Gv,Mp", sens=_S.SEG_LOAD),
    0xB5: op("lgs", "Gv,Mp", sens=_S.SEG_LOAD),
    0xB6: op("movzx", "Gv,Eb"), 0xB7: op("movzx", "Gv,Ew"),
    0xB8: unsup("popcnt"),                 # F3 0F B8; plain 0F B8 is #UD
    # UD1 takes a ModRM byte (SDM "0F B9 /r UD1 r32, r/m32").
    0xB9: op("ud1", "Gv,Ev", flow=_F.UD),
    0xBA: _GRP8,
    0xBB: op("btc", "Ev,Gv", attrs=_A.LOCK),
    0xBC: op("bsf", "Gv,Ev"), 0xBD: op("bsr", "Gv,Ev"),
    0xBE: op("movsx", "Gv,Eb"), 0xBF: op("movsx", "Gv,Ew"),
    0xC0: op("xadd", "Eb,Gb", attrs=_A.LOCK),
    0xC1: op("xadd", "Ev,Gv", attrs=_A.LOCK),
    0xC2: unsup("cmpps", imm=Imm.IB),
    0xC3: unsup("movnti"),
    0xC4: unsup("pinsrw", imm=Imm.IB),
    0xC5: unsup("pextrw", imm=Imm.IB),
    0xC6: unsup("shufps", imm=Imm.IB),
    0xC7: _GRP9,
    # UD0: pre-Skylake processors (the P6 among them) take no ModRM.
    0xFF: op("ud0", flow=_F.UD),
}

for _c in range(16):
    TWO_BYTE[0x40 + _c] = op("cmov" + CC[_c], "Gv,Ev", attrs=_A.COND)
    TWO_BYTE[0x80 + _c] = op("j" + CC[_c], "Jz", flow=_F.JCC, attrs=_A.COND)
    TWO_BYTE[0x90 + _c] = op("set" + CC[_c], "Eb", attrs=_A.COND)
for _b in range(0x19, 0x20):
    # Reserved-NOP hint space; 0F 1F /0 is the P6 "NOP Ev".  All reg values
    # execute as NOP on Intel hardware and in Unicorn.
    TWO_BYTE[_b] = op("nop", "Ev")
for _r in range(8):
    # BSWAP r32; with a 16-bit operand size the result is undefined (SDM).
    TWO_BYTE[0xC8 + _r] = op("bswap", "Zv")

# MMX / SSE / SSE2 / SSE3 rows: real instructions with a ModRM byte, some
# with a byte immediate.  Decoded for length only (UNSUPPORTED).
MMX_SSE_UNSUPPORTED = (
    list(range(0x10, 0x18)) + list(range(0x28, 0x30)) + list(range(0x50, 0x77))
    + list(range(0x7C, 0x80)) + list(range(0xD0, 0xFF))
)
_SSE_IB = (0x70, 0x71, 0x72, 0x73)
for _b in MMX_SSE_UNSUPPORTED:
    TWO_BYTE[_b] = unsup("mmx/sse", imm=Imm.IB if _b in _SSE_IB else Imm.NONE)

# Everything not filled in above is #UD on a P6: 0F 04 0A 0C 24-27 (MOV TRn
# existed on the 386/486 only) 36 37 (GETSEC) 39 3B-3F, 78 79 (VMREAD and
# VMWRITE, #UD outside VMX operation, which a guest never is in; with 66/F2
# they are AMD's SSE4a EXTRQ/INSERTQ, whose two immediates would make any
# length we claimed wrong), 7A 7B, A6 A7 (early-486 CMPXCHG, VIA PadLock).
for _b in range(256):
    ONE_BYTE.setdefault(_b, bad())
    TWO_BYTE.setdefault(_b, bad())
TWO_BYTE_INVALID = tuple(b for b in range(256)
                         if TWO_BYTE[b].kind == Kind.INSN
                         and TWO_BYTE[b].status == Status.INVALID)

# The three-byte maps (0F 38 xx: ModRM; 0F 3A xx: ModRM + Ib) hold only
# SSSE3+ instructions: UNSUPPORTED, length decoded.
THREE_BYTE_38 = unsup("0f38")
THREE_BYTE_3A = unsup("0f3a", imm=Imm.IB)


def entries():
    """Yield (map, opcode, reg_slot, entry) for every instruction slot.

    Prefixes and escapes are not instruction slots and are skipped.

    map is 1 (one-byte) or 2 (0F); reg_slot is None for plain entries, else
    0..15 (mod!=11 reg 0-7, mod=11 reg 0-7).
    """
    for m, table in ((1, ONE_BYTE), (2, TWO_BYTE)):
        for b in range(256):
            e = table[b]
            if e.kind in (Kind.PREFIX, Kind.ESCAPE, Kind.ESCAPE3):
                continue
            if e.sub is None:
                yield m, b, None, e
            else:
                for i, s in enumerate(e.sub):
                    yield m, b, i, s


def mnemonic_for(entry, opsize, addrsize):
    """Pick the 16/32-bit name of an "a/b" mnemonic."""
    name = entry.mnemonic
    if "/" not in name or name == "mmx/sse":
        return name
    short, long_ = name.split("/")
    size = addrsize if entry.attrs & Attr.ADDR_NAME else opsize
    return long_ if size == 32 else short
