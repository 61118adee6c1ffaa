"""The real-mode translator: 16-bit guest code into the 32-bit TC.

Rules (docs/real-mode-bt.md):
* IDENT instructions are copied with 0x66/0x67 toggled, because the TC's code
  segment is 32-bit while the guest's is 16-bit;
* `cs:` memory operands borrow FS (loaded with the CS data slot) for one
  instruction;
* segment reads come from the virtual segment values in monitor data;
* direct branches go to continuation stubs that are chained in place later;
* everything else that real hardware would treat specially is a callout.
"""

from __future__ import annotations

import struct

from bt import abi
from bt.callouts import Callout, CalloutTable, Kind
from bt.decoder import decode
from bt.lookup import lookup_jump, save_eax
from bt.opcodes import Flow, Sens
from bt.tc import TCFull, TranslationCache, Unit

MAX_INSNS = 12
MAX_UNIT_BYTES = 1024            # generous upper bound of one unit's TC code

# Prefix bits of Instruction.prefixes (bt.opcodes.PREFIXES).
P_OPSIZE, P_ADDRSIZE = 0x40, 0x80
SEG_PREFIX_BYTES = (0x26, 0x2E, 0x36, 0x3E, 0x64, 0x65)
PREFIX_BYTES = frozenset(SEG_PREFIX_BYTES + (0x66, 0x67, 0xF0, 0xF2, 0xF3))

# Control flow that a callout handles (the unit ends there).
FLOW_CALLOUT = {
    Flow.RET: Kind.RET, Flow.RETF: Kind.RETF, Flow.IRET: Kind.IRET,
    Flow.JMP_IND: Kind.JMP_IND, Flow.CALL_IND: Kind.CALL_IND,
    Flow.JMPF: Kind.JMPF, Flow.JMPF_IND: Kind.JMPF,
    Flow.CALLF: Kind.CALLF, Flow.CALLF_IND: Kind.CALLF,
    Flow.INT: Kind.INT, Flow.INT3: Kind.INT, Flow.INTO: Kind.INT,
    Flow.HLT: Kind.HLT, Flow.UD: Kind.UD, Flow.SYS: Kind.UD,
}
SENS_CALLOUT = {
    Sens.SEG_LOAD: Kind.SEG_LOAD, Sens.SYSREG: Kind.SYSREG,
    Sens.CPUID: Kind.CPUID, Sens.MSR: Kind.MSR, Sens.HLT: Kind.HLT,
    Sens.INT: Kind.INT, Sens.IRET: Kind.IRET, Sens.RDPMC: Kind.UD,
}
# Far control flow the translator keeps in the TC (16-bit forms).
FAR_FLOWS = {Flow.JMPF, Flow.JMPF_IND, Flow.CALLF, Flow.CALLF_IND, Flow.RETF, Flow.IRET, Flow.INT, Flow.INT3}

# lds/les/lss/lfs/lgs: (opcode map, opcode) -> segment register loaded.
FAR_POINTER_LOADS = {(1, 0xC5): 3, (1, 0xC4): 0, (2, 0xB2): 2, (2, 0xB4): 4, (2, 0xB5): 5}


class _Reencoded:
    """The facts _ident needs about an instruction rebuilt from another one."""

    def __init__(self, insn, length: int):
        self.nprefixes = insn.nprefixes
        self.length = length
        self.segment = insn.segment
        self.eff_opsize = 16
        self.addrsize = insn.addrsize


# SYSREG instructions after which the unit ends (they may change the mode).
MODE_CHANGING = {"lmsw", "mov", "lidt"}   # lidt: int n bakes the IVT base in (see _inline_far)

# Instructions the decoder sizes but does not model (MMX, SSE, FXSAVE and
# friends): harmless to the monitor (no control flow, no privilege, memory
# operands through ModRM), so they are copied and the emulated CPU (a
# pentium3, monitor/cpuid.py) runs them or raises #UD itself, as the guest's
# CPU would.  syscall/sysret, 3DNow! and the three-byte maps stay #UD.
IDENT_UNSUPPORTED = frozenset({"mmx/sse", "prefetch", "emms", "fxsave-group", "cmpps", "movnti", "pinsrw",
                               "pextrw", "shufps", "popcnt", "fisttp"})
STATUS_UNSUPPORTED = 4


def copied_as_is(insn) -> bool:
    """A decoder-unsupported instruction the translators copy (above)."""
    return not insn.ok and insn.status == STATUS_UNSUPPORTED and insn.mnemonic in IDENT_UNSUPPORTED


