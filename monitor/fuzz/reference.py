"""The reference path ("the interpreter"): the original bytes on bare Unicorn.

A fresh ``Uc(UC_ARCH_X86, UC_MODE_16)`` per example, in real mode, the guest's
2 MiB of RAM mapped at 0 (host-owned, so the final image is read without a
copy through the API), CR0/GDTR/IDTR at their reset values.  The guest runs at
its own address, one instruction per ``emu_start(count=1)`` (in ``UC_MODE_16``
``begin`` is *linear*: Unicorn subtracts the CS base; in 32-bit mode with a
V86 or real-mode CS it is the IP, U13) (a ``rep`` string
instruction runs to its end with ``until`` at the next instruction), so that:

* the step loop sees every instruction boundary: it stops when control leaves
  the block and the IVT stubs (``escape``), notices CR0.PE being set
  (``mode``), and keeps the mask of undefined flags (``monitor.fuzz.flags``);
* exceptions and software interrupts reach ``UC_HOOK_INTR`` (U2: a fault with
  IP at the instruction, ``int n`` past it).  The hook does what real-mode
  hardware does: push FLAGS, CS, IP (16-bit SP wrap), clear IF, TF and AC, and
  continue at the vector read from IDTR.base + 4n.  It then resets
  ``old_exception`` (U4), so a second fault in the same run stays a fault.
  Real mode pushes no error code;
* ``#UD`` does not reach the hook: ``emu_start`` fails with
  ``UC_ERR_INSN_INVALID`` and EIP at the instruction; the loop then delivers
  vector 6 the same way;
* I/O goes to the shared ``PortModel`` and the run continues (no U16 issue).

Unicorn departs from hardware in ways this path inherits and does not
correct; the generator avoids the cases (docs/fuzzing.md): no segment-limit
checks (U1: 32-bit address-size memory operands are not generated), no
IDTR-limit check on delivery (``lidt`` limits are kept >= 0x3FF), no I/O
permission (U7: moot in real mode, where I/O is always allowed).  One more,
found by this fuzzer: a real-mode ``retf``/``iret`` whose frame wraps past
SP=0xFFFF reads the later words at SS:0x10000+ instead of SS:0000; such
steps end the run as ``unsupported`` and the example is rejected.
"""

from __future__ import annotations

import ctypes
import struct

from unicorn import UC_ARCH_X86, UC_ERR_INSN_INVALID, UC_HOOK_INSN, UC_HOOK_INTR, UC_MODE_16, UC_PROT_ALL, Uc, UcError
from unicorn import x86_const as X

from bt.decoder import decode
from bt.opcodes import Flow
from monitor.fuzz.case import AC, IF, RAM_SIZE, REGS32, TF, Case
from monitor.fuzz.flags import UndefinedFlags, popped_undefined, reads
from monitor.fuzz.ports import PortModel
from monitor.fuzz.state import Event, FinalState

GPR_IDS = [getattr(X, f"UC_X86_REG_{r.upper()}") for r in REGS32]
SEG_IDS = [X.UC_X86_REG_ES, X.UC_X86_REG_CS, X.UC_X86_REG_SS, X.UC_X86_REG_DS, X.UC_X86_REG_FS, X.UC_X86_REG_GS]
SEG_INDEX = {"es": 0, "cs": 1, "ss": 2, "ds": 3, "fs": 4, "gs": 5}
MAX_STEPS = 20000
_CPU_TWIN = None


def _reset_old_exception(uc) -> None:
    """U4: clear old_exception so the next fault is not turned into #DF."""
    from _native.cpu_py import Cpu
    Cpu(uc).reset_old_exception()


