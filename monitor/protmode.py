"""Protected-mode semantics the monitor performs for the guest.

The real CPU (Unicorn) never delivers an interrupt or exception through an IDT
(U2) and runs translated code at CPL 0 whatever the guest's privilege level,
so everything the guest's CPU would do with privilege is done here, from the
SDM's pseudo-code:

* segment loads (`mov sreg`, `pop sreg`, `lds`...) with their type, privilege
  and present checks and the exact error codes;
* far `jmp`, `call`, `ret`, `iret` (including the return to an outer ring and
  to V8086), `int n`, `sysenter`, `sysexit`;
* IDT delivery: interrupt and trap gates, the privilege change through the
  guest's TSS (`ss0:esp0`), the V8086 frame, error codes;
* system instructions: descriptor-table registers, control registers,
  `lsl lar verr verw` (monitor/shadow.py), MSRs.

Handlers work on `regs` (the ten registers of Cpu.read_gprs) and the virtual
CPU.  They return the guest EIP to continue at, or None to continue in the
unit.  A guest-visible exception is raised as `GuestFault`; the dispatcher
delivers it at the faulting instruction.

Task switches (task gates, `iret` with NT=1, far transfers to a TSS) and call
gates are not implemented: they end the run with a clear VM stop.
"""

from __future__ import annotations

import struct

from bt.callouts import Kind
from monitor import descriptors as D
from monitor import shadow
from monitor.descriptors import Descriptor, Gate
from monitor.realmode import EAX, ECX, EDX, EFLAGS, ESP, REG16, SEG_BY_NAME, VMStop
from monitor.vcpu import CS, DS, ES, FS, GS, SS

IF_BIT, TF_BIT, DF_BIT, IOPL_MASK, NT_BIT, RF_BIT, VM_BIT, AC_BIT, ID_BIT = (
    0x200, 0x100, 0x400, 0x3000, 0x4000, 0x10000, 0x20000, 0x40000, 0x200000)
STATUS_FLAGS = 0x8D5 | DF_BIT | TF_BIT          # CF PF AF ZF SF OF, DF, TF
MSR_SYSENTER_CS, MSR_SYSENTER_ESP, MSR_SYSENTER_EIP, MSR_TSC = 0x174, 0x175, 0x176, 0x10
# Model-specific registers a Pentium III has that the monitor answers with
# fixed values (reads) and ignores (writes): platform ID, microcode revision
# (Linux writes 0 then reads it back), L2 control.  Any other MSR is #GP, as
# on hardware for one the part does not have (the APIC, MTRR, MCA and PAT
# MSRs are hidden with their CPUID bits, monitor/cpuid.py).
MSR_FIXED = {0x17: 0, 0x8B: 0, 0x11E: 0}
VEC_DE, VEC_DB, VEC_BP, VEC_OF, VEC_UD, VEC_TS, VEC_NP, VEC_SS, VEC_GP, VEC_PF = 0, 1, 3, 4, 6, 10, 11, 12, 13, 14
GPR_NAMES = ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi")


class GuestFault(Exception):
    """An exception the guest's CPU would raise at the current instruction."""

    def __init__(self, vector: int, error_code: int | None = None, cr2: int | None = None):
        super().__init__(f"vector {vector} error {error_code}")
        self.vector, self.error_code, self.cr2 = vector, error_code, cr2


def gp(code: int = 0) -> GuestFault:
    return GuestFault(VEC_GP, code & 0xFFFF)


def flat_code(dpl: int) -> Descriptor:
    return D.code32(dpl=dpl)


def flat_data(dpl: int) -> Descriptor:
    return D.data32(dpl=dpl)


def v86_segment(value: int) -> Descriptor:
    """A V8086 (or real-mode-loaded) segment: base = value * 16, 64 KiB, DPL 3."""
    return Descriptor((value & 0xFFFF) << 4, 0xFFFF, D.ACC_PRESENT | D.ACC_S | D.ACC_RW | D.ACC_ACCESSED | (3 << 5), 0)


