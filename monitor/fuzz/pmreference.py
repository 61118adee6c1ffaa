"""The reference path for protected mode and V8086: the guest's bytes on a
bare Unicorn CPU that owns the guest's own tables (docs/fuzzing.md).

A fresh ``Uc(UC_ARCH_X86, UC_MODE_32)`` per example, the same CPU model as
the monitor's (``monitor.cpuid.CPU_MODEL``), the guest's 2 MiB at 0
(host-owned), GDTR/IDTR/LDTR/TR pointing at the guest's tables, CR0/CR4 and
the SYSENTER MSRs as the case says.  Ring 0 is entered by writing the
segment registers; ring 3 and V8086 the way a kernel enters them: an
``iretd`` at ring 0, from a harness page outside guest RAM that is unmapped
again before the guest's first instruction (so guest memory is untouched).

The guest then runs one instruction per ``emu_start(count=1)`` (``begin`` is
EIP in ``UC_MODE_32``, also in V8086: U13; a ``rep`` string instruction runs
to its end with ``until`` = the linear address of the next one), and the
loop stops at the first event, as both paths do:

* an exception or software interrupt (``UC_HOOK_INTR``, U2): vector, error
  code (from the context blob, U3) and EIP.  Unicorn never looks at the IDT,
  so for ``int n``/``int3``/``into`` the loop applies what the hardware
  checks before delivering a *software* interrupt: the IDT limit, the gate
  type and present bit, gate DPL >= CPL (else #GP(vector*8+2) at the
  instruction).  Exceptions are delivered through the guest's valid gates on
  hardware, so they are the event as reported;
* ``#UD``: ``emu_start`` fails with ``UC_ERR_INSN_INVALID`` (U22), vector 6
  at the instruction;
* ``hlt`` at CPL 0; ``sysenter``/``sysexit`` (which Unicorn does not perform
  faithfully, U21) are events of their own: #GP(0) when the SYSENTER_CS MSR
  is null or (``sysexit``) CPL > 0, else ``sysenter``/``sysexit`` with the
  state before the transfer;
* I/O the guest's IOPL and TSS bitmap deny: Unicorn does not check (U7), so
  the loop does, before the instruction, and reports #GP(0) there;
* ``escape``: control outside the block and the handlers.

Where Unicorn is not hardware and no answer can be given, the step ends the
example as ``unsupported`` (rejected, counted): a memory operand outside the
segment limit, through a null selector, a write to a read-only or code
segment or a read of an execute-only one (U1: Unicorn checks none of these,
the hardware raises #GP/#SS), 16-bit stack accesses at the wrap, any access
outside guest RAM, far ``jmp``/``call`` to a gate or TSS (U6: a call gate
from CPL 3 aborts the host; task switches are not supported by hybrid86),
``iret`` with NT=1 (a task return), string I/O with a zero count at a
denied port (hardware and the two monitor worlds differ on whether the
check comes first).

The segment registers' hidden parts (base, limit, attributes) are read from
Unicorn's context blob at offsets calibrated at start-up (``seg_layout``),
so the comparison sees the descriptor cache the CPU really uses.
"""

from __future__ import annotations

import ctypes
import functools
import struct

from unicorn import (UC_ARCH_X86, UC_ERR_FETCH_UNMAPPED, UC_ERR_INSN_INVALID, UC_ERR_READ_UNMAPPED,
                     UC_ERR_WRITE_UNMAPPED, UC_HOOK_INSN, UC_HOOK_INTR, UC_HOOK_MEM_UNMAPPED, UC_MODE_32,
                     UC_PROT_ALL, Uc, UcError)
from unicorn import x86_const as X

from bt.decoder import decode
from bt.opcodes import Flow, Sens
from monitor import descriptors as D
from monitor.fuzz import pmenv as E
from monitor.fuzz.case import NT, RAM_SIZE, REGS32, RF, VM, Case
from monitor.fuzz.flags import UndefinedFlags, popped_undefined, reads
from monitor.fuzz.ports import PortModel
from monitor.fuzz.state import Event, FinalState