# Instructions whose first operand is memory but which only read it.
_READS_MEMORY = frozenset({"cmp", "test", "push", "bt", "lgdt", "lidt", "lldt", "ltr", "lmsw", "verr", "verw",
                           "invlpg", "fld", "fild", "fbld", "fldcw", "fldenv", "frstor", "fcom", "fcomp",
                           "ficom", "ficomp", "bound", "jmp", "call"})


def may_write_memory(insn) -> bool:
    """Can this instruction store through an explicit operand (not the
    stack)?  On pages that are not write-protected, a unit ends after such
    an instruction, so that a store into the unit's own later bytes is seen
    by the next unit's entry check (self-modifying code, docs/real-mode-bt.md)."""
    if copied_as_is(insn):
        return True                          # (SSE/FXSAVE stores: the decoder does not say)
    if not insn.ok:
        return False
    ops = insn.operands
    if not ops:
        return False
    kind = ops[0][0]
    if kind == "str_dst":
        return True                          # stos movs ins (scas/cmps have it second)
    if kind == "mem":
        return insn.mnemonic not in _READS_MEMORY
    return insn.mnemonic in ("xchg", "xadd") and any(o[0] == "mem" for o in ops)


# Valid in protected mode only: #UD in real mode (SDM: "Real-Address Mode Exceptions").
REAL_MODE_UD = {"arpl", "sldt", "str", "lldt", "ltr", "verr", "verw", "lar", "lsl"}


def real_key(cs: int, ip: int, base: int | None = None) -> tuple:
    """The TC key of a real-mode unit (`base`: CS's base when not CS x 16)."""
    return ("real", cs, ip) if base is None else ("real", cs, ip, base)


def _abs32(addr: int) -> bytes:
    return struct.pack("<I", addr & 0xFFFFFFFF)


class Emitter:
    """Builds one unit's code at a known TC address."""

    def __init__(self, start: int):
        self.start = start
        self.code = bytearray()

    @property
    def here(self) -> int:
        return self.start + len(self.code)

    def emit(self, data: bytes) -> int:
        at = self.here
        self.code += data
        return at

    def callout_site(self, index: int) -> int:
        return self.emit(bytes([abi.CALLOUT_OPCODE]) + struct.pack("<I", index))

    def rel32(self, opcode: bytes, target: int) -> None:
        end = self.here + len(opcode) + 4
        self.emit(opcode + struct.pack("<i", target - end))


