"""Real-mode semantics the translator hands to the monitor (callout handlers).

Each handler works on `Regs`, a list of the ten registers of
`Cpu.read_gprs()` (eax ecx edx ebx esp ebp esi edi eip eflags), read once and
written back once by the dispatcher, and on the virtual CPU.  A handler
returns the guest IP to continue at (the dispatcher finds or makes its
translation), or None to continue right after the callout in the same unit.
"""

from __future__ import annotations

import logging

from bt.callouts import Kind
from monitor.vcpu import CS, DS, ES, FS, GS, SS

log = logging.getLogger("hybrid86.monitor.realmode")

EAX, ECX, EDX, EBX, ESP, EBP, ESI, EDI, EIP, EFLAGS = range(10)
REG16 = {"ax": EAX, "cx": ECX, "dx": EDX, "bx": EBX, "sp": ESP, "bp": EBP, "si": ESI, "di": EDI}
SEG_BY_NAME = {"es": ES, "cs": CS, "ss": SS, "ds": DS, "fs": FS, "gs": GS}
IF_BIT, TF_BIT = 0x200, 0x100
# Flags that popf/iret restore in real mode (status flags, TF, DF, IOPL, NT).
POPF_MASK16 = 0x7FD5


class VMStop(Exception):
    """A clean, explained end of the run (the message says why)."""