class ProtectedModeOps:
    """Protected-mode callout semantics on top of a Machine."""

    def __init__(self, machine):
        self.m = machine
        self.vcpu = machine.vcpu
        self.vm = machine.vmem          # guest virtual memory (monitor/guestmem.py)

    # -- descriptors ------------------------------------------------------------------

    def table_entry(self, selector: int) -> tuple[bytes, int] | None:
        """(8 bytes, linear address) of the entry `selector` names, None beyond the limit."""
        v = self.vcpu
        if selector & 4:
            if D.is_null_selector(v.ldtr[0]):
                return None
            base, limit = v.ldtr[1], v.ldtr[2]
        else:
            base, limit = v.gdtr
        off = selector & 0xFFF8
        if off + 7 > limit:
            return None
        lin = (base + off) & 0xFFFFFFFF
        return self.vm.read(lin, 8, cpl=0), lin

    def descriptor(self, selector: int):
        entry = self.table_entry(selector)
        return None if entry is None else D.decode(entry[0])

    def set_accessed(self, selector: int) -> None:
        entry = self.table_entry(selector)
        if entry is not None and not entry[0][5] & D.ACC_ACCESSED:
            self.vm.write(entry[1] + 5, bytes([entry[0][5] | D.ACC_ACCESSED]), cpl=0)

    def guest_tables(self) -> shadow.GuestTables:
        v = self.vcpu
        gdt = self.vm.read(v.gdtr[0], v.gdtr[1] + 1, cpl=0)
        ldt = None
        if not D.is_null_selector(v.ldtr[0]):
            ldt = self.vm.read(v.ldtr[1], v.ldtr[2] + 1, cpl=0)
        return shadow.GuestTables(gdt, ldt)

    # -- segment loads (SDM vol. 2, MOV; vol. 3, 5.5-5.8) -----------------------------------

    def load_segment(self, sreg: int, sel: int) -> None:
        """A data or stack segment load with every protected-mode check."""
        v = self.vcpu
        sel &= 0xFFFF
        if v.eflags_vm:
            self.m.set_segment(sreg, sel, v86_segment(sel))
            return
        cpl, rpl = v.cpl, sel & 3
        if D.is_null_selector(sel):
            if sreg == SS:
                raise gp(0)
            self.m.set_segment(sreg, sel, None)
            return
        d = self.descriptor(sel)
        if d is None or isinstance(d, Gate):
            raise gp(sel & 0xFFFC)
        if sreg == SS:
            if rpl != cpl or not d.is_data or not d.writable or d.dpl != cpl:
                raise gp(sel & 0xFFFC)
            if not d.present:
                raise GuestFault(VEC_SS, sel & 0xFFFC)
        else:
            if not (d.is_data or (d.is_code and d.readable)):
                raise gp(sel & 0xFFFC)
            if (d.is_data or not d.conforming) and (rpl > d.dpl or cpl > d.dpl):
                raise gp(sel & 0xFFFC)
            if not d.present:
                raise GuestFault(VEC_NP, sel & 0xFFFC)
        self.set_accessed(sel)
        self.m.set_segment(sreg, sel, d.with_access(d.access | D.ACC_ACCESSED))

    def code_descriptor(self, sel: int, ext: int = 0) -> Descriptor:
        if D.is_null_selector(sel):
            raise gp(ext)
        d = self.descriptor(sel)
        if d is None:
            raise gp((sel & 0xFFFC) | ext)
        if (isinstance(d, Gate) and d.type in (D.SYS_CALL_GATE16, D.SYS_CALL_GATE32, D.SYS_TASK_GATE)) \
                or (not isinstance(d, Gate) and d.is_tss):
            raise VMStop(f"far transfer through system descriptor {sel:#06x} (call/task gates and task "
                         "switches are not supported)")
        if isinstance(d, Gate) or not d.is_code:
            raise gp((sel & 0xFFFC) | ext)
        return d

    # -- stack ------------------------------------------------------------------------

    def _ss(self):
        sel, d = self.vcpu.segs[SS]
        return d

    def push(self, regs, value: int, size: int, cpl: int | None = None) -> None:
        d = self._ss()
        big = d is not None and d.big
        esp = (regs[ESP] - size) & (0xFFFFFFFF if big else 0xFFFF)
        lin = (d.base + esp) & 0xFFFFFFFF
        self.vm.write(lin, (value & (0xFFFFFFFF if size == 4 else 0xFFFF)).to_bytes(size, "little"),
                      cpl=self.vcpu.cpl if cpl is None else cpl)
        regs[ESP] = esp if big else (regs[ESP] & 0xFFFF0000) | esp

    def pop(self, regs, size: int) -> int:
        d = self._ss()
        big = d is not None and d.big
        esp = regs[ESP] & (0xFFFFFFFF if big else 0xFFFF)
        value = int.from_bytes(self.vm.read((d.base + esp) & 0xFFFFFFFF, size, cpl=self.vcpu.cpl), "little")
        esp = (esp + size) & (0xFFFFFFFF if big else 0xFFFF)
        regs[ESP] = esp if big else (regs[ESP] & 0xFFFF0000) | esp
        return value

    def release(self, regs, amount: int) -> None:
        d = self._ss()
        if d is not None and d.big:
            regs[ESP] = (regs[ESP] + amount) & 0xFFFFFFFF
        else:
            regs[ESP] = (regs[ESP] & 0xFFFF0000) | ((regs[ESP] + amount) & 0xFFFF)

    # -- operands -------------------------------------------------------------------------

    def ea(self, regs, insn) -> int:
        mem = insn.mem
        off = mem.disp
        if mem.base:
            off += self._reg(regs, mem.base)
        if mem.index:
            off += self._reg(regs, mem.index) * mem.scale
        off &= 0xFFFF if insn.addrsize == 16 else 0xFFFFFFFF
        sel, d = self.vcpu.segs[SEG_BY_NAME[mem.segment]]
        if d is None:
            raise gp(0)
        return (d.base + off) & 0xFFFFFFFF

    @staticmethod
    def _reg(regs, name: str) -> int:
        if name in REG16:
            return regs[REG16[name]] & 0xFFFF
        return regs[GPR_NAMES.index(name)]

    def read_rm(self, regs, insn, size: int) -> int:
        if insn.mod == 3:
            return regs[insn.rm] & (0xFFFF if size == 2 else 0xFFFFFFFF)
        return int.from_bytes(self.vm.read(self.ea(regs, insn), size, cpl=self.vcpu.cpl), "little")

    def write_rm(self, regs, insn, value: int, size: int) -> None:
        if insn.mod == 3:
            if size == 2:
                regs[insn.rm] = (regs[insn.rm] & 0xFFFF0000) | (value & 0xFFFF)
            else:
                regs[insn.rm] = value & 0xFFFFFFFF
            return
        self.vm.write(self.ea(regs, insn), (value & ((1 << 8 * size) - 1)).to_bytes(size, "little"),
                      cpl=self.vcpu.cpl)

    # -- interrupt and exception delivery (SDM vol. 3, 6.12) -----------------------------------

    def deliver(self, regs, vector: int, return_eip: int, error_code: int | None = None,
                soft: bool = False) -> int:
        """Deliver through the guest's IDT; returns the handler's EIP (CS and
        CPL are updated).  `soft` for int n / int3 / into (gate DPL checked)."""
        v = self.vcpu
        ext = 0 if soft else 1
        idt_base, idt_limit = v.idtr
        if vector * 8 + 7 > idt_limit:
            raise gp(vector * 8 + 2 + ext)
        gate = D.decode(self.vm.read((idt_base + vector * 8) & 0xFFFFFFFF, 8, cpl=0))
        if not isinstance(gate, Gate) or gate.type not in (D.SYS_INT_GATE16, D.SYS_TRAP_GATE16,
                                                          D.SYS_INT_GATE32, D.SYS_TRAP_GATE32):
            if isinstance(gate, Gate) and gate.type == D.SYS_TASK_GATE:
                raise VMStop(f"vector {vector} goes through a task gate (task switches are not supported)")
            raise gp(vector * 8 + 2 + ext)
        if soft and gate.dpl < v.cpl:
            raise gp(vector * 8 + 2)
        if not gate.present:
            raise GuestFault(VEC_NP, vector * 8 + 2 + ext)
        sel = gate.selector
        cdesc = self.code_descriptor(sel, ext)
        if cdesc.dpl > v.cpl:
            raise gp((sel & 0xFFFC) | ext)
        if not cdesc.present:
            raise GuestFault(VEC_NP, (sel & 0xFFFC) | ext)
        size = 4 if gate.is_32 else 2
        eflags = self.m.guest_eflags(regs)
        vm = bool(eflags & VM_BIT)
        old = {s: v.segs[s][0] for s in range(6)}
        old_esp = regs[ESP]
        if not cdesc.conforming and (cdesc.dpl < v.cpl or vm):
            new_cpl = cdesc.dpl
            if vm and new_cpl != 0:
                raise gp((sel & 0xFFFC) | ext)
            ss_sel, esp = self.tss_stack(new_cpl, ext)
            ss_desc = self.stack_descriptor(ss_sel, new_cpl, ext)
            v.cpl = new_cpl
            self.m.set_segment(SS, ss_sel, ss_desc)
            regs[ESP] = esp
            if vm:
                for s in (GS, FS, DS, ES):
                    self.push(regs, old[s], size, cpl=new_cpl)
            self.push(regs, old[SS], size, cpl=new_cpl)
            self.push(regs, old_esp, size, cpl=new_cpl)
        else:
            if vm:
                raise gp((sel & 0xFFFC) | ext)
            new_cpl = v.cpl
        self.push(regs, eflags, size, cpl=new_cpl)
        self.push(regs, old[CS], size, cpl=new_cpl)
        self.push(regs, return_eip, size, cpl=new_cpl)
        if error_code is not None:
            self.push(regs, error_code, size, cpl=new_cpl)
        if vm:
            for s in (GS, FS, DS, ES):
                self.m.set_segment(s, 0, None)
        eflags &= ~(TF_BIT | NT_BIT | RF_BIT | VM_BIT)
        if gate.type in (D.SYS_INT_GATE16, D.SYS_INT_GATE32):
            eflags &= ~IF_BIT
        self.m.set_guest_eflags(regs, eflags)
        v.cpl = new_cpl
        self.m.set_segment(CS, (sel & 0xFFFC) | new_cpl, cdesc)
        self.m.stats["interrupts_delivered"] += 1
        return gate.target_offset

    def tss_stack(self, cpl: int, ext: int = 0) -> tuple[int, int]:
        """(ss, esp) for privilege level `cpl` from the guest's current TSS."""
        v = self.vcpu
        sel, base, limit, typ = v.tr
        if D.is_null_selector(sel):
            raise GuestFault(VEC_TS, ext)
        if typ in (D.SYS_TSS32, D.SYS_TSS32_BUSY):
            off = 4 + 8 * cpl
            if off + 5 > limit:
                raise GuestFault(VEC_TS, (sel & 0xFFFC) | ext)
            raw = self.vm.read((base + off) & 0xFFFFFFFF, 8, cpl=0)
            return struct.unpack_from("<H", raw, 4)[0], struct.unpack_from("<I", raw, 0)[0]
        off = 2 + 4 * cpl
        if off + 3 > limit:
            raise GuestFault(VEC_TS, (sel & 0xFFFC) | ext)
        raw = self.vm.read((base + off) & 0xFFFFFFFF, 4, cpl=0)
        return struct.unpack_from("<H", raw, 2)[0], struct.unpack_from("<H", raw, 0)[0]

    def stack_descriptor(self, ss_sel: int, cpl: int, ext: int = 0) -> Descriptor:
        if D.is_null_selector(ss_sel) or ss_sel & 3 != cpl:
            raise GuestFault(VEC_TS, (ss_sel & 0xFFFC) | ext)
        d = self.descriptor(ss_sel)
        if d is None or isinstance(d, Gate) or not d.is_data or not d.writable or d.dpl != cpl:
            raise GuestFault(VEC_TS, (ss_sel & 0xFFFC) | ext)
        if not d.present:
            raise GuestFault(VEC_SS, (ss_sel & 0xFFFC) | ext)
        return d

    # -- far returns (SDM vol. 2, IRET, RET) -------------------------------------------------------

    def iret(self, regs, insn) -> int:
        v = self.vcpu
        eflags = self.m.guest_eflags(regs)
        if eflags & NT_BIT:
            raise VMStop("iret with NT=1 (a task return): task switches are not supported")
        size = 4 if insn.eff_opsize == 32 else 2
        eip = self.pop(regs, size)
        cs = self.pop(regs, size) & 0xFFFF
        fl = self.pop(regs, size)
        if size == 4 and fl & VM_BIT and v.cpl == 0:
            return self._iret_to_v86(regs, eip, cs, fl)
        if size == 2:
            fl = (eflags & 0xFFFF0000) | fl
        rpl = cs & 3
        if rpl < v.cpl:
            raise gp(cs & 0xFFFC)
        d = self.code_descriptor(cs)
        if (d.conforming and d.dpl > rpl) or (not d.conforming and d.dpl != rpl):
            raise gp(cs & 0xFFFC)
        if not d.present:
            raise GuestFault(VEC_NP, cs & 0xFFFC)
        new_flags = self._merge_flags(eflags, fl, size)
        if rpl > v.cpl:
            new_esp = self.pop(regs, size)
            new_ss = self.pop(regs, size) & 0xFFFF
            ss_desc = self.stack_descriptor(new_ss, rpl)
            self._outer_return(regs, rpl, cs, d, new_ss, ss_desc, new_esp, size)
        else:
            self.m.set_segment(CS, cs, d)
        self.m.set_guest_eflags(regs, new_flags)
        return eip & (0xFFFFFFFF if size == 4 else 0xFFFF)

    def _merge_flags(self, old: int, new: int, size: int) -> int:
        """EFLAGS after iret/popf at the current CPL (SDM: IOPL only at CPL 0,
        IF only at CPL <= IOPL; VM, VIF, VIP never from here)."""
        v = self.vcpu
        mask = STATUS_FLAGS | NT_BIT | (RF_BIT | AC_BIT | ID_BIT if size == 4 else 0)
        if v.cpl == 0:
            mask |= IOPL_MASK
        if v.cpl <= (old >> 12) & 3:
            mask |= IF_BIT
        if size == 2:
            mask &= 0xFFFF
        return (old & ~mask) | (new & mask) | 2

    def _outer_return(self, regs, rpl, cs, cdesc, ss, ss_desc, esp, size) -> None:
        v = self.vcpu
        v.cpl = rpl
        self.m.set_segment(CS, cs, cdesc)
        self.m.set_segment(SS, ss, ss_desc)
        regs[ESP] = esp if ss_desc.big else (regs[ESP] & 0xFFFF0000) | (esp & 0xFFFF)
        for s in (ES, DS, FS, GS):          # segments the outer ring may not use become null
            sel, d = v.segs[s]
            if d is not None and (d.is_data or not d.conforming) and d.dpl < rpl:
                self.m.set_segment(s, 0, None)

    def _iret_to_v86(self, regs, eip, cs, fl) -> int:
        v = self.vcpu
        esp = self.pop(regs, 4)
        ss = self.pop(regs, 4) & 0xFFFF
        segs = {s: self.pop(regs, 4) & 0xFFFF for s in (ES, DS, FS, GS)}
        self.m.set_guest_eflags(regs, (fl & ~0x8000) | 2 | VM_BIT)
        v.cpl = 3
        self.m.set_segment(CS, cs, v86_segment(cs))
        self.m.set_segment(SS, ss, v86_segment(ss))
        for s, value in segs.items():
            self.m.set_segment(s, value, v86_segment(value))
        regs[ESP] = esp
        return eip & 0xFFFF

    def retf(self, regs, insn) -> int:
        v = self.vcpu
        size = 4 if insn.eff_opsize == 32 else 2
        eip = self.pop(regs, size)
        cs = self.pop(regs, size) & 0xFFFF
        imm = insn.imm & 0xFFFF if insn.opcode == 0xCA else 0
        rpl = cs & 3
        if rpl < v.cpl:
            raise gp(cs & 0xFFFC)
        d = self.code_descriptor(cs)
        if (d.conforming and d.dpl > rpl) or (not d.conforming and d.dpl != rpl):
            raise gp(cs & 0xFFFC)
        if not d.present:
            raise GuestFault(VEC_NP, cs & 0xFFFC)
        self.release(regs, imm)
        if rpl > v.cpl:
            new_esp = self.pop(regs, size)
            new_ss = self.pop(regs, size) & 0xFFFF
            ss_desc = self.stack_descriptor(new_ss, rpl)
            self._outer_return(regs, rpl, cs, d, new_ss, ss_desc, new_esp, size)
            self.release(regs, imm)
        else:
            self.m.set_segment(CS, cs, d)
        return eip & (0xFFFFFFFF if size == 4 else 0xFFFF)

    def far_transfer(self, regs, insn, call: bool, next_ip: int) -> int:
        """jmp/call ptr16:16/32 or m16:16/32 to a code segment (no gates)."""
        v = self.vcpu
        size = 4 if insn.eff_opsize == 32 else 2
        if insn.mem is None:
            cs, eip = insn.far_target
        else:
            lin = self.ea(regs, insn)
            raw = self.vm.read(lin, size + 2, cpl=v.cpl)
            eip = int.from_bytes(raw[:size], "little")
            cs = int.from_bytes(raw[size:], "little")
        d = self.code_descriptor(cs)
        if d.conforming:
            if d.dpl > v.cpl:
                raise gp(cs & 0xFFFC)
        elif (cs & 3) > v.cpl or d.dpl != v.cpl:
            raise gp(cs & 0xFFFC)
        if not d.present:
            raise GuestFault(VEC_NP, cs & 0xFFFC)
        if call:
            self.push(regs, v.segs[CS][0], size)
            self.push(regs, next_ip, size)
        self.m.set_segment(CS, (cs & 0xFFFC) | v.cpl, d)
        return eip & (0xFFFFFFFF if size == 4 else 0xFFFF)

    # -- fast system calls (SDM vol. 2, SYSENTER, SYSEXIT) -------------------------------------------

    def sysenter(self, regs) -> int:
        v = self.vcpu
        cs = v.msr.get(MSR_SYSENTER_CS, 0) & 0xFFFC
        if cs == 0:
            raise gp(0)
        eflags = self.m.guest_eflags(regs) & ~(VM_BIT | IF_BIT | RF_BIT)
        self.m.set_guest_eflags(regs, eflags)
        v.cpl = 0
        self.m.set_segment(CS, cs, flat_code(0))
        self.m.set_segment(SS, cs + 8, flat_data(0))
        regs[ESP] = v.msr.get(MSR_SYSENTER_ESP, 0) & 0xFFFFFFFF
        self.m.stats["sysenter"] += 1
        return v.msr.get(MSR_SYSENTER_EIP, 0) & 0xFFFFFFFF

    def sysexit(self, regs) -> int:
        v = self.vcpu
        cs = v.msr.get(MSR_SYSENTER_CS, 0) & 0xFFFC
        if cs == 0 or v.cpl != 0:
            raise gp(0)
        v.cpl = 3
        self.m.set_segment(CS, (cs + 16) | 3, flat_code(3))
        self.m.set_segment(SS, (cs + 24) | 3, flat_data(3))
        regs[ESP] = regs[ECX]
        return regs[EDX]

    # -- the callout dispatcher ---------------------------------------------------------------

    def handle(self, rec, regs):
        kind, insn, v = rec.kind, rec.insn, self.vcpu
        if kind == Kind.RET:
            eip = self.pop(regs, 4 if insn.eff_opsize == 32 else 2)
            if insn.opcode == 0xC2:
                self.release(regs, insn.imm & 0xFFFF)
            return eip
        if kind in (Kind.JMP_IND, Kind.CALL_IND):
            size = 4 if insn.eff_opsize == 32 else 2
            target = self.read_rm(regs, insn, size)
            if kind == Kind.CALL_IND:
                self.push(regs, rec.next_ip, size)
            return target
        if kind in (Kind.JMPF, Kind.CALLF):
            return self.far_transfer(regs, insn, kind == Kind.CALLF, rec.next_ip)
        if kind == Kind.RETF:
            return self.retf(regs, insn)
        if kind == Kind.IRET:
            return self.iret(regs, insn)
        if kind == Kind.INT:
            op = insn.opcode
            if op == 0xCE:
                if not regs[EFLAGS] & 0x800:
                    return rec.next_ip
                return self.deliver(regs, VEC_OF, rec.next_ip, soft=True)
            if op == 0xF1:
                return self.deliver(regs, VEC_DB, rec.next_ip)
            return self.deliver(regs, VEC_BP if op == 0xCC else insn.imm & 0xFF, rec.next_ip, soft=True)
        if kind == Kind.SEG_LOAD:
            return self.seg_load(regs, insn)
        if kind == Kind.SEG_READ:
            sreg = insn.reg
            if insn.opcode == 0x8C:
                self.write_rm(regs, insn, v.segs[sreg][0], 2)
            else:
                push_sreg = {0x06: ES, 0x0E: CS, 0x16: SS, 0x1E: DS, 0xA0: FS, 0xA8: GS}
                self.push(regs, v.segs[push_sreg[insn.opcode]][0], 4)
            return None
        if kind == Kind.HLT:
            if v.cpl != 0:
                raise gp(0)
            v.halted = True
            return rec.next_ip
        if kind == Kind.UD:
            raise GuestFault(VEC_UD)
        if kind == Kind.CPUID:
            self.m.cpuid(regs)
            return None
        if kind == Kind.SYS:
            if insn.mnemonic == "sysenter":
                return self.sysenter(regs)
            return self.sysexit(regs)
        if kind == Kind.MSR:
            return self.msr(regs, insn, rec)
        if kind == Kind.SYSREG:
            return self.sysreg(rec, regs, insn)
        if kind == Kind.FLAGS:
            return self.flags(rec, regs, insn)
        if kind == Kind.IO:
            return self.io(rec, regs, insn)
        raise VMStop(f"callout kind {kind.name} has no protected-mode handler")

    def seg_load(self, regs, insn) -> int | None:
        op, opmap = insn.opcode, insn.opmap
        if opmap == 1 and op == 0x8E:
            if insn.reg == CS or insn.reg > 5:
                raise GuestFault(VEC_UD)
            self.load_segment(insn.reg, self.read_rm(regs, insn, 2))
            return None
        pops = {(1, 0x07): ES, (1, 0x17): SS, (1, 0x1F): DS, (2, 0xA1): FS, (2, 0xA9): GS}
        if (opmap, op) in pops:
            size = 4 if insn.eff_opsize == 32 else 2
            saved = regs[ESP]
            value = self.pop(regs, size) & 0xFFFF
            try:
                self.load_segment(pops[(opmap, op)], value)
            except GuestFault:
                regs[ESP] = saved
                raise
            return None
        loads = {(1, 0xC4): ES, (1, 0xC5): DS, (2, 0xB2): SS, (2, 0xB4): FS, (2, 0xB5): GS}
        if (opmap, op) in loads:
            if insn.mod == 3:
                raise GuestFault(VEC_UD)
            size = 4 if insn.eff_opsize == 32 else 2
            raw = self.vm.read(self.ea(regs, insn), size + 2, cpl=self.vcpu.cpl)
            self.load_segment(loads[(opmap, op)], int.from_bytes(raw[size:], "little"))
            off = int.from_bytes(raw[:size], "little")
            regs[insn.reg] = off if size == 4 else (regs[insn.reg] & 0xFFFF0000) | off
            return None
        raise VMStop(f"unhandled segment load {insn!r}")

    def flags(self, rec, regs, insn) -> int:
        """cli sti pushf popf at guest CPL > 0 (BT only)."""
        v = self.vcpu
        eflags = self.m.guest_eflags(regs)
        iopl = (eflags >> 12) & 3
        name = insn.mnemonic
        if name in ("cli", "sti"):
            if v.cpl > iopl:
                raise gp(0)
            eflags = eflags & ~IF_BIT | (IF_BIT if name == "sti" else 0)
        elif name.startswith("pushf"):
            size = 4 if insn.eff_opsize == 32 else 2
            self.push(regs, eflags & ~(VM_BIT | RF_BIT), size)
        elif name.startswith("popf"):
            size = 4 if insn.eff_opsize == 32 else 2
            new = self.pop(regs, size)
            if size == 2:
                new |= eflags & 0xFFFF0000
            eflags = self._merge_flags(eflags, new, size)
        self.m.set_guest_eflags(regs, eflags)
        return rec.next_ip

    def io_allowed(self, regs, port: int, size: int) -> bool:
        """IOPL, then the TSS I/O permission bitmap (SDM vol. 1, 18.5): U7."""
        v = self.vcpu
        eflags = self.m.guest_eflags(regs)
        if not eflags & VM_BIT and v.cpl <= (eflags >> 12) & 3:
            return True
        sel, base, limit, typ = v.tr
        if typ not in (D.SYS_TSS32, D.SYS_TSS32_BUSY) or limit < 0x67:
            return False
        bitmap = int.from_bytes(self.vm.read((base + 0x66) & 0xFFFFFFFF, 2, cpl=0), "little")
        # The CPU reads the 16-bit word at bitmap + port/8 (it covers every
        # size and bit offset: at most bits 7..10); both bytes must lie
        # within the TSS limit.
        first = bitmap + port // 8
        if first + 1 > limit:
            return False
        raw = self.vm.read((base + first) & 0xFFFFFFFF, 2, cpl=0)
        bits = int.from_bytes(raw, "little") >> (port % 8)
        return bits & ((1 << size) - 1) == 0

    def io(self, rec, regs, insn) -> int:
        """in/out at guest CPL > 0 in BT: checked, then done by the monitor."""
        op = insn.opcode
        size = 1 if op in (0xE4, 0xE6, 0xEC, 0xEE, 0x6C, 0x6E) else (2 if insn.eff_opsize == 16 else 4)
        if op in (0x6C, 0x6D, 0x6E, 0x6F):
            return self.string_io(rec, regs, insn, size)
        port = insn.imm & 0xFF if op in (0xE4, 0xE5, 0xE6, 0xE7) else regs[EDX] & 0xFFFF
        if not self.io_allowed(regs, port, size):
            raise gp(0)
        mask = (1 << 8 * size) - 1
        if op in (0xE4, 0xE5, 0xEC, 0xED):
            value = self.m.bus.read(port, size) & mask
            regs[EAX] = (regs[EAX] & ~mask & 0xFFFFFFFF) | value
        else:
            self.m.bus.write(port, size, regs[EAX] & mask)
        return rec.next_ip

    def string_io(self, rec, regs, insn, size: int) -> int:
        """ins/outs (with rep) at guest CPL > 0: each element checked and moved
        by the monitor through the guest's page tables."""
        op = insn.opcode
        port = regs[EDX] & 0xFFFF
        if not self.io_allowed(regs, port, size):
            raise gp(0)
        amask = 0xFFFF if insn.addrsize == 16 else 0xFFFFFFFF
        rep = insn.prefixes & 0x600                              # F3 / F2
        count = regs[ECX] & amask if rep else 1
        step = -size if regs[EFLAGS] & DF_BIT else size
        mask = (1 << 8 * size) - 1
        v = self.vcpu
        while count:
            if op in (0x6C, 0x6D):                               # ins: ES:eDI
                es = v.segs[ES][1]
                if es is None:
                    raise gp(0)
                lin = (es.base + (regs[7] & amask)) & 0xFFFFFFFF
                self.vm.write(lin, (self.m.bus.read(port, size) & mask).to_bytes(size, "little"), cpl=v.cpl)
                regs[7] = (regs[7] & ~amask) | ((regs[7] + step) & amask)
            else:                                                # outs: DS (or override):eSI
                seg = SEG_BY_NAME[insn.segment] if insn.segment else DS
                d = v.segs[seg][1]
                if d is None:
                    raise gp(0)
                lin = (d.base + (regs[6] & amask)) & 0xFFFFFFFF
                self.m.bus.write(port, size, int.from_bytes(self.vm.read(lin, size, cpl=v.cpl), "little"))
                regs[6] = (regs[6] & ~amask) | ((regs[6] + step) & amask)
            count -= 1
            if rep:
                regs[ECX] = (regs[ECX] & ~amask) | count
        return rec.next_ip

    def msr(self, regs, insn, rec) -> int:
        v = self.vcpu
        if v.cpl != 0:
            raise gp(0)
        index = regs[ECX]
        if insn.mnemonic == "wrmsr":
            value = (regs[EDX] << 32) | regs[EAX]
            if index in (MSR_SYSENTER_CS, MSR_SYSENTER_ESP, MSR_SYSENTER_EIP):
                v.msr[index] = value & 0xFFFFFFFF
            elif index == MSR_TSC:
                v.msr[index] = value
            elif index not in MSR_FIXED:
                raise gp(0)
            return rec.next_ip
        if index in (MSR_SYSENTER_CS, MSR_SYSENTER_ESP, MSR_SYSENTER_EIP):
            value = v.msr.get(index, 0)
        elif index == MSR_TSC:
            value = self.m.tsc()
        elif index in MSR_FIXED:
            value = MSR_FIXED[index]
        else:
            raise gp(0)
        regs[EAX], regs[EDX] = value & 0xFFFFFFFF, value >> 32
        return rec.next_ip

    def sysreg(self, rec, regs, insn):
        v = self.vcpu
        name = insn.mnemonic
        privileged = name in ("lgdt", "lidt", "lldt", "ltr", "lmsw", "clts", "invlpg", "wbinvd", "invd") \
            or (name == "mov" and insn.opmap == 2)
        if privileged and v.cpl != 0:
            raise gp(0)
        size = 4 if insn.eff_opsize == 32 else 2
        if name in ("lgdt", "lidt"):
            lin = self.ea(regs, insn)
            raw = self.vm.read(lin, 6, cpl=0)
            limit, base = struct.unpack("<HI", raw)
            if size == 2:
                base &= 0xFFFFFF
            if name == "lgdt":
                v.gdtr = (base, limit)
            else:
                v.idtr = (base, limit)
            return None
        if name in ("sgdt", "sidt"):
            base, limit = v.gdtr if name == "sgdt" else v.idtr
            self.vm.write(self.ea(regs, insn), shadow.sgdt(base, limit, 32 if size == 4 else 16), cpl=v.cpl)
            return None
        if name in ("sldt", "str", "smsw"):
            if name == "smsw":
                value, width = shadow.smsw(v.cr0, insn.mod == 3, 8 * size)
            else:
                fn = shadow.sldt if name == "sldt" else shadow.str_
                value, width = fn(v.ldtr[0] if name == "sldt" else v.tr[0], insn.mod == 3, 8 * size)
            self.write_rm(regs, insn, value, width)
            return None
        if name == "lldt":
            sel = self.read_rm(regs, insn, 2)
            if D.is_null_selector(sel):
                v.ldtr = (sel, 0, 0)
                return None
            d = self.descriptor(sel)
            if sel & 4 or d is None or isinstance(d, Gate) or not d.is_ldt:
                raise gp(sel & 0xFFFC)
            if not d.present:
                raise GuestFault(VEC_NP, sel & 0xFFFC)
            v.ldtr = (sel, d.base, d.limit)
            return None
        if name == "ltr":
            sel = self.read_rm(regs, insn, 2)
            if D.is_null_selector(sel) or sel & 4:
                raise gp(sel & 0xFFFC)
            entry = self.table_entry(sel)
            d = None if entry is None else D.decode(entry[0])
            if d is None or isinstance(d, Gate) or not d.is_system or d.type not in D.TSS_AVAILABLE_TYPES:
                raise gp(sel & 0xFFFC)            # (a data segment of type 1 or 9 is not a TSS)
            if not d.present:
                raise GuestFault(VEC_NP, sel & 0xFFFC)
            self.vm.write(entry[1] + 5, bytes([entry[0][5] | 2]), cpl=0)     # busy
            v.tr = (sel, d.base, d.limit, d.type | 2)
            self.m.set_real_tr(sel, d.base, d.limit, d.type | 2)
            return None
        if name in ("lsl", "lar", "verr", "verw"):
            sel = self.read_rm(regs, insn, 2)
            tables = self.guest_tables()
            if name in ("verr", "verw"):
                ok = (shadow.verr if name == "verr" else shadow.verw)(sel, v.cpl, tables)
                value = None
            else:
                ok, value = (shadow.lsl if name == "lsl" else shadow.lar)(sel, v.cpl, tables, 8 * size)
            regs[EFLAGS] = regs[EFLAGS] | 0x40 if ok else regs[EFLAGS] & ~0x40
            if ok and value is not None:
                regs[insn.reg] = value if size == 4 else (regs[insn.reg] & 0xFFFF0000) | (value & 0xFFFF)
            return None
        if name == "clts":
            v.cr0 &= ~8
            self.m.sync_real_cr0()
            return None
        if name in ("wbinvd", "invd"):
            return rec.next_ip
        if name == "invlpg":
            if insn.mod == 3:
                raise GuestFault(VEC_UD)
            self.m.invlpg(self.ea(regs, insn))
            return rec.next_ip
        if name == "lmsw":
            value = self.read_rm(regs, insn, 2)
            self.m.write_cr0((v.cr0 & ~0xE) | (value & 0xF) | (v.cr0 & 1))
            return rec.next_ip
        if name == "mov" and insn.opmap == 2 and insn.opcode in (0x20, 0x22):
            if insn.opcode == 0x20:
                crs = {0: v.cr0, 2: v.cr2, 3: v.cr3, 4: v.cr4}
                if insn.reg not in crs:
                    raise GuestFault(VEC_UD)
                regs[insn.rm] = crs[insn.reg]
                return rec.next_ip
            value = regs[insn.rm]
            if insn.reg == 0:
                if value & 0x80000000 and not value & 1:
                    raise gp(0)
                self.m.write_cr0(value)
            elif insn.reg == 2:
                v.cr2 = value
            elif insn.reg == 3:
                v.cr3 = value
                self.m.paging_changed(flush=True)      # a CR3 write flushes the TLB even when unchanged
            elif insn.reg == 4:
                if value & ~0x6FF:
                    raise gp(0)
                v.cr4 = value
                self.m.paging_changed()
            else:
                raise GuestFault(VEC_UD)
            return rec.next_ip
        if name == "mov" and insn.opmap == 2 and insn.opcode in (0x21, 0x23):
            if insn.opcode == 0x21:
                regs[insn.rm] = v.dr[insn.reg]
            else:
                v.dr[insn.reg] = regs[insn.rm]
            return rec.next_ip
        raise VMStop(f"system instruction {name} has no protected-mode handler")