GPR_IDS = [getattr(X, f"UC_X86_REG_{r.upper()}") for r in REGS32]
SEG_IDS = [X.UC_X86_REG_ES, X.UC_X86_REG_CS, X.UC_X86_REG_SS, X.UC_X86_REG_DS, X.UC_X86_REG_FS, X.UC_X86_REG_GS]
SEG_INDEX = {"es": 0, "cs": 1, "ss": 2, "ds": 3, "fs": 4, "gs": 5}
MAX_STEPS = 20000
HARNESS = 0x7FFF0000
ERROR_CODE_VECTORS = (8, 10, 11, 12, 13, 14, 17)
FLAG_DB, FLAG_G = 1 << 22, 1 << 23
# Instructions whose first (memory) operand is only read.
READ_FIRST = {"cmp", "test", "bt", "push", "jmp", "call", "jmpf", "callf", "lgdt", "lidt", "lldt", "ltr",
              "lmsw", "verr", "verw", "lar", "lsl", "invlpg"}


class Unsupported(Exception):
    """No hardware answer from this reference at this step (docs/fuzzing.md)."""


# --------------------------------------------------------------------------- the context blob

@functools.lru_cache(maxsize=None)
def seg_layout() -> tuple[int, ...]:
    """Offsets of the six segment caches (selector u32, base u64, limit u32,
    flags u32) in Unicorn's context blob: found by loading distinctive
    descriptors and searching for their bases."""
    uc = Uc(UC_ARCH_X86, UC_MODE_32)
    uc.mem_map(0, 0x10000)
    bases = [0x01234500 + 0x11110 * i for i in range(6)]
    gdt = bytes(8) + b"".join(D.Descriptor(b, 0x5A5A, 0x93, 0).encode() for b in bases) + D.code32().encode()
    uc.mem_write(0x1000, gdt)
    uc.reg_write(X.UC_X86_REG_GDTR, (0, 0x1000, len(gdt) - 1, 0))
    uc.reg_write(X.UC_X86_REG_CR0, 0x11)
    for i, rid in enumerate(SEG_IDS):
        if i != 1:
            uc.reg_write(rid, 8 * (i + 1))
    ctx = uc.context_save()
    blob = ctypes.string_at(ctx.context.value, ctx.size)
    offsets = []
    for i in range(6):
        if i == 1:
            offsets.append(None)
            continue
        at = blob.find(struct.pack("<Q", bases[i]))
        if at < 8 or blob.find(struct.pack("<Q", bases[i]), at + 1) != -1:
            raise RuntimeError("cannot find Unicorn's segment caches in the context blob")
        assert struct.unpack_from("<I", blob, at - 8)[0] == 8 * (i + 1)
        assert struct.unpack_from("<I", blob, at + 8)[0] == 0x5A5A
        offsets.append(at - 8)
    step = offsets[3] - offsets[2]
    offsets[1] = offsets[0] + step
    assert offsets[2] == offsets[0] + 2 * step and offsets[5] == offsets[0] + 5 * step
    return tuple(offsets)


class SegCache:
    __slots__ = ("sel", "base", "limit", "flags")

    def __init__(self, sel, base, limit, flags):
        self.sel, self.base, self.limit, self.flags = sel, base, limit, flags

    @property
    def access(self) -> int:
        return (self.flags >> 8) & 0xFF

    def tuple(self):
        return (self.sel, self.base, self.limit, self.access, (self.flags >> 20) & 0xF)


def valid_range(cache: SegCache, lo: int, hi: int, vm: bool) -> bool:
    """Is [lo, hi] (offsets) inside the segment the cache describes?"""
    if vm:
        return 0 <= lo and hi <= 0xFFFF
    acc = cache.access
    if acc & 0x18 == 0x10 and acc & 0x04:              # expand-down data
        upper = 0xFFFFFFFF if cache.flags & FLAG_DB else 0xFFFF
        return lo > cache.limit and hi <= upper
    return 0 <= lo and hi <= cache.limit


# --------------------------------------------------------------------------- the run