class _Run:
    def __init__(self, case: Case):
        self.case = case
        self.mem = case.memory_image()
        self.uc = uc = Uc(UC_ARCH_X86, UC_MODE_16)
        self._cbuf = (ctypes.c_char * RAM_SIZE).from_buffer(self.mem)
        uc.mem_map_ptr(0, RAM_SIZE, UC_PROT_ALL, ctypes.addressof(self._cbuf))
        self.ports = PortModel()
        self.first_delivery = None
        self.delivered = False
        self.cur_insn = None
        self.undef = UndefinedFlags()
        self.flag_images: list[tuple] = []
        self.exceptions = 0
        from monitor.fuzz.smc import SmcWatch
        self.smc = SmcWatch(uc, case.linear, case.linear + len(case.code), bt=True)
        uc.hook_add(UC_HOOK_INTR, self._on_intr)
        uc.hook_add(UC_HOOK_INSN, self._on_in, None, 1, 0, X.UC_X86_INS_IN)
        uc.hook_add(UC_HOOK_INSN, self._on_out, None, 1, 0, X.UC_X86_INS_OUT)
        regs = case.regs
        uc.reg_write(X.UC_X86_REG_CR0, case.cr0)
        uc.reg_write(X.UC_X86_REG_GDTR, (0, 0, 0xFFFF, 0))
        uc.reg_write(X.UC_X86_REG_IDTR, (0, 0, 0x3FF, 0))
        for rid, name in zip(GPR_IDS, REGS32):
            uc.reg_write(rid, regs.get(name, 0) & 0xFFFFFFFF)
        for rid, name in zip(SEG_IDS, ("es", "cs", "ss", "ds", "fs", "gs")):
            uc.reg_write(rid, (case.cs if name == "cs" else regs.get(name, 0)) & 0xFFFF)
        uc.reg_write(X.UC_X86_REG_EFLAGS, case.eflags | 0x2)
        uc.reg_write(X.UC_X86_REG_EIP, case.ip)

    # -- hooks -------------------------------------------------------------------

    def _on_in(self, uc, port, size, _):
        return self.ports.read(port, size)

    def _on_out(self, uc, port, size, value, _):
        self.ports.write(port, size, value)

    def _push16(self, value: int) -> int:
        uc = self.uc
        sp = (uc.reg_read(X.UC_X86_REG_SP) - 2) & 0xFFFF
        lin = (uc.reg_read(X.UC_X86_REG_SS) << 4) + sp
        self.mem[lin:lin + 2] = struct.pack("<H", value & 0xFFFF)
        uc.reg_write(X.UC_X86_REG_SP, sp)
        return lin

    def _on_intr(self, uc, intno, _, at=None):
        """Real-mode delivery through the IVT, as the hardware does it."""
        self.exceptions += 1
        ip = uc.reg_read(X.UC_X86_REG_IP)
        cs = uc.reg_read(X.UC_X86_REG_CS)
        if at is not None:
            cs, ip = at
        eflags = uc.reg_read(X.UC_X86_REG_EFLAGS)
        insn = self.cur_insn
        is_int = bool(insn is not None and insn.ok and insn.flow in (Flow.INT, Flow.INT3, Flow.INTO)
                      and ip != self.step_ip)
        if self.first_delivery is None:
            self.first_delivery = (intno, None, cs, ip, is_int)
        flags_lin = self._push16(eflags)
        self.flag_images.append((flags_lin, 2, self.undef.mask))
        self._push16(cs)
        self._push16(ip)
        uc.reg_write(X.UC_X86_REG_EFLAGS, eflags & ~(IF | TF | AC))
        base = uc.reg_read(X.UC_X86_REG_IDTR)[1]
        entry = (base + 4 * (intno & 0xFF)) & 0xFFFFFFFF
        if entry + 4 <= RAM_SIZE:
            new_ip, new_cs = struct.unpack_from("<HH", self.mem, entry)
        else:
            new_ip, new_cs = 0xFFFF, 0xFFFF
        uc.reg_write(X.UC_X86_REG_CS, new_cs)
        uc.reg_write(X.UC_X86_REG_EIP, new_ip)
        self.delivered = True
        _reset_old_exception(uc)
        uc.emu_stop()

    # -- the step loop --------------------------------------------------------------

    def run(self, max_steps: int = MAX_STEPS) -> FinalState:
        uc, case = self.uc, self.case
        steps = 0
        event = None
        while event is None:
            cs = uc.reg_read(X.UC_X86_REG_CS)
            ip = uc.reg_read(X.UC_X86_REG_EIP)
            lin = (cs << 4) + (ip & 0xFFFF)
            if ip > 0xFFFF or not (case.in_block(lin) or case.in_stubs(lin)):
                event = Event("escape", cs, ip & 0xFFFF)
                break
            if steps >= max_steps:
                event = Event("limit", cs, ip)
                break
            insn = decode(bytes(self.mem[lin:lin + 15]), ip, 16)
            self.cur_insn, self.step_ip = insn, ip
            self.smc.step(lin, insn)
            self.delivered = False
            ecx = uc.reg_read(X.UC_X86_REG_ECX)
            sp_before = uc.reg_read(X.UC_X86_REG_SP)
            if insn.ok and insn.mem is not None and insn.addrsize == 16:
                m = insn.mem
                ea = m.disp or 0
                for r in (m.base, m.index):
                    if r:
                        ea += uc.reg_read(getattr(X, f"UC_X86_REG_{r.upper()}"))
                if ea & 0xFFFF > 0xFFF8:
                    # An operand that may cross offset 0xFFFF: hardware raises #GP/#SS,
                    # Unicorn reads on past 64 KiB (U1) and the translator's rewrites
                    # (lds/les, far pointers) wrap the second word to offset 0: no reference.
                    event = Event("unsupported", cs, ip, "memory operand at the 64 KiB segment end (U1)")
                    break
            if insn.ok and insn.flow in (Flow.RETF, Flow.IRET):
                words = (2 if insn.flow == Flow.RETF else 3) * (insn.eff_opsize // 16)
                if sp_before + 2 * words > 0x10000:
                    # Unicorn pops the CS (and FLAGS) of a real-mode far return at
                    # SS:SP+2 without the 16-bit wrap of SP: no reference here.
                    event = Event("unsupported", cs, ip, "retf/iret frame wraps SP (Unicorn reads past 64 KiB)")
                    break
            if reads(insn) & self.undef.mask:
                event = Event("unsupported", cs, ip, "reads a flag the SDM leaves undefined")
                break
            try:
                if insn.ok and insn.is_string and insn.rep:
                    until = (cs << 4) + ((ip + insn.length) & 0xFFFF)
                    uc.emu_start(lin, until, count=200000)
                else:
                    uc.emu_start(lin, 0xFFFFFFFF, count=1)
            except UcError as err:
                if err.errno != UC_ERR_INSN_INVALID:
                    event = Event("error", cs, ip, f"unicorn: {err}")
                    break
                # Unicorn reports #UD as an error, not through UC_HOOK_INTR:
                # deliver vector 6 with IP at the instruction, as hardware does.
                # `int 6` is reported the same way (Unicorn maps vector 6 to
                # UC_ERR_INSN_INVALID): a software int, IP past it.
                if insn.ok and insn.flow == Flow.INT and insn.opcode == 0xCD and (insn.imm or 0) & 0xFF == 6:
                    self._on_intr(uc, 6, None, at=(cs, (ip + insn.length) & 0xFFFF))
                else:
                    self._on_intr(uc, 6, None, at=(cs, ip))
            steps += 1
            if self.smc.unsupported:
                event = Event("unsupported", cs, ip, self.smc.unsupported)
                break
            if not self.delivered and uc.reg_read(X.UC_X86_REG_CS) == cs and uc.reg_read(X.UC_X86_REG_EIP) == ip \
                    and uc.reg_read(X.UC_X86_REG_ECX) == ecx and insn.ok and insn.flow != Flow.HLT:
                event = Event("unsupported", cs, ip, "no progress: a store into the translation block Unicorn "
                              "is running (it restarts the instruction)")
                break
            if self.delivered:
                continue
            if not insn.ok:
                continue
            mn = insn.mnemonic
            self.undef.step_insn(insn, ecx)
            if mn in ("popf", "popfd", "iret", "iretd"):
                # a FLAGS image pushed while flags were undefined keeps them undefined
                size = insn.eff_opsize // 8
                at = (sp_before + (2 * size if mn.startswith("iret") else 0)) & 0xFFFF
                lin = (uc.reg_read(X.UC_X86_REG_SS) << 4) + at
                self.undef.mask |= popped_undefined(self.flag_images, lin, size)
            if mn in ("pushf", "pushfd"):
                size = 2 if mn == "pushf" else 4
                sp = (sp_before - size) & 0xFFFF
                self.flag_images.append(((uc.reg_read(X.UC_X86_REG_SS) << 4) + sp, size, self.undef.mask))
            if insn.flow == Flow.HLT:
                event = Event("hlt", uc.reg_read(X.UC_X86_REG_CS), uc.reg_read(X.UC_X86_REG_IP))
                break
            if uc.reg_read(X.UC_X86_REG_CR0) & 1:
                event = Event("mode", cs, ip, "CR0.PE set")
                break
        return self._final(event, steps)

    def _final(self, event: Event, steps: int) -> FinalState:
        uc = self.uc
        segs = [uc.reg_read(r) & 0xFFFF for r in SEG_IDS]
        gdtr = uc.reg_read(X.UC_X86_REG_GDTR)
        idtr = uc.reg_read(X.UC_X86_REG_IDTR)
        st = FinalState(
            gprs=[uc.reg_read(r) & 0xFFFFFFFF for r in GPR_IDS],
            eflags=uc.reg_read(X.UC_X86_REG_EFLAGS) & 0xFFFFFFFF,
            segs=segs, seg_bases=[s << 4 for s in segs],
            cr0=uc.reg_read(X.UC_X86_REG_CR0) & 0xFFFFFFFF,
            cr2=uc.reg_read(X.UC_X86_REG_CR2) & 0xFFFFFFFF,
            cr3=uc.reg_read(X.UC_X86_REG_CR3) & 0xFFFFFFFF,
            cr4=uc.reg_read(X.UC_X86_REG_CR4) & 0xFFFFFFFF,
            gdtr=(gdtr[1], gdtr[2]), idtr=(idtr[1], idtr[2]),
            memory=bytes(self.mem), io=list(self.ports.trace), event=event,
            undefined_flags=self.undef.mask, flag_images=list(self.flag_images),
            first_delivery=self.first_delivery, steps=steps)
        return st


def run_reference(case: Case, max_steps: int = MAX_STEPS) -> FinalState:
    return _Run(case).run(max_steps)