class RealModeTranslator:
    """Translates (cs, ip) of 16-bit real-mode code into TC units."""

    def __init__(self, tc: TranslationCache, callouts: CalloutTable, read_linear, trace_page,
                 a20_mask=lambda: 0xFFFFFFFF, is_checked=lambda pfn: False,
                 ivt_base=lambda: 0, layout=None, interrupt_shadow=None):
        self.abi = layout or abi.DEFAULT     # monitor-data addresses (bt/abi.py DataLayout)
        # (cs, ip) right after sti / mov ss / pop ss: no interrupt is taken there
        self.interrupt_shadow = interrupt_shadow if interrupt_shadow is not None else set()
        self.tc = tc
        self.callouts = callouts
        self.read_linear = read_linear     # (linear, size) -> bytes of guest code
        self.trace_page = trace_page       # (pfn) -> None: write-protect a code page
        self.a20_mask = a20_mask
        self.is_checked = is_checked       # (pfn) -> True: validate units of that page at entry
        self.ivt_base = ivt_base           # () -> the real-mode IVT base (IDTR), baked into int n
        self._cs_base = None               # CS's base while translating, when it is not CS x 16

    # -- entry point ------------------------------------------------------------

    def translate(self, cs: int, ip: int, base: int | None = None) -> Unit:
        """The unit for cs:ip.  `base` is CS's base when it is not CS x 16:
        between the `mov cr0` that clears PE and the far jump that reloads
        CS, real-mode code runs with the protected-mode base still cached
        (boot loaders' PM -> RM thunks).  Such units are keyed on the base
        too, and every far or indirect transfer in them is a callout."""
        if base is not None and base == cs << 4:
            base = None
        key = real_key(cs, ip, base)
        unit = self.tc.lookup(key)
        if unit is not None:
            return unit
        if self.tc.room() < MAX_UNIT_BYTES:
            raise TCFull()
        self._cs_base = base
        try:
            return self._translate(key, cs, ip)
        finally:
            self._cs_base = None

    # -- the work -----------------------------------------------------------------

    def _linear(self, cs: int, ip: int) -> int:
        base = cs << 4 if self._cs_base is None else self._cs_base
        return (base + (ip & 0xFFFF)) & self.a20_mask()

    def _scan(self, cs: int, ip: int) -> list[tuple]:
        """Decode one unit's guest instructions: [(ip, next_ip, insn, raw, linear)]."""
        out = []
        while len(out) < MAX_INSNS:
            linear = self._linear(cs, ip)
            raw = self.read_linear(linear, 15)
            insn = decode(raw, ip, 16)
            length = insn.length if insn.ok or copied_as_is(insn) else 1
            bios = self._is_bios_callout(insn, linear)
            if bios:
                length = 3                         # ud2 + the service byte
            next_ip = (ip + length) & 0xFFFF
            out.append((ip, next_ip, insn, raw, linear, bios))
            if self._ends(insn, bios):
                break
            if (self.is_checked(linear >> 12) or self.is_checked((linear + length - 1) >> 12)) \
                    and may_write_memory(insn):
                break                              # (a store may change the rest: end here)
            ip = next_ip
        return out

    def _ends(self, insn, bios: bool) -> bool:
        """Does the unit end after this instruction?  (Mirrors what _one emits.)"""
        if copied_as_is(insn):
            return False
        if not insn.ok or insn.mnemonic in REAL_MODE_UD:
            return True
        if bios:
            return False
        if insn.flow != Flow.NONE:
            return True
        sens = insn.sensitive
        return sens == Sens.IO or (sens == Sens.SYSREG and insn.mnemonic in MODE_CHANGING)

    def _translate(self, key, cs: int, ip: int) -> Unit:
        plan = self._scan(cs, ip)
        first_linear = plan[0][4]
        guest_len = sum(((nxt - cur) & 0xFFFF) for cur, nxt, *_ in plan)
        pages = sorted({p[4] >> 12 for p in plan} | {(p[4] + ((p[1] - p[0]) & 0xFFFF) - 1) >> 12 for p in plan})
        checked = any(self.is_checked(p) for p in pages)
        em = self._new_emitter()
        fixups = self._emit_check(em, first_linear, guest_len) if checked else []
        insn_map: list[tuple[int, int]] = []
        ended = False
        for cur, nxt, insn, raw, linear, bios in plan:
            insn_map.append((em.here, cur))
            ended = self._one(em, cs, cur, nxt, insn, raw, linear, bios)
            self._note_shadow(cs, insn, nxt)
        if not ended:
            self._stub(em, cs, plan[-1][1])         # fall through into the next unit
        if fixups:
            self._emit_stale_path(em, cs, plan[0][0], fixups)
        return self._commit(em, key, guest_len, tuple(pages), insn_map, len(plan), checked)

    # -- pieces shared with the protected-mode translator (bt/protmode.py) ----------

    def _note_shadow(self, cs, insn, next_ip: int) -> None:
        """sti, mov ss and pop ss hold off interrupts until the next
        instruction completes (SDM vol. 3, 6.8.3): the monitor must not
        deliver one at `next_ip` (guests rely on `sti; hlt`, `sti; sysexit`)."""
        if insn.ok and insn.opmap == 1 and (insn.opcode in (0xFB, 0x17)
                                            or (insn.opcode == 0x8E and insn.reg == 2)):
            self.interrupt_shadow.add((cs, next_ip))

    def _new_emitter(self) -> Emitter:
        return Emitter(self.tc.top)

    def _emit_stale_path(self, em: Emitter, cs, ip: int, fixups: list[int]) -> None:
        """The check's mismatch path: restore ECX, then the STALE callout."""
        stale = em.emit(b"\x2e\x8b\x0d" + _abs32(self.abi.SCRATCH_ECX))
        self._callout(em, Kind.STALE, cs, ip, ip, None)
        for at in fixups:
            struct.pack_into("<i", em.code, at - em.start, stale - (at + 4))

    def _commit(self, em: Emitter, key, guest_len: int, pages: tuple, insn_map, n_insns: int,
                checked: bool) -> Unit:
        if len(em.code) > self.tc.room():
            raise TCFull()
        unit = Unit(key=key, tc_start=em.start, tc_end=em.here, guest_len=guest_len,
                    pages=tuple(pages), insn_map=insn_map, n_insns=n_insns)
        unit.checked = checked
        self.tc.write_fresh(em.start, bytes(em.code))
        self.tc.top = em.here
        self.tc.add(unit)
        if not checked:
            for page in unit.pages:
                self.trace_page(page)
        return unit

    def _emit_check(self, em: Emitter, linear: int, length: int) -> list[int]:
        """Translation validation for units on pages that are not write-protected.

        Compares the guest bytes with their values at translation time, four
        at a time, without touching the guest's flags (mov + lea + jecxz);
        returns the positions of the rel32 fields to point at the stale path."""
        data = self._code_bytes(linear, length)
        fixups = []
        em.emit(b"\x2e\x89\x0d" + _abs32(self.abi.SCRATCH_ECX))        # save ECX
        chunks = []
        if length >= 4:
            chunks = [(off, 4) for off in range(0, length - 3, 4)]
            if length % 4:
                chunks.append((length - 4, 4))                    # overlapping tail
        else:
            chunks = [(0, 2)] if length >= 2 else []
            if length % 2:
                chunks.append((length - 1, 1))
        for off, size in chunks:
            value = int.from_bytes(data[off:off + size], "little")
            load = {4: b"\x2e\x8b\x0d", 2: b"\x2e\x0f\xb7\x0d", 1: b"\x2e\x0f\xb6\x0d"}[size]
            em.emit(load + _abs32(linear + off))                 # mov/movzx ecx, cs:[linear]
            em.emit(b"\x8d\x89" + struct.pack("<I", (-value) & 0xFFFFFFFF))  # lea ecx, [ecx - value]
            em.emit(b"\xe3\x05")                                 # jecxz next
            fixups.append(em.emit(b"\xe9\0\0\0\0") + 1)           # jmp stale
        em.emit(b"\x2e\x8b\x0d" + _abs32(self.abi.SCRATCH_ECX))        # restore ECX
        return fixups

    def _code_bytes(self, linear: int, length: int) -> bytes:
        return self.read_linear(linear, length)

    @staticmethod
    def _is_bios_callout(insn, linear: int) -> bool:
        """ud2 followed by a service byte, honoured only inside the BIOS ROM."""
        return (insn.ok and insn.flow == Flow.UD and insn.opmap == 2 and insn.opcode == 0x0B
                and 0xF0000 <= linear <= 0xFFFFD)

    def _callout(self, em: Emitter, kind: Kind, cs, ip, next_ip, insn, **extra) -> int:
        rec = Callout(kind=kind, cs=cs, ip=ip, next_ip=next_ip, insn=insn, **extra)
        index = self.callouts.add(rec)
        rec.site = em.callout_site(index)
        rec.resume = em.here
        self.last_callout = rec
        return rec.site

    def _stub(self, em: Emitter, cs: int, target: int) -> int:
        """A continuation: a CHAIN callout until the target is translated."""
        return self._callout(em, Kind.CHAIN, cs, target, target, None, target=target)

    def _one(self, em, cs, ip, next_ip, insn, raw, linear, bios=False) -> bool:
        """Emit one guest instruction; True when the unit ends here."""
        if copied_as_is(insn):
            em.emit(self._ident(insn, raw))
            return False
        if not insn.ok or insn.mnemonic in REAL_MODE_UD:
            self._callout(em, Kind.UD, cs, ip, next_ip, insn)
            return True
        flow = insn.flow                  # an int; compares equal to the Flow members
        if bios:
            self._callout(em, Kind.BIOS, cs, ip, next_ip, insn, service=raw[2])
            return False
        if flow == Flow.JMP:
            self._stub(em, cs, insn.target & 0xFFFF)
            return True
        if flow == Flow.JCC:
            # jcc rel32 -> taken stub (placed after the fall-through stub)
            jcc_at = em.emit(b"\x0f" + bytes([0x80 | (insn.opcode & 0x0F)]) + b"\0\0\0\0")
            self._stub(em, cs, next_ip)                # fall-through stub, right after the jcc
            taken = self._stub(em, cs, insn.target & 0xFFFF)
            self.last_callout.jcc_field = jcc_at + 2   # (chaining re-points the jcc itself)
            struct.pack_into("<i", em.code, jcc_at - em.start + 2, taken - (jcc_at + 6))
            return True
        if flow in (Flow.LOOP, Flow.JCXZ):
            # [67] loop/jcxz +2 ; jmp short +5 ; taken stub ; fall-through stub
            prefix = b"\x67" if insn.addrsize == 16 else b""
            em.emit(prefix + bytes([insn.opcode, 0x02]) + b"\xeb\x05")
            self._stub(em, cs, insn.target & 0xFFFF)
            self._stub(em, cs, next_ip)
            return True
        if flow == Flow.CALL:
            if insn.eff_opsize == 16:
                em.emit(b"\x66\x68" + struct.pack("<H", next_ip))   # push word next_ip
            else:
                em.emit(b"\x68" + struct.pack("<I", next_ip))       # push dword next_ip
            self._stub(em, cs, insn.target & 0xFFFF)
            return True
        inline = self._cs_base is None           # (in-TC lookups know CS x 16 only)
        if inline and flow in (Flow.RET, Flow.JMP_IND, Flow.CALL_IND) and self._inline_indirect(em, insn, raw, next_ip):
            return True
        if inline and flow in FAR_FLOWS and self._inline_far(em, cs, ip, next_ip, insn, raw):
            return True
        if flow in FLOW_CALLOUT:
            self._callout(em, FLOW_CALLOUT[flow], cs, ip, next_ip, insn)
            return True
        sens = insn.sensitive
        if sens == Sens.SEG_READ:
            return self._seg_read(em, cs, ip, next_ip, insn, raw)
        if sens == Sens.SEG_LOAD and self._inline_seg_load(em, insn, raw):
            return False
        if sens == Sens.FLAGS:
            # cli sti pushf popf: the guest's IF is the real CPU's IF in BT
            # (Unicorn delivers no interrupts itself), so these are plain copies.
            em.emit(self._ident(insn, raw))
            return False
        if sens in SENS_CALLOUT:
            kind = SENS_CALLOUT[sens]
            self._callout(em, kind, cs, ip, next_ip, insn)
            if kind == Kind.SYSREG and insn.mnemonic in MODE_CHANGING:
                # The unit ends here (the mode or the IVT base may change); a
                # handler that continues inline falls through into the next unit.
                self._stub(em, cs, next_ip)
                return True
            return False
        if sens == Sens.CACHE_TLB:
            return False                   # invd / wbinvd / invlpg: nothing to do in real mode
        if sens == Sens.IO:
            em.emit(self._ident(insn, raw))
            self._stub(em, cs, next_ip)    # U16: end the unit after I/O, falling through
            return True
        em.emit(self._ident(insn, raw))
        return False

    def _inline_indirect(self, em, insn, raw, next_ip) -> bool:
        """ret / jmp r/m16 / call r/m16 through the in-TC lookup (bt/lookup.py).

        Only the 16-bit forms without an immediate: the others stay callouts."""
        if insn.eff_opsize != 16:
            return False
        if insn.flow == Flow.RET:
            em.emit(save_eax(self.abi) + b"\x66\x58")       # save EAX; pop ax
            if insn.opcode == 0xC2:
                # ret imm16: SP += imm16 with 16-bit wrap and no flags: lea sp, [esp+imm]
                em.emit(b"\x66\x8d\xa4\x24" + struct.pack("<I", insn.imm & 0xFFFF))
            em.emit(lookup_jump(self.abi))
            return True
        # jmp/call r/m16: mov ax, r/m16 (same operand, reg field 0), then as ret.
        np = insn.nprefixes
        body = bytearray(raw[np:insn.length])
        if body[0] != 0xFF:
            return False
        body[0] = 0x8B
        body[1] &= 0xC7                            # ModRM reg field -> EAX
        fake = bytes(raw[:np]) + bytes(body)
        load = self._ident(insn, fake)
        em.emit(save_eax(self.abi) + load)
        if insn.flow == Flow.CALL_IND:
            em.emit(b"\x66\x68" + struct.pack("<H", next_ip))   # push word next_ip
        em.emit(lookup_jump(self.abi))
        return True

    def _inline_seg_load(self, em, insn, raw) -> bool:
        """mov sreg, r/m16 and pop sreg without leaving the TC.

        Real-mode semantics: the value goes to the virtual segment register,
        base = value * 16 into the shadow slot (the hidden limit stays, as on
        hardware), then the real register is reloaded from that slot.  EAX is
        the scratch register; no guest flag is touched (lea, bswap, mov)."""
        op, opmap = insn.opcode, insn.opmap
        pops = {(1, 0x07): 0, (1, 0x17): 2, (1, 0x1F): 3, (2, 0xA1): 4, (2, 0xA9): 5}
        if opmap == 1 and op == 0x8E:
            sreg = insn.reg
            if sreg in (1,) or sreg > 5:
                return False                                   # mov cs / invalid: callout (#UD)
            if insn.mod == 3:
                fetch = b"\x66\x8b" + bytes([0xC0 | insn.rm])  # mov ax, r16
            else:
                np = insn.nprefixes
                body = bytearray(raw[np:insn.length])
                body[0] = 0x8B
                body[1] &= 0xC7                                 # mov ax, m16 (same operand)
                fake = bytes(raw[:np]) + bytes(body)
                fetch = self._ident(insn, fake)
                if insn.eff_opsize != 16:
                    return False
        elif (opmap, op) in pops:
            sreg = pops[(opmap, op)]
            if insn.eff_opsize != 16:
                return False                                   # 32-bit pop sreg: callout
            fetch = b"\x66\x58"                                 # pop ax
        elif (opmap, op) in FAR_POINTER_LOADS:
            return self._inline_far_pointer_load(em, insn, raw, FAR_POINTER_LOADS[(opmap, op)])
        else:
            return False
        self._emit_slot_update(em, fetch, sreg)
        return True

    def _emit_slot_update(self, em, fetch: bytes, sreg: int, reload: bool = True) -> None:
        """Save EAX, run `fetch` (leaves the new value in AX), then update the
        virtual register and the slot's base, reload, restore EAX."""
        em.emit(b"\x2e\xa3" + _abs32(self.abi.SCRATCH_EAX))            # mov cs:[SCRATCH_EAX], eax
        em.emit(fetch)
        em.emit(self._slot_write(sreg))
        if reload:
            em.emit(self._reload(sreg))
        em.emit(b"\x2e\xa1" + _abs32(self.abi.SCRATCH_EAX))            # mov eax, cs:[SCRATCH_EAX]

    def _slot_write(self, sreg: int) -> bytes:
        """AX = new segment value -> virtual register and slot base (clobbers EAX,
        touches no flag: movzx, lea, bswap, mov)."""
        desc = self.abi.slot_descriptor(sreg)
        return (b"\x2e\x66\xa3" + _abs32(self.abi.VSEG + 2 * sreg)     # mov cs:[VSEG+2s], ax
                + b"\x0f\xb7\xc0"                                 # movzx eax, ax
                + b"\x8d\x04\xc5\0\0\0\0"                        # lea eax, [eax*8]
                + b"\x8d\x04\x00"                                 # lea eax, [eax+eax]
                + b"\x2e\x66\xa3" + _abs32(desc + 2)              # base 15:0
                + b"\x0f\xc8"                                      # bswap eax: base 23:16 -> AH
                + b"\x2e\x88\x25" + _abs32(desc + 4))             # mov cs:[desc+4], ah

    def _slot_write_const(self, sreg: int, value: int) -> bytes:
        """The same for a value known at translation time (immediates)."""
        desc, base = self.abi.slot_descriptor(sreg), (value & 0xFFFF) << 4
        return (b"\x2e\x66\xc7\x05" + _abs32(self.abi.VSEG + 2 * sreg) + struct.pack("<H", value & 0xFFFF)
                + b"\x2e\x66\xc7\x05" + _abs32(desc + 2) + struct.pack("<H", base & 0xFFFF)
                + b"\x2e\xc6\x05" + _abs32(desc + 4) + bytes([(base >> 16) & 0xFF]))

    def _reload(self, sreg: int) -> bytes:
        """mov sreg, cs:[SLOT_SELS+2s]: the real register takes the slot again."""
        return b"\x2e\x8e" + bytes([0x05 | sreg << 3]) + _abs32(self.abi.SLOT_SELS + 2 * sreg)

    def _inline_far(self, em, cs, ip, next_ip, insn, raw) -> bool:
        """Far control flow in the TC (16-bit forms): the new CS goes to the
        virtual register and the CS data slot, the IP through LOOKUP, whose
        landing pads check the CS (bt/lookup.py).  Direct far jumps and calls
        know both halves and chain like near ones."""
        if insn.eff_opsize != 16:
            return False
        flow = insn.flow
        push_return = b"\x66\x68" + struct.pack("<H", cs) + b"\x66\x68" + struct.pack("<H", next_ip)
        if flow in (Flow.JMPF, Flow.CALLF) and insn.mem is None:        # ptr16:16
            new_cs, new_ip = insn.far_target
            if flow == Flow.CALLF:
                em.emit(push_return)
            em.emit(self._slot_write_const(1, new_cs))
            self._stub(em, new_cs, new_ip)
            return True
        save = b"\x2e\xa3" + _abs32(self.abi.SCRATCH_EAX)
        keep_ip = b"\x2e\x66\xa3" + _abs32(self.abi.SCRATCH_IP)                 # mov cs:[SCRATCH_IP], ax
        take_ip = b"\x2e\x66\xa1" + _abs32(self.abi.SCRATCH_IP)                 # mov ax, cs:[SCRATCH_IP]
        if flow in (Flow.JMPF_IND, Flow.CALLF_IND):                          # m16:16
            ip_word = self._mem_operand(insn, raw, opcode=b"\x8b", reg=0, extra_disp=0)
            cs_word = self._mem_operand(insn, raw, opcode=b"\x8b", reg=0, extra_disp=2)
            if ip_word is None or cs_word is None:
                return False
            em.emit(save + ip_word + keep_ip + cs_word)
            if flow == Flow.CALLF_IND:
                em.emit(push_return)
        elif flow in (Flow.RETF, Flow.IRET):
            # pop word cs:[SCRATCH_IP]; pop ax (CS); [popf]; [lea sp, [esp+imm]]
            em.emit(save + b"\x2e\x66\x8f\x05" + _abs32(self.abi.SCRATCH_IP) + b"\x66\x58")
            if flow == Flow.IRET:
                em.emit(b"\x66\x9d")                                          # popf: the guest's flags and IF
            elif insn.opcode == 0xCA:
                em.emit(b"\x66\x8d\xa4\x24" + struct.pack("<I", insn.imm & 0xFFFF))
        elif flow in (Flow.INT, Flow.INT3):
            if flow == Flow.INT and insn.opcode != 0xCD:
                return False                       # int1 (F1, ICEBP): a #DB trap, left to the callout
            vector = 3 if flow == Flow.INT3 else insn.imm & 0xFF
            entry = self.ivt_base() + 4 * vector
            # pushf; cli; push cs; push next_ip; CS:IP from the IVT (guest memory, flat).
            # Hardware also clears TF and AC; that needs a popf through the guest's
            # stack, whose extra write would land past the segment when SP wraps, so
            # TF (not virtualized anyway) and AC (no effect in real mode) stay set:
            # a known difference (monitor/fuzz/campaign.py KNOWN_BUGS "ac-flag").
            em.emit(b"\x66\x9c\xfa" + push_return + save
                    + b"\x2e\x66\xa1" + _abs32(entry) + keep_ip
                    + b"\x2e\x66\xa1" + _abs32(entry + 2))
        else:
            return False
        em.emit(self._slot_write(1) + take_ip + lookup_jump(self.abi))
        return True

    def _inline_far_pointer_load(self, em, insn, raw, sreg: int) -> bool:
        """lds/les/lss/lfs/lgs r16, m16:16 in the TC.

        1. read the segment word (at disp+2) through the *old* segments into AX,
           update the virtual register and the slot (not reloaded yet);
        2. load the offset word into the target register (still old segments,
           so `lds si, [si]` reads both halves from the same address);
        3. restore EAX, reload the real segment register."""
        if insn.eff_opsize != 16 or insn.mod == 3 or insn.reg == 0:
            return False                      # 32-bit forms, invalid reg form, or AX as target
        seg_word = self._mem_operand(insn, raw, opcode=b"\x8b", reg=0, extra_disp=2)
        offset = self._mem_operand(insn, raw, opcode=b"\x8b", reg=insn.reg, extra_disp=0)
        if seg_word is None or offset is None:
            return False
        self._emit_slot_update(em, seg_word, sreg, reload=False)
        em.emit(offset)
        em.emit(self._reload(sreg))
        return True

    def _mem_operand(self, insn, raw, opcode: bytes, reg: int, extra_disp: int, tail: bytes = b"") -> bytes | None:
        """Re-encode insn's 16-bit memory operand as `opcode /reg` with the
        displacement moved by extra_disp (16-bit wrap, as the guest's EA wraps)
        and `tail` (an immediate) after it, keeping its prefixes (a cs:
        override still borrows FS around the whole instruction)."""
        if insn.addrsize != 16:
            return None
        np = insn.nprefixes
        mod, rm = insn.mod, insn.rm
        disp = insn.mem.disp if insn.mem is not None else 0
        if mod == 0 and rm == 6:
            modrm, dbytes = (0 << 6) | (reg << 3) | 6, struct.pack("<H", (disp + extra_disp) & 0xFFFF)
        elif extra_disp == 0 and mod == 0:
            modrm, dbytes = (reg << 3) | rm, b""
        else:
            modrm, dbytes = (2 << 6) | (reg << 3) | rm, struct.pack("<H", (disp + extra_disp) & 0xFFFF)
        fake = bytes(raw[:np]) + opcode + bytes([modrm]) + dbytes + tail
        return self._ident(_Reencoded(insn, len(fake)), fake)

    # -- instruction rewriting ------------------------------------------------------

    def _ident(self, insn, raw: bytes) -> bytes:
        """Copy with 0x66/0x67 toggled; a cs: override becomes an FS borrow."""
        np = insn.nprefixes
        body = bytes(raw[np:insn.length])
        kept = [b for b in raw[:np] if b not in (0x66, 0x67)]
        borrow = insn.segment == "cs"
        if borrow:
            kept = [0x64 if b == 0x2E else b for b in kept]
        if insn.eff_opsize == 16:
            kept.append(0x66)
        if insn.addrsize == 16:
            kept.append(0x67)
        out = bytes(kept) + body
        if borrow:
            # mov cs:[SCRATCH_FS], fs ; mov fs, cs:[CS_SLOT_SEL] ; insn ; mov fs, cs:[SCRATCH_FS]
            out = (b"\x2e\x8c\x25" + _abs32(self.abi.SCRATCH_FS) + b"\x2e\x8e\x25" + _abs32(self.abi.CS_SLOT_SEL)
                   + out + b"\x2e\x8e\x25" + _abs32(self.abi.SCRATCH_FS))
        return out

    def _seg_read(self, em, cs, ip, next_ip, insn, raw, cs_rec=None) -> bool:
        """Segment reads from the virtual registers; `cs` is the guest's CS
        value, `cs_rec` what callout records carry (the code context in
        protected mode, the CS value in real mode)."""
        cs_rec = cs if cs_rec is None else cs_rec
        op = insn.opcode
        if op == 0x8C and insn.mod == 3:                  # mov r16/r32, sreg
            sreg, reg = insn.reg, insn.rm
            if sreg > 5:
                self._callout(em, Kind.UD, cs_rec, ip, next_ip, insn)
                return True
            if sreg == 1:                                  # mov r16/r32, cs: CS is known here
                if insn.eff_opsize == 32:                  # a 32-bit destination is zero-extended
                    em.emit(bytes([0xB8 + reg]) + struct.pack("<I", cs))
                else:
                    em.emit(b"\x66" + bytes([0xB8 + reg]) + struct.pack("<H", cs))
            else:                                          # movzx r32, word cs:[VSEG+2*sreg] / mov r16, ...
                addr = self.abi.VSEG + 2 * sreg
                if insn.eff_opsize == 32:
                    em.emit(b"\x2e\x0f\xb7" + bytes([0x05 | (reg << 3)]) + _abs32(addr))
                else:
                    em.emit(b"\x2e\x66\x8b" + bytes([0x05 | (reg << 3)]) + _abs32(addr))
            return False
        push_sreg = {0x06: 0, 0x0E: 1, 0x16: 2, 0x1E: 3}
        if insn.opmap == 1 and op in push_sreg or insn.opmap == 2 and op in (0xA0, 0xA8):
            sreg = push_sreg[op] if insn.opmap == 1 else (4 if op == 0xA0 else 5)
            if insn.eff_opsize == 16:
                if sreg == 1:
                    em.emit(b"\x66\x68" + struct.pack("<H", cs))          # push word imm16
                else:
                    em.emit(b"\x2e\x66\xff\x35" + _abs32(self.abi.VSEG + 2 * sreg))  # push word cs:[vseg]
                return False
            # A 32-bit push of a segment register writes 16 bits into a 4-byte slot:
            # rare in real mode, left to the callout.
        if op == 0x8C and insn.reg <= 5 and insn.eff_opsize == 16:   # mov m16, sreg
            if insn.reg == 1:                                      # CS is known: mov word [m], imm16
                store = self._mem_operand(insn, bytes(raw), opcode=b"\xc7", reg=0, extra_disp=0,
                                          tail=struct.pack("<H", cs))
                if store is not None:
                    em.emit(store)
                    return False
            else:
                store = self._mem_operand(insn, bytes(raw), opcode=b"\x89", reg=0, extra_disp=0)
                if store is not None:
                    em.emit(b"\x2e\xa3" + _abs32(self.abi.SCRATCH_EAX)                    # save EAX
                            + b"\x2e\x66\xa1" + _abs32(self.abi.VSEG + 2 * insn.reg)     # mov ax, cs:[VSEG+2s]
                            + store                                                   # mov [m], ax
                            + b"\x2e\xa1" + _abs32(self.abi.SCRATCH_EAX))                # restore EAX
                    return False
        self._callout(em, Kind.SEG_READ, cs_rec, ip, next_ip, insn)
        return False