class PmReference:
    def __init__(self, case: Case):
        from _native.cpu_py import Cpu
        from monitor.cpuid import CPU_MODEL

        self.case = case
        self.env = case.env
        self.mem = case.memory_image()
        self.uc = uc = Uc(UC_ARCH_X86, UC_MODE_32)
        uc.ctl_set_cpu_model(CPU_MODEL)
        self._cbuf = (ctypes.c_char * RAM_SIZE).from_buffer(self.mem)
        uc.mem_map_ptr(0, RAM_SIZE, UC_PROT_ALL, ctypes.addressof(self._cbuf))
        self.ports = PortModel()
        self.event: Event | None = None
        self.unsupported: str | None = None
        self.undef = UndefinedFlags()
        self.masks: list[tuple] = []
        self.step_eip = 0
        self.cur_insn = None
        self.offsets = seg_layout()
        uc.hook_add(UC_HOOK_INTR, self._on_intr)
        uc.hook_add(UC_HOOK_INSN, self._on_in, None, 1, 0, X.UC_X86_INS_IN)
        uc.hook_add(UC_HOOK_INSN, self._on_out, None, 1, 0, X.UC_X86_INS_OUT)
        uc.hook_add(UC_HOOK_MEM_UNMAPPED, self._on_unmapped)
        from monitor.fuzz.smc import SmcWatch
        bt = case.mode in ("pm16", "pm32") or case.env.get("world") == "BT"
        self.smc = SmcWatch(uc, case.linear, case.linear + len(case.code), bt=bt)
        self.cpu = Cpu(uc)
        self._ctx = uc.context_save()
        self._setup()

    # -- set-up -------------------------------------------------------------------

    def _setup(self) -> None:
        uc, env, case = self.uc, self.env, self.case
        gdt_len = len(env["gdt"]) // 2
        uc.reg_write(X.UC_X86_REG_CR0, case.cr0)
        uc.reg_write(X.UC_X86_REG_CR4, env["cr4"])
        uc.reg_write(X.UC_X86_REG_GDTR, (0, E.SYS_GDT, gdt_len - 1, 0))
        uc.reg_write(X.UC_X86_REG_IDTR, (0, E.SYS_IDT, 0x7FF, 0))
        uc.reg_write(X.UC_X86_REG_CS, E.SEL_CODE0)
        for rid in (X.UC_X86_REG_SS, X.UC_X86_REG_DS, X.UC_X86_REG_ES, X.UC_X86_REG_FS, X.UC_X86_REG_GS):
            uc.reg_write(rid, E.SEL_DATA0)
        if env["ldtr"]:
            uc.reg_write(X.UC_X86_REG_LDTR, (env["ldtr"], E.SYS_LDT, E.LDT_ENTRIES * 8 - 1, 0x82))
        uc.reg_write(X.UC_X86_REG_TR, (E.SEL_TSS, E.SYS_TSS, E.TSS_LIMIT, 0x8B))
        for idx, value in zip((E.MSR_SYSENTER_CS, E.MSR_SYSENTER_ESP, E.MSR_SYSENTER_EIP), env["msr"]):
            uc.msr_write(idx, value)
        regs = case.regs
        for rid, name in zip(GPR_IDS, REGS32):
            uc.reg_write(rid, regs.get(name, 0) & 0xFFFFFFFF)
        segs = env["segs"]                                   # es cs ss ds fs gs
        eflags = case.eflags | 0x2
        if env["cpl"] == 0 and not env["vm"]:
            for i in (0, 2, 3, 4, 5):
                uc.reg_write(SEG_IDS[i], segs[i])
            uc.reg_write(X.UC_X86_REG_CS, segs[1])
            uc.reg_write(X.UC_X86_REG_EFLAGS, eflags)
            uc.reg_write(X.UC_X86_REG_EIP, case.ip)
        else:
            esp = regs.get("esp", 0) & 0xFFFFFFFF
            if env["vm"]:
                frame = [case.ip, segs[1], eflags | VM, esp, segs[2], segs[0], segs[3], segs[4], segs[5]]
            else:
                for i in (0, 3, 4, 5):
                    uc.reg_write(SEG_IDS[i], segs[i])
                frame = [case.ip, segs[1], eflags & ~VM, esp, segs[2]]
            uc.mem_map(HARNESS, 0x1000)
            uc.mem_write(HARNESS, b"\xcf")                    # iretd
            uc.mem_write(HARNESS + 0x800, struct.pack(f"<{len(frame)}I", *frame))
            uc.reg_write(X.UC_X86_REG_ESP, HARNESS + 0x800)
            uc.reg_write(X.UC_X86_REG_EIP, HARNESS)
            uc.emu_start(HARNESS, case.linear, count=1)
            uc.mem_unmap(HARNESS, 0x1000)
            if self.event is not None or uc.reg_read(X.UC_X86_REG_EIP) != case.ip:
                raise RuntimeError(f"the reference could not enter the guest's mode: {self.event}")

    # -- state ----------------------------------------------------------------------

    def caches(self) -> list[SegCache]:
        self.uc.context_update(self._ctx)
        blob = (ctypes.c_char * self._ctx.size).from_address(self._ctx.context.value)
        out = []
        for off in self.offsets:
            sel, = struct.unpack_from("<I", blob, off)
            base, = struct.unpack_from("<Q", blob, off + 8)
            limit, flags = struct.unpack_from("<II", blob, off + 16)
            out.append(SegCache(sel & 0xFFFF, base & 0xFFFFFFFF, limit, flags))
        return out

    def cpl(self, caches=None) -> int:
        if self.uc.reg_read(X.UC_X86_REG_EFLAGS) & VM:
            return 3
        return (caches or self.caches())[1].sel & 3

    # -- hooks ------------------------------------------------------------------------

    def _on_in(self, uc, port, size, _):
        return self.ports.read(port, size)

    def _on_out(self, uc, port, size, value, _):
        self.ports.write(port, size, value)

    def _on_unmapped(self, uc, access, address, size, value, _):
        self.unsupported = f"access outside guest RAM at {address:#x}"
        return False

    def _on_intr(self, uc, intno, _):
        _old, err, is_int = self.cpu.fault_info()
        self.cpu.reset_old_exception()
        eip = uc.reg_read(X.UC_X86_REG_EIP) & 0xFFFFFFFF
        code = err & 0xFFFFFFFF if (not is_int and intno in ERROR_CODE_VECTORS) else None
        self._raise(intno, code, eip, soft=bool(is_int))
        uc.emu_stop()

    def _raise(self, vector: int, code, eip: int, soft: bool = False) -> None:
        """The first event, with the checks a CPU makes before delivering a
        software interrupt (Unicorn makes none: U2)."""
        if self.event is not None:
            return
        cs = self.uc.reg_read(X.UC_X86_REG_CS) & 0xFFFF
        if soft:
            fault = self._soft_check(vector)
            if fault is not None:
                vector, code, eip = fault[0], fault[1], self.step_eip
                soft = False
        self.event = Event("event", cs, eip, vector=vector, error=code, soft=soft)

    def deliverable(self) -> bool:
        """Can the CPU deliver through the case's gates?  Their CS (0x08) is
        read from the GDT: not after an `lgdt` to a table the harness did
        not lay out, or with a limit that cuts 0x08 off."""
        _, gbase, glimit, _ = self.uc.reg_read(X.UC_X86_REG_GDTR)
        return gbase in (E.SYS_GDT, E.SYS_GDT_ALT) and glimit >= E.SEL_DATA0 + 7     # 0x08, and ss0 0x10

    def _soft_check(self, vector: int):
        _, base, limit, _ = self.uc.reg_read(X.UC_X86_REG_IDTR)
        code = vector * 8 + 2
        if vector * 8 + 7 > limit:
            return 13, code
        lin = (base + vector * 8) & 0xFFFFFFFF
        if lin + 8 > RAM_SIZE:
            raise Unsupported("IDT outside guest RAM")
        gate = D.decode(bytes(self.mem[lin:lin + 8]))
        if not isinstance(gate, D.Gate) or gate.type not in (D.SYS_INT_GATE16, D.SYS_TRAP_GATE16,
                                                            D.SYS_INT_GATE32, D.SYS_TRAP_GATE32):
            if isinstance(gate, D.Gate) and gate.type == D.SYS_TASK_GATE:
                raise Unsupported("task gate")
            return 13, code
        if gate.dpl < self.cpl():
            return 13, code
        if not gate.present:
            return 11, code
        return None

    # -- checks before a step ------------------------------------------------------------

    def _ea(self, insn, caches, seg=None) -> tuple[int, SegCache]:
        uc = self.uc
        m = insn.mem
        off = m.disp or 0
        if m.base:
            off += uc.reg_read(getattr(X, f"UC_X86_REG_{m.base.upper()}"))
        if m.index:
            off += uc.reg_read(getattr(X, f"UC_X86_REG_{m.index.upper()}")) * m.scale
        off &= 0xFFFF if insn.addrsize == 16 else 0xFFFFFFFF
        return off, caches[SEG_INDEX[seg or m.segment]]

    def _check_access(self, cache: SegCache, lo: int, hi: int, write: bool, vm: bool, what: str) -> None:
        if not vm:
            if cache.sel & 0xFFFC == 0:
                raise Unsupported(f"{what} through a null segment (hardware: #GP, Unicorn: base 0)")
            acc = cache.access
            if write and (acc & 0x08 or not acc & 0x02):
                raise Unsupported(f"{what}: write to a read-only or code segment (U1)")
            if not write and acc & 0x08 and not acc & 0x02:
                raise Unsupported(f"{what}: read of an execute-only segment (U1)")
        if not valid_range(cache, lo, hi, vm):
            raise Unsupported(f"{what} outside the segment limit (U1)")
        if cache.base + hi >= RAM_SIZE:
            raise Unsupported(f"{what} outside guest RAM")

    def precheck(self, insn, caches, eip: int, vm: bool, cpl: int):
        """Hardware checks Unicorn does not make; returns an Event raised
        before the instruction runs, or None.  Raises Unsupported."""
        uc = self.uc
        if not insn.ok:
            return None
        # explicit memory operands (U1)
        if insn.mem is not None and insn.mnemonic not in ("lea", "invlpg", "nop"):
            off, cache = self._ea(insn, caches)
            size = max(1, max((o[2] for o in insn.operands if o[0] == "mem"), default=8) // 8) or 8
            write = bool(insn.operands) and insn.operands[0][0] == "mem" and insn.mnemonic not in READ_FIRST
            self._check_access(cache, off, off + size - 1, write, vm, "memory operand")
            if insn.mnemonic in ("jmpf", "callf"):
                raw = bytes(self.mem[(cache.base + off) & 0xFFFFFFFF:][:size])
                self._far_target(int.from_bytes(raw[-2:], "little"), vm)
        # stack
        ss = caches[2]
        if insn.uses_stack or insn.flow in (Flow.CALL, Flow.RET, Flow.CALLF, Flow.RETF, Flow.IRET,
                                            Flow.CALL_IND, Flow.CALLF_IND, Flow.INT, Flow.INT3, Flow.INTO):
            esp = uc.reg_read(X.UC_X86_REG_ESP)
            big = bool(ss.flags & FLAG_DB) and not vm
            sp = esp if big else esp & 0xFFFF
            frame = insn.flow not in (Flow.NONE, Flow.CALL, Flow.RET, Flow.CALL_IND) or insn.mnemonic in (
                "pusha", "pushad", "popa", "popad", "enter", "leave")
            if not big and (not 0x40 <= sp <= 0xFFC0 if frame else not 8 <= sp <= 0xFFF0):
                raise Unsupported("16-bit stack access at the wrap (hardware: #SS past the limit; Unicorn "
                                  "reads a far return's later words past 64 KiB)")
            if big:
                self._check_access(ss, (sp - 0x40) & 0xFFFFFFFF, (sp + 0x40) & 0xFFFFFFFF, True, vm, "stack")
                if sp < 0x40:
                    raise Unsupported("stack at offset 0")
            elif ss.base + 0x10000 > RAM_SIZE:
                raise Unsupported("stack segment outside guest RAM")
        # string operands
        if insn.is_string:
            self._check_string(insn, caches, vm)
        if insn.attrs & 0x0400:                                     # xlat
            off = (uc.reg_read(X.UC_X86_REG_EBX) + (uc.reg_read(X.UC_X86_REG_EAX) & 0xFF))
            off &= 0xFFFF if insn.addrsize == 16 else 0xFFFFFFFF
            self._check_access(caches[SEG_INDEX[insn.segment or "ds"]], off, off, False, vm, "xlat")
        # far transfers to system descriptors (U6) and task returns
        if insn.flow in (Flow.JMPF, Flow.CALLF) and insn.far_target is not None:
            self._far_target(insn.far_target[0], vm)
        if insn.flow == Flow.IRET and not vm and uc.reg_read(X.UC_X86_REG_EFLAGS) & NT:
            raise Unsupported("iret with NT=1 (a task return)")
        if insn.flow in (Flow.IRET, Flow.RETF) and not vm and cpl < 3 and any(
                c.sel & 0xFFFC == 0 and c.sel & 3 for c in (caches[0], caches[3], caches[4], caches[5])):
            # a return to an outer level with a null selector of RPL > 0 in a data
            # segment register: Unicorn nulls it in ES/DS (selector 0) but not in FS/GS
            raise Unsupported("far return with a null selector of nonzero RPL in ES/DS/FS/GS")
        # ltr with a null selector: #GP(0) on the CPU; Unicorn (QEMU's 64-bit
        # semantics) loads a null TR instead (found by this fuzzer)
        if insn.mnemonic == "ltr" and not vm and cpl == 0:
            if insn.mod == 3:
                sel = uc.reg_read(getattr(X, f"UC_X86_REG_{('ax', 'cx', 'dx', 'bx', 'sp', 'bp', 'si', 'di')[insn.rm].upper()}"))
            else:
                off, cache = self._ea(insn, caches)
                sel = int.from_bytes(self.mem[(cache.base + off) & 0xFFFFFFFF:][:2], "little")
            if sel & 0xFFFC == 0:
                return Event("event", caches[1].sel, eip, vector=13, error=0)
        # I/O permission (U7)
        if insn.sensitive == Sens.IO:
            return self._io_check(insn, eip, vm, cpl)
        # sysenter / sysexit (U21)
        if insn.flow == Flow.SYS:
            cs_msr = uc.msr_read(E.MSR_SYSENTER_CS) & 0xFFFC
            nxt = (eip + insn.length) & 0xFFFFFFFF
            sel = caches[1].sel
            if vm:
                raise Unsupported("sysenter/sysexit in V8086 mode")
            if insn.mnemonic == "sysenter":
                if cs_msr == 0:
                    return Event("event", sel, eip, vector=13, error=0)
                return Event("sysenter", sel, nxt)
            if cs_msr == 0 or cpl != 0:
                return Event("event", sel, eip, vector=13, error=0)
            return Event("sysexit", sel, nxt)
        return None

    def _far_target(self, sel: int, vm: bool) -> None:
        if vm or sel & 0xFFFC == 0:
            return
        d = self._descriptor(sel)
        if d is not None and d.is_system and (d.is_gate or d.is_tss):
            raise Unsupported("far jmp/call through a gate or to a TSS (U6; hybrid86 stops: not supported)")

    def _descriptor(self, sel: int):
        if sel & 4:
            ldt_sel, base, limit, _ = self.uc.reg_read(X.UC_X86_REG_LDTR)
            if ldt_sel & 0xFFFC == 0:
                return None
        else:
            _, base, limit, _ = self.uc.reg_read(X.UC_X86_REG_GDTR)
        off = sel & 0xFFF8
        if off + 7 > limit:
            return None
        lin = (base + off) & 0xFFFFFFFF
        if lin + 8 > RAM_SIZE:
            raise Unsupported("descriptor table outside guest RAM")
        return D.decode(bytes(self.mem[lin:lin + 8]))

    def _check_string(self, insn, caches, vm: bool) -> None:
        uc = self.uc
        amask = 0xFFFF if insn.addrsize == 16 else 0xFFFFFFFF
        size = max(1, insn.opsize // 8) if insn.opsize else 1
        count = uc.reg_read(X.UC_X86_REG_ECX) & amask if insn.rep else 1
        span = count * size
        op = insn.opcode
        down = bool(uc.reg_read(X.UC_X86_REG_EFLAGS) & 0x400)
        uses_src = op in (0xA4, 0xA5, 0xA6, 0xA7, 0xAC, 0xAD, 0x6E, 0x6F)
        uses_dst = op in (0xA4, 0xA5, 0xA6, 0xA7, 0xAA, 0xAB, 0xAE, 0xAF, 0x6C, 0x6D)
        writes_dst = op in (0xA4, 0xA5, 0xAA, 0xAB, 0x6C, 0x6D)
        for used, reg, seg, write in ((uses_src, X.UC_X86_REG_ESI, insn.segment or "ds", False),
                                      (uses_dst, X.UC_X86_REG_EDI, "es", writes_dst)):
            if not used or not span:
                continue
            start = uc.reg_read(reg) & amask
            lo, hi = (start - span + size, start + size - 1) if down else (start, start + span - 1)
            if lo < 0 or hi > amask:
                raise Unsupported("string operand wraps around the address size")
            self._check_access(caches[SEG_INDEX[seg]], lo, hi, write, vm, "string operand")

    def _io_check(self, insn, eip: int, vm: bool, cpl: int):
        uc = self.uc
        op = insn.opcode
        size = 1 if op in (0xE4, 0xE6, 0xEC, 0xEE, 0x6C, 0x6E) else (2 if insn.eff_opsize == 16 else 4)
        port = (insn.imm & 0xFF) if op in (0xE4, 0xE5, 0xE6, 0xE7) else uc.reg_read(X.UC_X86_REG_EDX) & 0xFFFF
        iopl = (uc.reg_read(X.UC_X86_REG_EFLAGS) >> 12) & 3
        if not vm and cpl <= iopl:
            return None
        if self._bitmap_allows(port, size):
            return None
        if insn.is_string and insn.rep:
            amask = 0xFFFF if insn.addrsize == 16 else 0xFFFFFFFF
            if uc.reg_read(X.UC_X86_REG_ECX) & amask == 0:
                raise Unsupported("rep ins/outs with a zero count at a denied port")
        return Event("event", uc.reg_read(X.UC_X86_REG_CS) & 0xFFFF, eip, vector=13, error=0)

    def _bitmap_allows(self, port: int, size: int) -> bool:
        sel, base, limit, flags = self.uc.reg_read(X.UC_X86_REG_TR)
        if (flags & 0xF) not in (D.SYS_TSS32, D.SYS_TSS32_BUSY) or limit < 0x67:
            return False
        if base + limit >= RAM_SIZE:
            raise Unsupported("TSS outside guest RAM")
        # SDM vol. 1, 19.5.2: the CPU reads the 16-bit word at iomap base +
        # port / 8 (both bytes within the TSS limit) and tests `size` bits of it
        iomap = struct.unpack_from("<H", self.mem, base + 0x66)[0]
        offset = iomap + port // 8
        if offset + 1 > limit:
            return False
        word = struct.unpack_from("<H", self.mem, base + offset)[0]
        return (word >> (port & 7)) & ((1 << size) - 1) == 0

    # -- the step loop -------------------------------------------------------------------

    def run(self, max_steps: int = MAX_STEPS) -> FinalState:
        uc, case = self.uc, self.case
        steps = 0
        event = None
        while event is None:
            caches = self.caches()
            eflags = uc.reg_read(X.UC_X86_REG_EFLAGS)
            vm = bool(eflags & VM)
            eip = uc.reg_read(X.UC_X86_REG_EIP) & 0xFFFFFFFF
            cs = caches[1]
            cpl = 3 if vm else cs.sel & 3
            bits = 16 if vm or not cs.flags & FLAG_DB else 32
            lin = (cs.base + eip) & 0xFFFFFFFF
            if not case.in_block(lin):
                event = Event("escape", cs.sel, eip)
                break
            if steps >= max_steps:
                event = Event("limit", cs.sel, eip)
                break
            insn = decode(bytes(self.mem[lin:lin + 15]), eip, bits)
            self.cur_insn, self.step_eip = insn, eip
            self.smc.step(lin, insn)
            ecx = uc.reg_read(X.UC_X86_REG_ECX)
            esp_before = uc.reg_read(X.UC_X86_REG_ESP)
            if reads(insn) & self.undef.mask:
                event = Event("unsupported", cs.sel, eip, "reads a flag the SDM leaves undefined")
                break
            try:
                pre = self.precheck(insn, caches, eip, vm, cpl)
            except Unsupported as why:
                event = Event("unsupported", cs.sel, eip, str(why))
                break
            if pre is not None:
                event = pre
                break
            try:
                if insn.ok and insn.is_string and insn.rep:
                    uc.emu_start(eip, (cs.base + eip + insn.length) & 0xFFFFFFFF, count=200000)
                else:
                    uc.emu_start(eip, 0xFFFFFFFFFFFFFFFF, count=1)
            except Unsupported as why:
                event = Event("unsupported", cs.sel, eip, str(why))
                break
            except UcError as err:
                if self.unsupported or err.errno in (UC_ERR_READ_UNMAPPED, UC_ERR_WRITE_UNMAPPED,
                                                     UC_ERR_FETCH_UNMAPPED):
                    event = Event("unsupported", cs.sel, eip, self.unsupported or str(err))
                    break
                if err.errno != UC_ERR_INSN_INVALID:
                    event = Event("error", cs.sel, eip, f"unicorn: {err}")
                    break
                if insn.ok and insn.flow == Flow.INT and insn.opcode == 0xCD and (insn.imm or 0) & 0xFF == 6:
                    self._raise(6, None, (eip + insn.length) & 0xFFFFFFFF, soft=True)
                else:
                    self._raise(6, None, eip)
            steps += 1
            if self.unsupported or self.smc.unsupported:
                event = Event("unsupported", cs.sel, eip, self.unsupported or self.smc.unsupported)
                break
            if self.event is not None:
                event = self.event
                break
            if uc.reg_read(X.UC_X86_REG_EIP) == eip and uc.reg_read(X.UC_X86_REG_ECX) == ecx \
                    and uc.reg_read(X.UC_X86_REG_CS) & 0xFFFF == cs.sel and insn.ok and insn.flow != Flow.HLT:
                event = Event("unsupported", cs.sel, eip, "no progress: a store into the translation block "
                              "Unicorn is running (it restarts the instruction)")
                break
            if not insn.ok:
                continue
            self._after(insn, ecx, esp_before, vm, caches)
            if insn.flow == Flow.HLT:
                event = Event("hlt", uc.reg_read(X.UC_X86_REG_CS) & 0xFFFF, uc.reg_read(X.UC_X86_REG_EIP))
                break
        if event.kind == "event" and not self.deliverable():
            event = Event("unsupported", event.cs, event.ip,
                          "an event with GDTR moved or cut: its delivery is not defined by the case")
        return self._final(event, steps)

    def _after(self, insn, ecx: int, esp_before: int, vm: bool, caches) -> None:
        """Undefined flags, and the bytes of memory the SDM leaves undefined."""
        mn = insn.mnemonic
        self.undef.step_insn(insn, ecx)
        ss = caches[2]
        big = bool(ss.flags & FLAG_DB) and not vm
        if mn in ("popf", "popfd", "iret", "iretd"):
            # a FLAGS image pushed while flags were undefined keeps them undefined
            size = insn.eff_opsize // 8
            at = (esp_before + (2 * size if mn.startswith("iret") else 0)) & (0xFFFFFFFF if big else 0xFFFF)
            self.undef.mask |= popped_undefined(self.masks, (ss.base + at) & 0xFFFFFFFF, size)
        if mn in ("pushf", "pushfd"):
            size = 2 if mn == "pushf" else 4
            sp = (esp_before - size) & (0xFFFFFFFF if big else 0xFFFF)
            mask = self.undef.mask
            if vm and size == 4:
                mask |= VM | RF                  # U27: Unicorn keeps them in V8086; the SDM stores 0
            self.masks.append(((ss.base + sp) & 0xFFFFFFFF, size, mask))
        elif mn == "push" and insn.sensitive == Sens.SEG_READ and insn.eff_opsize == 32:
            sp = (esp_before - 4) & (0xFFFFFFFF if big else 0xFFFF)
            self.masks.append(((ss.base + sp + 2) & 0xFFFFFFFF, 2, 0xFFFF))    # SDM: upper half undefined
        elif mn in ("sgdt", "sidt") and insn.eff_opsize == 16 and insn.mem is not None:
            off, cache = self._ea(insn, caches)
            self.masks.append(((cache.base + off + 5) & 0xFFFFFFFF, 1, 0xFF))   # 24-bit or full base

    def _final(self, event: Event, steps: int) -> FinalState:
        uc = self.uc
        caches = self.caches()
        gdtr, idtr = uc.reg_read(X.UC_X86_REG_GDTR), uc.reg_read(X.UC_X86_REG_IDTR)
        ldtr, tr = uc.reg_read(X.UC_X86_REG_LDTR), uc.reg_read(X.UC_X86_REG_TR)
        vm = bool(uc.reg_read(X.UC_X86_REG_EFLAGS) & VM)
        return FinalState(
            gprs=[uc.reg_read(r) & 0xFFFFFFFF for r in GPR_IDS],
            eflags=uc.reg_read(X.UC_X86_REG_EFLAGS) & 0xFFFFFFFF,
            segs=[c.sel for c in caches], seg_bases=[c.base for c in caches],
            cr0=uc.reg_read(X.UC_X86_REG_CR0) & 0xFFFFFFFF,
            cr2=uc.reg_read(X.UC_X86_REG_CR2) & 0xFFFFFFFF,
            cr3=uc.reg_read(X.UC_X86_REG_CR3) & 0xFFFFFFFF,
            cr4=uc.reg_read(X.UC_X86_REG_CR4) & 0xFFFFFFFF,
            gdtr=(gdtr[1], gdtr[2]), idtr=(idtr[1], idtr[2]),
            memory=bytes(self.mem), io=list(self.ports.trace), event=event,
            undefined_flags=self.undef.mask, flag_images=list(self.masks), steps=steps,
            descriptors=[_cache_view(c, vm) for c in caches], cpl=3 if vm else caches[1].sel & 3,
            ldtr=(ldtr[0] & 0xFFFF, ldtr[1], ldtr[2]) if ldtr[0] & 0xFFFC else (ldtr[0] & 0xFFFF, None, None),
            tr=(tr[0] & 0xFFFF, tr[1], tr[2]))


def _cache_view(c: SegCache, vm: bool):
    """(base, limit, type/S/DPL/P without the accessed bit, D/B) of a usable
    segment; None for a null selector in protected mode."""
    if not vm and c.sel & 0xFFFC == 0:
        return None
    return (c.base, c.limit, c.access & 0xFE, (c.flags >> 22) & 1)


def run_pm_reference(case: Case, max_steps: int = MAX_STEPS) -> FinalState:
    return PmReference(case).run(max_steps)
