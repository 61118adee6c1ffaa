"""The protected-mode translator: ring-0 (and BT-only ring-1..3) guest code,
16- and 32-bit, into the TC.

It shares the emitter and most rules with the real-mode translator
(bt/realmode.py): IDENT copies with 0x66/0x67 adjusted to the TC's 32-bit code
segment, `cs:` operands borrowing FS, direct branches chained through
continuation stubs, units of up to 12 instructions ending at control flow.
What differs (docs/protected-mode.md):

* a unit is keyed by the *code context* (CS selector, CS base, default size,
  CPL) and EIP, and reads its guest bytes through the guest's page tables; its
  write traces sit on the physical frames;
* every segment load, far transfer, `int`/`iret`, `ret` and indirect branch is
  a callout: the monitor performs the protected-mode checks (descriptor types,
  privilege, present bits) and may leave BT for direct execution;
* `cli sti pushf popf` and `in/out` are IDENT only at guest CPL 0, where the
  real CPU (always at CPL 0 in the TC) behaves exactly as the guest's would;
  at guest CPL 1-3 they are callouts that apply the guest's IOPL;
* system instructions (`lgdt lidt lldt ltr`, control and debug registers,
  `invlpg`, MSRs, `sysenter sysexit`, `hlt`, `cpuid`) are callouts, and the
  unit ends after the ones that can change the mode or the address space.
"""

from __future__ import annotations

from typing import NamedTuple

from bt.callouts import Kind
from bt.decoder import decode
from bt.opcodes import Flow, Sens
from bt.realmode import MAX_INSNS, MAX_UNIT_BYTES, RealModeTranslator, copied_as_is, may_write_memory
from bt.tc import TCFull, Unit


class CodeContext(NamedTuple):
    """What a protected-mode translation depends on besides EIP."""
    selector: int      # the guest's CS selector
    base: int          # CS base (from its cached descriptor)
    code32: bool       # CS.D: default operand and address size 32
    cpl: int           # the guest's current privilege level


# Control flow that is always a callout in protected mode.
PM_FLOW_CALLOUT = {
    Flow.RET: Kind.RET, Flow.RETF: Kind.RETF, Flow.IRET: Kind.IRET,
    Flow.JMP_IND: Kind.JMP_IND, Flow.CALL_IND: Kind.CALL_IND,
    Flow.JMPF: Kind.JMPF, Flow.JMPF_IND: Kind.JMPF,
    Flow.CALLF: Kind.CALLF, Flow.CALLF_IND: Kind.CALLF,
    Flow.INT: Kind.INT, Flow.INT3: Kind.INT, Flow.INTO: Kind.INT,
    Flow.HLT: Kind.HLT, Flow.UD: Kind.UD, Flow.SYS: Kind.SYS,
}
# Sensitive classes that are callouts after which the unit ends (the mode,
# the address space or the privilege level may change).
PM_SENS_ENDING = {
    Sens.SYSREG: Kind.SYSREG, Sens.CACHE_TLB: Kind.SYSREG, Sens.MSR: Kind.MSR,
    Sens.HLT: Kind.HLT, Sens.INT: Kind.INT, Sens.IRET: Kind.IRET,
    Sens.SYSCALL: Kind.SYS, Sens.RDPMC: Kind.UD,
}
# System instructions whose callout continues inside the unit.
SYSREG_CONTINUING = {"sgdt", "sidt", "sldt", "str", "smsw", "lsl", "lar", "verr", "verw", "clts",
                     "lgdt", "lidt", "lldt", "ltr"}