class RealModeOps:
    """Real-mode callout semantics on top of a Machine."""

    def __init__(self, machine):
        self.m = machine
        self.mem = machine.guestmem
        self.vcpu = machine.vcpu

    # -- helpers ------------------------------------------------------------------

    def seg_base(self, sreg: int) -> int:
        return self.m.mirror.read_base(sreg)

    def ea(self, regs, insn) -> int:
        """Linear address of an instruction's memory operand (16- or 32-bit addressing)."""
        mem = insn.mem
        off = mem.disp
        if mem.base:
            off += self._reg(regs, mem.base)
        if mem.index:
            off += self._reg(regs, mem.index) * mem.scale
        off &= 0xFFFF if insn.addrsize == 16 else 0xFFFFFFFF
        return (self.seg_base(SEG_BY_NAME[mem.segment]) + off) & 0xFFFFFFFF

    @staticmethod
    def _reg(regs, name: str) -> int:
        if name in REG16:
            return regs[REG16[name]] & 0xFFFF
        return regs[("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi").index(name)]

    def push16(self, regs, value: int) -> None:
        sp = (regs[ESP] - 2) & 0xFFFF
        regs[ESP] = (regs[ESP] & 0xFFFF0000) | sp
        self.mem.write16(self.seg_base(SS) + sp, value)

    def pop16(self, regs) -> int:
        sp = regs[ESP] & 0xFFFF
        value = self.mem.read16(self.seg_base(SS) + sp)
        regs[ESP] = (regs[ESP] & 0xFFFF0000) | ((sp + 2) & 0xFFFF)
        return value

    def push(self, regs, value: int, size: int) -> None:
        if size == 16:
            self.push16(regs, value)
        else:
            sp = (regs[ESP] - 4) & 0xFFFF
            regs[ESP] = (regs[ESP] & 0xFFFF0000) | sp
            self.mem.write32(self.seg_base(SS) + sp, value)

    def pop(self, regs, size: int) -> int:
        if size == 16:
            return self.pop16(regs)
        sp = regs[ESP] & 0xFFFF
        value = self.mem.read32(self.seg_base(SS) + sp)
        regs[ESP] = (regs[ESP] & 0xFFFF0000) | ((sp + 4) & 0xFFFF)
        return value

    def flags_image(self, regs) -> int:
        """The guest's view of FLAGS (its IF is the real IF in BT)."""
        return regs[EFLAGS] | 0x2

    def set_flags(self, regs, image: int, mask: int = POPF_MASK16) -> None:
        regs[EFLAGS] = (regs[EFLAGS] & ~mask & ~TF_BIT) | (image & mask & ~TF_BIT) | 0x2

    def rm16(self, regs, insn) -> int:
        """Read the r/m operand of a ModRM instruction (16 or 32 bits)."""
        size = insn.eff_opsize
        if insn.mod == 3:
            v = regs[insn.rm]
            return v & 0xFFFF if size == 16 else v
        lin = self.ea(regs, insn)
        return self.mem.read16(lin) if size == 16 else self.mem.read32(lin)

    # -- interrupt delivery -------------------------------------------------------

    def deliver(self, regs, vector: int, return_ip: int) -> int:
        """Real-mode interrupt: push FLAGS, CS, IP; IF=TF=0; continue at IVT[vector]."""
        self.m.odd_cs = None                                # (CS is reloaded)
        self.push16(regs, self.flags_image(regs))
        self.push16(regs, self.m.seg_value(CS))
        self.push16(regs, return_ip)
        regs[EFLAGS] &= ~(TF_BIT | IF_BIT | 0x40000)   # IF, TF and AC
        ivt = self.vcpu.idtr[0] + (vector & 0xFF) * 4        # the real-mode IVT base is IDTR.base
        ip, cs = self.mem.read16(ivt), self.mem.read16(ivt + 2)
        self.m.load_seg(CS, cs)
        self.m.stats["interrupts_delivered"] += 1
        return ip

    # -- the handlers ---------------------------------------------------------------

    def handle(self, rec, regs):
        kind = rec.kind
        insn = rec.insn
        if kind in (Kind.JMPF, Kind.CALLF, Kind.RETF, Kind.IRET):
            self.m.odd_cs = None                            # (CS is reloaded)
        if kind == Kind.INT:
            if insn.opcode == 0xCC:
                vector = 3
            elif insn.opcode == 0xF1:
                vector = 1                                   # int1 / ICEBP: #DB, a trap
            elif insn.opcode == 0xCE:
                if not regs[EFLAGS] & 0x800:
                    return rec.next_ip
                vector = 4
            else:
                vector = insn.imm & 0xFF
            return self.deliver(regs, vector, rec.next_ip)
        if kind == Kind.IRET:
            size = insn.eff_opsize
            ip = self.pop(regs, size) & 0xFFFF
            cs = self.pop(regs, size) & 0xFFFF
            fl = self.pop(regs, size)
            self.set_flags(regs, fl)
            self.m.load_seg(CS, cs)
            return ip
        if kind == Kind.RET:
            ip = self.pop(regs, insn.eff_opsize)
            if insn.opcode == 0xC2:
                regs[ESP] = (regs[ESP] & 0xFFFF0000) | ((regs[ESP] + insn.imm) & 0xFFFF)
            return ip & 0xFFFF
        if kind == Kind.RETF:
            size = insn.eff_opsize
            ip = self.pop(regs, size)
            cs = self.pop(regs, size) & 0xFFFF
            if insn.opcode == 0xCA:
                regs[ESP] = (regs[ESP] & 0xFFFF0000) | ((regs[ESP] + insn.imm) & 0xFFFF)
            self.m.load_seg(CS, cs)
            return ip & 0xFFFF
        if kind in (Kind.JMP_IND, Kind.CALL_IND):
            target = self.rm16(regs, insn)
            if kind == Kind.CALL_IND:
                self.push(regs, rec.next_ip, insn.eff_opsize)
            return target & 0xFFFF
        if kind in (Kind.JMPF, Kind.CALLF):
            size = insn.eff_opsize
            if insn.mem is None:                               # ptr16:16 / ptr16:32
                cs, ip = insn.far_target
            else:
                lin = self.ea(regs, insn)
                ip = self.mem.read16(lin) if size == 16 else self.mem.read32(lin)
                cs = self.mem.read16(lin + size // 8)
            if kind == Kind.CALLF:
                self.push(regs, self.m.seg_value(CS), size)
                self.push(regs, rec.next_ip, size)
            self.m.load_seg(CS, cs)
            return ip & 0xFFFF
        if kind == Kind.SEG_LOAD:
            return self.seg_load(rec, regs, insn)
        if kind == Kind.SEG_READ:
            sreg = insn.reg
            if insn.opcode == 0x8C:
                self.mem.write16(self.ea(regs, insn), self.m.seg_value(sreg))
            else:                                              # 32-bit push sreg
                push_sreg = {0x06: ES, 0x0E: CS, 0x16: SS, 0x1E: DS, 0xA0: FS, 0xA8: GS}
                self.push(regs, self.m.seg_value(push_sreg[insn.opcode]), 32)
            return None
        if kind == Kind.HLT:
            self.vcpu.halted = True
            return rec.next_ip
        if kind == Kind.UD:
            if insn is not None and insn.ok and insn.mnemonic in ("sysenter", "sysexit"):
                return self.deliver(regs, 13, rec.ip)        # #GP(0) in real mode (SDM)
            return self.deliver(regs, 6, rec.ip)
        if kind == Kind.CPUID:
            self.m.cpuid(regs)
            return None
        if kind == Kind.SYSREG:
            return self.sysreg(rec, regs, insn)
        if kind == Kind.MSR:
            return self.deliver(regs, 13, rec.ip)
        raise VMStop(f"callout kind {kind.name} at {rec.cs:04x}:{rec.ip:04x} has no real-mode handler")

    def seg_load(self, rec, regs, insn):
        op, opmap = insn.opcode, insn.opmap
        if opmap == 1 and op == 0x8E:                               # mov sreg, r/m16
            sreg = insn.reg
            if insn.mod == 3:
                value = regs[insn.rm] & 0xFFFF
            else:
                value = self.mem.read16(self.ea(regs, insn))
            self.m.load_seg(sreg, value)
            return None
        pops = {(1, 0x07): ES, (1, 0x17): SS, (1, 0x1F): DS, (2, 0xA1): FS, (2, 0xA9): GS}
        if (opmap, op) in pops:
            value = self.pop(regs, insn.eff_opsize) & 0xFFFF
            self.m.load_seg(pops[(opmap, op)], value)
            return None
        loads = {(1, 0xC4): ES, (1, 0xC5): DS, (2, 0xB2): SS, (2, 0xB4): FS, (2, 0xB5): GS}
        if (opmap, op) in loads:                                     # lds/les/lss/lfs/lgs r, m16:16
            lin = self.ea(regs, insn)
            size = insn.eff_opsize
            off = self.mem.read16(lin) if size == 16 else self.mem.read32(lin)
            seg = self.mem.read16(lin + size // 8)
            if size == 16:
                regs[insn.reg] = (regs[insn.reg] & 0xFFFF0000) | off
            else:
                regs[insn.reg] = off
            self.m.load_seg(loads[(opmap, op)], seg)
            return None
        raise VMStop(f"unhandled segment load {insn!r}")

    def sysreg(self, rec, regs, insn):
        name = insn.mnemonic
        if name == "smsw":
            value = self.vcpu.cr0 & 0xFFFF
            if insn.mod == 3:
                regs[insn.rm] = (regs[insn.rm] & 0xFFFF0000) | value
            else:
                self.mem.write16(self.ea(regs, insn), value)
            return None
        if name in ("lgdt", "lidt"):
            lin = self.ea(regs, insn)
            limit, base = self.mem.read16(lin), self.mem.read32(lin + 2)
            if insn.eff_opsize == 16:
                base &= 0xFFFFFF
            if name == "lgdt":
                self.vcpu.gdtr = (base, limit)
            else:
                if base != self.vcpu.idtr[0]:
                    self.m.flush_translations()          # int n has the IVT base built in
                self.vcpu.idtr = (base, limit)
            return rec.next_ip if name == "lidt" else None
        if name in ("sgdt", "sidt"):
            base, limit = self.vcpu.gdtr if name == "sgdt" else self.vcpu.idtr
            lin = self.ea(regs, insn)
            self.mem.write16(lin, limit)
            self.mem.write32(lin + 2, base)
            return None
        if name == "lmsw" or (name == "mov" and insn.opcode == 0x22 and insn.reg == 0):
            value = self.rm16(regs, insn) if name == "lmsw" else regs[insn.rm]
            new = (self.vcpu.cr0 & ~0xF | value & 0xF) if name == "lmsw" else value
            if new & 0x80000000 and not new & 1:
                return self.deliver(regs, 13, rec.ip)
            self.m.write_cr0(new)                       # PE 0 -> 1 enters protected mode
            return rec.next_ip
        if name == "mov" and insn.opcode == 0x20:                  # mov r32, crN
            crs = {0: self.vcpu.cr0, 2: self.vcpu.cr2, 3: self.vcpu.cr3, 4: self.vcpu.cr4}
            if insn.reg not in crs:
                return self.deliver(regs, 6, rec.ip)
            regs[insn.rm] = crs[insn.reg]
            return None
        if name == "mov" and insn.opcode == 0x22:
            if insn.reg == 2:
                self.vcpu.cr2 = regs[insn.rm]
            elif insn.reg == 3:
                self.vcpu.cr3 = regs[insn.rm]
                self.m.paging_changed()
            elif insn.reg == 4:
                self.vcpu.cr4 = regs[insn.rm]
                self.m.paging_changed()
            else:
                return self.deliver(regs, 6, rec.ip)
            return None
        if name == "clts":
            self.vcpu.cr0 &= ~0x8
            self.m.sync_real_cr0()
            return None
        # sldt/str/lldt/ltr/verr/verw/lar/lsl are #UD in real mode.
        return self.deliver(regs, 6, rec.ip)
