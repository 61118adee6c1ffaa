"""Which EFLAGS bits an instruction leaves *undefined* (Intel SDM vol. 2).

The reference path steps the guest one instruction at a time and keeps a mask
of the arithmetic flags whose value the architecture does not define at that
point; the final EFLAGS comparison ignores them, and so does the comparison of
FLAGS images pushed while they were undefined (``pushf``, interrupt frames).

``effect(mnemonic, opsize, count)`` returns ``(defined, undefined)``: the
flags the instruction writes with a defined value and the ones it leaves
undefined.  ``count`` is the shift/rotate count operand before masking (CL or
the immediate or 1), ignored by other instructions.  Instructions not listed
leave every flag as it was.
"""

from __future__ import annotations

from monitor.fuzz.case import AF, ARITH_FLAGS, CF, OF, PF, SF, ZF

ALL = ARITH_FLAGS

# mnemonic -> (defined, undefined), count-independent.
_FIXED = {
    # logic: OF CF cleared, SF ZF PF by result, AF undefined
    "and": (ALL & ~AF, AF), "or": (ALL & ~AF, AF), "xor": (ALL & ~AF, AF), "test": (ALL & ~AF, AF),
    # multiply: CF OF defined, SF ZF AF PF undefined
    "mul": (CF | OF, SF | ZF | AF | PF), "imul": (CF | OF, SF | ZF | AF | PF),
    # divide: every status flag undefined
    "div": (0, ALL), "idiv": (0, ALL),
    # bit scans: ZF defined, the rest undefined
    "bsf": (ZF, CF | OF | SF | AF | PF), "bsr": (ZF, CF | OF | SF | AF | PF),
    # bit tests: CF defined, OF SF AF PF undefined (ZF unchanged)
    "bt": (CF, OF | SF | AF | PF), "bts": (CF, OF | SF | AF | PF),
    "btr": (CF, OF | SF | AF | PF), "btc": (CF, OF | SF | AF | PF),
    # BCD
    "aaa": (AF | CF, OF | SF | ZF | PF), "aas": (AF | CF, OF | SF | ZF | PF),
    "daa": (CF | AF | SF | ZF | PF, OF), "das": (CF | AF | SF | ZF | PF, OF),
    "aam": (SF | ZF | PF, OF | AF | CF), "aad": (SF | ZF | PF, OF | AF | CF),
    # fully defined writers
    "add": (ALL, 0), "adc": (ALL, 0), "sub": (ALL, 0), "sbb": (ALL, 0), "cmp": (ALL, 0),
    "neg": (ALL, 0), "inc": (ALL & ~CF, 0), "dec": (ALL & ~CF, 0),
    "cmpxchg": (ALL, 0), "xadd": (ALL, 0), "cmpxchg8b": (ZF, 0),
    "cmpsb": (ALL, 0), "cmpsw": (ALL, 0), "cmpsd": (ALL, 0),
    "scasb": (ALL, 0), "scasw": (ALL, 0), "scasd": (ALL, 0),
    "sahf": (SF | ZF | AF | PF | CF, 0), "popf": (ALL, 0), "popfd": (ALL, 0),
    "iret": (ALL, 0), "iretd": (ALL, 0), "clc": (CF, 0), "stc": (CF, 0),
}


def effect(mnemonic: str, opsize: int, count: int = 1) -> tuple[int, int]:
    m = mnemonic
    if m in _FIXED:
        return _FIXED[m]
    if m in ("shl", "sal", "shr", "sar"):
        c = count & 31
        if c == 0:
            return 0, 0
        undef = AF | (OF if c != 1 else 0)
        if m != "sar" and c >= opsize:
            undef |= CF
        return (CF | SF | ZF | PF | OF) & ~undef, undef
    if m in ("rol", "ror", "rcl", "rcr"):
        c = count & 31
        if m in ("rcl", "rcr"):
            c %= opsize + 1
        if c == 0:
            return 0, 0
        return (CF | OF) & ~(OF if c != 1 else 0), (OF if c != 1 else 0)
    if m in ("shld", "shrd"):
        c = count & 31
        if c == 0:
            return 0, 0
        if c > opsize:                      # result and flags undefined
            return 0, ALL
        undef = AF | (OF if c != 1 else 0)
        return (CF | SF | ZF | PF | OF) & ~undef, undef
    return 0, 0


class UndefinedFlags:
    """The running mask of undefined arithmetic flags."""

    def __init__(self):
        self.mask = 0

    def step(self, mnemonic: str, opsize: int, count: int = 1) -> None:
        defined, undefined = effect(mnemonic, opsize, count)
        self.mask = (self.mask & ~defined) | undefined

    def step_insn(self, insn, ecx: int) -> None:
        """One decoded instruction; shifts take their count from CL or the
        immediate (ECX as it was before the instruction)."""
        key = (insn.opmap, insn.opcode)
        count = ecx & 0xFF if key in SHIFT_CL else (insn.imm or 0) if key in SHIFT_IMM else 1
        self.step(insn.mnemonic, insn.opsize, count)


# Shifts and double shifts by CL and by an immediate: (opcode map, opcode).
SHIFT_CL = {(1, 0xD2), (1, 0xD3), (2, 0xA5), (2, 0xAD)}
SHIFT_IMM = {(1, 0xC0), (1, 0xC1), (2, 0xA4), (2, 0xAC)}


# Flags an instruction *reads*: if one of them is undefined at that point, its
# value (model-specific: the two paths compute it with QEMU's lazy flags at
# different block boundaries) becomes data or control flow, and no reference
# exists for the rest of the run (docs/fuzzing.md).
_CC_READS = (OF, OF, CF, CF, ZF, ZF, CF | ZF, CF | ZF, SF, SF, PF, PF, SF | OF, SF | OF, ZF | SF | OF, ZF | SF | OF)
_READS = {"adc": CF, "sbb": CF, "rcl": CF, "rcr": CF, "lahf": SF | ZF | AF | PF | CF, "into": OF,
          "loope": ZF, "loopne": ZF, "loopz": ZF, "loopnz": ZF, "daa": AF | CF, "das": AF | CF,
          "aaa": AF, "aas": AF, "salc": CF}


def reads(insn) -> int:
    """The arithmetic flags `insn` (a decoded instruction) reads."""
    if not insn.ok:
        return 0
    mn = insn.mnemonic
    if mn in _READS:
        return _READS[mn]
    op = insn.opcode
    if insn.opmap == 1 and 0x70 <= op <= 0x7F or insn.opmap == 2 and (0x80 <= op <= 0x9F or 0x40 <= op <= 0x4F):
        return _CC_READS[op & 0xF]
    return 0


def popped_undefined(images, linear: int, size: int) -> int:
    """The undefined arithmetic flags of a FLAGS image popped from `linear`
    (`images`: the reference's (linear, size, undefined mask) of the images
    pushed so far)."""
    out = 0
    for lin, sz, mask in images:
        if lin == linear:
            out |= mask & ALL
    return out