class ProtectedModeTranslator(RealModeTranslator):
    """Translates (CodeContext, eip) of protected-mode code into TC units.

    `read_virtual(linear, size)` returns (bytes, [physical page numbers]) of
    guest code, as many bytes as are mapped (possibly fewer than asked);
    it raises the MMU's PageFault when not even the first byte is mapped."""

    def __init__(self, tc, callouts, read_virtual, trace_page,
                 is_checked=lambda pfn: False, layout=None, interrupt_shadow=None):
        super().__init__(tc, callouts, None, trace_page, is_checked=is_checked,
                         layout=layout, interrupt_shadow=interrupt_shadow)
        self.read_virtual = read_virtual
        self.dispatch = 0          # this TC generation's PM lookup dispatch stub (machine.py sets it)

    # -- entry point ------------------------------------------------------------

    def translate(self, ctx: CodeContext, eip: int, phys_pages=None) -> Unit:
        key = ("pm", ctx, eip)
        unit = self.tc.lookup(key)
        if unit is not None:
            if phys_pages is None or phys_pages(unit) == unit.pages:
                return unit
            self.tc.invalidate_unit(unit)          # the guest remapped this code
        if self.tc.room() < MAX_UNIT_BYTES:
            raise TCFull()
        return self._translate_pm(key, ctx, eip)

    def _code_bytes(self, linear: int, length: int) -> bytes:
        out = b""
        while len(out) < length:
            raw, _ = self.read_virtual((linear + len(out)) & 0xFFFFFFFF, min(15, length - len(out)))
            out += raw
        return out[:length]

    # -- scanning ----------------------------------------------------------------

    def _scan_pm(self, ctx: CodeContext, eip: int) -> list[tuple]:
        bits = 32 if ctx.code32 else 16
        mask = 0xFFFFFFFF if ctx.code32 else 0xFFFF
        out = []
        while len(out) < MAX_INSNS:
            linear = (ctx.base + eip) & 0xFFFFFFFF
            raw, pages = self.read_virtual(linear, 15)   # PageFault if nothing is mapped
            insn = decode(raw + bytes(15 - len(raw)), eip, bits)
            length = insn.length if insn.ok or copied_as_is(insn) else 1
            if length > len(raw):
                if not out:
                    # The instruction runs into an unmapped page: the fetch faults there.
                    self.read_virtual((linear + len(raw)) & 0xFFFFFFFF, 1)
                break                                    # end the unit before it
            next_ip = (eip + length) & mask
            out.append((eip, next_ip, insn, raw, linear, pages[:1 + ((linear & 0xFFF) + length - 1 >> 12)]))
            if self._ends_pm(insn, ctx):
                break
            if any(self.is_checked(p) for p in out[-1][5]) and may_write_memory(insn):
                break                                    # (a store may change the rest: end here)
            eip = next_ip
        return out

    @staticmethod
    def _ends_pm(insn, ctx: CodeContext) -> bool:
        if copied_as_is(insn):
            return False
        if not insn.ok or insn.flow != Flow.NONE:
            return True
        sens = insn.sensitive
        if sens in PM_SENS_ENDING:
            return not (sens == Sens.SYSREG and insn.mnemonic in SYSREG_CONTINUING)
        if sens == Sens.IO or sens == Sens.SEG_LOAD:
            return True       # I/O: U16; a segment load may fault or change SS's size
        if sens == Sens.FLAGS and ctx.cpl > 0:
            return True
        return False

    def _translate_pm(self, key, ctx: CodeContext, eip: int) -> Unit:
        plan = self._scan_pm(ctx, eip)
        mask = 0xFFFFFFFF if ctx.code32 else 0xFFFF
        guest_len = sum(((nxt - cur) & mask) for cur, nxt, *_ in plan)
        pages = tuple(sorted({p for entry in plan for p in entry[5]}))
        checked = any(self.is_checked(p) for p in pages)
        em = self._new_emitter()
        self._eax_scratch = []
        fixups = self._emit_check(em, plan[0][4], guest_len) if checked else []
        insn_map: list[tuple[int, int]] = []
        ended = False
        for cur, nxt, insn, raw, linear, _pages in plan:
            insn_map.append((em.here, cur))
            ended = self._one_pm(em, ctx, cur, nxt, insn, raw)
            self._note_shadow(ctx, insn, nxt)
        if not ended:
            self._stub(em, ctx, plan[-1][1])
        if fixups:
            self._emit_stale_path(em, ctx, plan[0][0], fixups)
        unit = self._commit(em, key, guest_len, pages, insn_map, len(plan), checked)
        unit.eax_scratch = tuple(self._eax_scratch)
        return unit

    # -- indirect near branches through the in-TC lookup ------------------------------

    def _inline_indirect_pm(self, em, ctx: CodeContext, insn, raw, next_ip: int) -> bool:
        """32-bit `ret`, `jmp r/m32`, `call r/m32` without leaving the TC:
        the target goes to EAX (the guest's EAX saved first), then the
        generation's dispatch stub and a landing pad (bt/lookup.py).  A fault
        between the load and the dispatch (only `call`'s push can fault there)
        is restartable: the unit records the range where EAX is scratch."""
        if not self.dispatch or not ctx.code32 or insn.eff_opsize != 32:
            return False
        save = b"\x2e\xa3" + self.abi.SCRATCH_EAX.to_bytes(4, "little")
        if insn.flow == Flow.RET:
            if insn.opcode != 0xC3:
                return False                               # ret imm16: SP vs ESP depends on SS (callout)
            em.emit(save + b"\x58")                       # pop eax
            self._jmp(em, self.dispatch)
            return True
        np = insn.nprefixes
        body = bytearray(raw[np:insn.length])
        if body[0] != 0xFF:
            return False
        body[0] = 0x8B
        body[1] &= 0xC7                                    # mov eax, r/m32 (same operand)
        load = self._ident(insn, bytes(raw[:np]) + bytes(body))
        em.emit(save + load)
        if insn.flow == Flow.CALL_IND:
            start = em.here
            em.emit(b"\x68" + next_ip.to_bytes(4, "little"))   # push next_ip
            self._eax_scratch.append((start, em.here))
        self._jmp(em, self.dispatch)
        return True

    @staticmethod
    def _jmp(em, target: int) -> None:
        em.emit(b"\xe9" + (target - (em.here + 5)).to_bytes(4, "little", signed=True))

    # -- one instruction ---------------------------------------------------------------

    def _one_pm(self, em, ctx: CodeContext, ip: int, next_ip: int, insn, raw) -> bool:
        """Emit one guest instruction; True when the unit ends here."""
        if copied_as_is(insn):
            em.emit(self._ident(insn, raw))
            return False
        if not insn.ok:
            self._callout(em, Kind.UD, ctx, ip, next_ip, insn)
            return True
        flow = insn.flow
        tmask = 0xFFFF if insn.eff_opsize == 16 else 0xFFFFFFFF
        if flow == Flow.JMP:
            self._stub(em, ctx, insn.target & tmask)
            return True
        if flow == Flow.JCC:
            jcc_at = em.emit(b"\x0f" + bytes([0x80 | (insn.opcode & 0x0F)]) + b"\0\0\0\0")
            self._stub(em, ctx, next_ip)
            taken = self._stub(em, ctx, insn.target & tmask)
            self.last_callout.jcc_field = jcc_at + 2   # (chaining re-points the jcc itself)
            em.code[jcc_at - em.start + 2:jcc_at - em.start + 6] = (taken - (jcc_at + 6)).to_bytes(4, "little", signed=True)
            return True
        if flow in (Flow.LOOP, Flow.JCXZ):
            prefix = b"\x67" if insn.addrsize == 16 else b""
            em.emit(prefix + bytes([insn.opcode, 0x02]) + b"\xeb\x05")
            self._stub(em, ctx, insn.target & tmask)
            self._stub(em, ctx, next_ip)
            return True
        if flow == Flow.CALL:
            if insn.eff_opsize == 16:
                em.emit(b"\x66\x68" + (next_ip & 0xFFFF).to_bytes(2, "little"))
            else:
                em.emit(b"\x68" + next_ip.to_bytes(4, "little"))
            self._stub(em, ctx, insn.target & tmask)
            return True
        if flow in (Flow.RET, Flow.JMP_IND, Flow.CALL_IND) and self._inline_indirect_pm(em, ctx, insn, raw, next_ip):
            return True
        if flow in PM_FLOW_CALLOUT:
            self._callout(em, PM_FLOW_CALLOUT[flow], ctx, ip, next_ip, insn)
            return True
        sens = insn.sensitive
        if sens == Sens.SEG_READ:
            push_sreg = {0x06: 0, 0x0E: 1, 0x16: 2, 0x1E: 3} if insn.opmap == 1 else {0xA0: 4, 0xA8: 5}
            if insn.opcode in push_sreg and insn.opcode != 0x8C and insn.eff_opsize == 32:
                # 32-bit push sreg: the selector zero-extended (as Unicorn does); CS is known here
                sreg = push_sreg[insn.opcode]
                if sreg == 1:
                    em.emit(b"\x68" + ctx.selector.to_bytes(4, "little"))
                else:
                    em.emit(b"\x2e\xff\x35" + (self.abi.VSEG32 + 4 * sreg).to_bytes(4, "little"))
                return False
            if insn.mod != 3 and insn.opcode == 0x8C:
                # mov m16, sreg: the store may fault (paging), so no EAX scratch sequence
                self._callout(em, Kind.SEG_READ, ctx, ip, next_ip, insn)
                return False
            return self._seg_read(em, ctx.selector, ip, next_ip, insn, raw, cs_rec=ctx)
        if sens == Sens.SEG_LOAD:
            self._callout(em, Kind.SEG_LOAD, ctx, ip, next_ip, insn)
            self._stub(em, ctx, next_ip)
            return True
        if sens == Sens.FLAGS:
            if ctx.cpl == 0:
                em.emit(self._ident(insn, raw))      # the real CPU is at CPL 0 too
                return False
            self._callout(em, Kind.FLAGS, ctx, ip, next_ip, insn)
            return True
        if sens == Sens.IO:
            if ctx.cpl == 0:
                em.emit(self._ident(insn, raw))
            else:
                self._callout(em, Kind.IO, ctx, ip, next_ip, insn)   # U7: the monitor checks IOPL
            self._stub(em, ctx, next_ip)
            return True
        if sens == Sens.SYSREG and insn.mnemonic in SYSREG_CONTINUING:
            self._callout(em, Kind.SYSREG, ctx, ip, next_ip, insn)
            return False
        if sens in PM_SENS_ENDING:
            self._callout(em, PM_SENS_ENDING[sens], ctx, ip, next_ip, insn)
            return True
        if sens == Sens.CPUID:
            self._callout(em, Kind.CPUID, ctx, ip, next_ip, insn)
            return False
        em.emit(self._ident(insn, raw))
        return False
