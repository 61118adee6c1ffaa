"""The machine: one guest, its CPU, memory, devices and translator, and the run loop.

The run loop, top to bottom:

1. run translated code until something needs the monitor: a timeout at the
   next device deadline, a callout that stops (hlt, a VM stop), or the write
   trace asking for invalidation;
2. bring virtual time up to host time (devices fire their timers);
3. drop translations of guest code that was overwritten;
4. if the guest halted, sleep until the next device deadline;
5. deliver a pending interrupt when the guest's IF allows and the CPU stands
   at a guest instruction boundary.

Callouts run inside the interrupt hook (vector 3, EIP in the TC) and continue
the same run whenever they can: that is the cheap exit (unicorn-facts costs).
"""

from __future__ import annotations

import collections
import logging
import threading
import time

from unicorn import UC_ARCH_X86, UC_ERR_EXCEPTION, UC_ERR_INSN_INVALID, UC_MODE_32, Uc, UcError
from unicorn.x86_const import (
    UC_X86_REG_CR0, UC_X86_REG_CS, UC_X86_REG_DS, UC_X86_REG_ES, UC_X86_REG_FS,
    UC_X86_REG_EFLAGS, UC_X86_REG_GDTR, UC_X86_REG_GS, UC_X86_REG_SS,
)

import _native
from bt import abi
from bt.callouts import Callout, CalloutTable, Kind
from bt.opcodes import Flow, Sens
from bt.lookup import PAD_HIT_OFFSET, PM_PAD_HIT_OFFSET, IndirectLookup
from bt.protmode import CodeContext, ProtectedModeTranslator
from bt.realmode import RealModeTranslator, real_key
from bt.tc import TCFull, TranslationCache
from devices.base import PortBus
from devices.clock import VirtualClock
from monitor import descriptors as D
from bt.decoder import decode
from monitor.faultaddr import accesses, fault_address
from monitor.guestmem import GuestMemory, VirtualMemory
from monitor.memory import MONITOR_LINEAR, TC_ALLOC_END, TC_LINEAR, TC_SIZE, TC_UNTIL, PhysicalMemory
from monitor.mmu import PF_W, PageFault, SoftMMU
from monitor.modes import World, decide_state
from monitor.relocation import DataWindow
from monitor.protmode import GuestFault, ProtectedModeOps, v86_segment
from monitor.realmode import EFLAGS, EIP, ESP, RealModeOps, VMStop
from monitor.shadow import is_reversible
from monitor.vcpu import CS, SS, VirtualCPU, VirtualStateMirror
from monitor.worlds import WS_TRAP, WorldSwitch

log = logging.getLogger("hybrid86.monitor.machine")

SLICE_NS = 10_000_000          # longest run between two looks at device time
SEG_INDEX = {name: i for i, name in enumerate(abi.SREG_NAMES)}
REAL_SEG_REGS = (UC_X86_REG_ES, UC_X86_REG_CS, UC_X86_REG_SS, UC_X86_REG_DS, UC_X86_REG_FS, UC_X86_REG_GS)


class Machine:
    """A PC with hybrid86's monitor.  Devices are attached by the caller (monitor/pc.py)."""

    def __init__(self, memory_mb: int = 16, native: bool = True, count_instructions: bool = True):
        self.uc = Uc(UC_ARCH_X86, UC_MODE_32)
        from monitor.cpuid import CPU_MODEL
        self.uc.ctl_set_cpu_model(CPU_MODEL)     # the part the guest's CPUID describes (monitor/cpuid.py)
        self.memory = PhysicalMemory(self.uc, memory_mb << 20)
        self.abi = abi.DataLayout()             # where monitor data sits in linear space
        mmu_class = _native.NativeMMU if native else SoftMMU
        self.mmu = mmu_class(self.uc, self.memory, on_code_write=self._on_guest_code_write)
        self.cpu = (_native.Cpu if native else _native.PyCpu)(self.uc)
        from unicorn import UC_HOOK_INSN
        from unicorn.x86_const import UC_X86_INS_SYSENTER
        # sysenter in DE: Unicorn only calls the hooks and steps over it (U21).
        # Registered before the I/O hooks: its helper stops walking the hook
        # list at the first hook once a stop is pending (U28).
        self.uc.hook_add(UC_HOOK_INSN, self._on_sysenter, None, 1, 0, UC_X86_INS_SYSENTER)
        self.cpu.install_hooks()
        self.vcpu = VirtualCPU()
        self.mirror = VirtualStateMirror(self.memory.monitor, self.abi)
        self.guestmem = GuestMemory(self.memory, self.mmu, self._on_code_write)
        self.clock = VirtualClock()
        self.bus = PortBus()
        self.cpu.set_io_handlers(self.bus.read, self.bus.write)
        self.cpu.claim_ports(0x80, 1, "ignore")        # POST/delay port
        self.tc = TranslationCache(self.uc, self.memory)
        self.checked_pages: set[int] = set()   # code pages validated at unit entry instead of write-protected
        self.interrupt_shadow: set = set()     # (cs, ip) right after sti / mov ss / pop ss (bt/realmode.py)
        self.shadow_skips = 0
        self.callouts = CalloutTable()
        self.translator = RealModeTranslator(
            self.tc, self.callouts, self.guestmem.read, self.mmu.trace_page,
            a20_mask=lambda: self.mmu.a20_mask,
            is_checked=self.checked_pages.__contains__, ivt_base=lambda: self.vcpu.idtr[0], layout=self.abi,
            interrupt_shadow=self.interrupt_shadow)
        self.ops = RealModeOps(self)
        self.vmem = VirtualMemory(self.guestmem, self.mmu)
        self.pm_translator = ProtectedModeTranslator(
            self.tc, self.callouts, self._read_code, self.mmu.trace_page,
            is_checked=self.checked_pages.__contains__, layout=self.abi,
            interrupt_shadow=self.interrupt_shadow)
        self.pm_ops = ProtectedModeOps(self)
        self.world = World.BT               # which world the real CPU is in
        self.pad_addresses: set[int] = set()
        self.tc_block_counts: dict[tuple[int, int], int] = {}   # (TC block, size) -> count (this TC generation)
        # Block hooks over the whole address space, in C: they count the
        # instructions run in DE (guest addresses) and in BT (the TC, each block
        # mapped to the guest instructions it translates: _count_tc_block), and
        # they end run slices: the run loop's slice timer asks them to stop, so
        # the stop is made inside the CPU's thread at a block start and the EIP
        # the run reports is exact (U29: Unicorn's own timeout is not).
        counter_class = _native.BlockCounter if native else _native.PyBlockCounter
        self.de_counter = counter_class(self.uc, 0, TC_LINEAR - 1, self._count_block)
        self.bt_counter = counter_class(self.uc, TC_LINEAR, TC_ALLOC_END - 1, self._count_tc_block)
        self.stub_blocks = counter_class(self.uc, TC_ALLOC_END, 0xFFFFFFFF, lambda a, s: 0)
        self.block_hooks = (self.de_counter, self.bt_counter, self.stub_blocks)
        self.de_counter.enable(count_instructions)
        self.bt_counter.enable(count_instructions)
        self.counting = count_instructions
        self.de_pending = None              # an event to deliver when a run starts at WS_TRAP
        self.odd_cs = None                  # (CS, base): real mode with CS's protected-mode base still cached
        self.force_bt = False               # the next guest_target translates even where DE is allowed
        self.short_slice = False            # an interrupt waits out an sti/mov ss shadow: look again soon
        self.io_trap = None                 # (saved context, event) of a DE block being unwound
        self.step_count = 0                 # run only this many instructions next time...
        self.after_step = None              # ...then call this (page-table watch, DE crossing fetch)
        self.lookup = IndirectLookup(self.memory.monitor, self.abi)
        self.pic = None                     # the interrupt controller (monitor/pc.py attaches it)
        self.bios = None                    # set by the PC builder
        self.stats = collections.Counter()  # callouts by kind, interrupts, ...
        self.dirty_pages: set[int] = set()
        self.incoming: dict[int, list[tuple[int, bytes]]] = {}  # unit tc_start -> [(patched address, bytes to restore)]
        self.on_poll = None                 # callable run once per run-loop iteration (front ends)
        self.halted_ip = 0                  # guest IP to resume at when a halted guest takes an interrupt
        self.stop_reason: str | None = None
        self.exit_status: int | None = None
        self.eip = TC_LINEAR
        self._install_shadow_gdt()
        self.worlds = WorldSwitch(self)
        self.window = DataWindow(self)
        self._new_tc_generation()
        self.cpu.set_vector_handler(3, self._on_callout)
        for vector in range(256):
            if vector != 3:
                self.cpu.set_vector_handler(vector, self._on_exception)

    # -- set-up -------------------------------------------------------------------

    def _install_shadow_gdt(self) -> None:
        """The real CPU's GDTR points at the shadow GDT in monitor data, never the guest's."""
        gdt = bytearray(abi.GDT_ENTRIES * 8)       # index-for-index with the guest's (monitor/worlds.py)
        gdt[abi.SEL_TC_CODE:abi.SEL_TC_CODE + 8] = D.code32().encode()
        gdt[abi.SEL_MON_DATA:abi.SEL_MON_DATA + 8] = D.data32().encode()
        gdt[abi.SEL_CODE16:abi.SEL_CODE16 + 8] = D.code16().encode()
        off = self.abi.offset(self.abi.GDT_LINEAR)
        self.memory.monitor[off:off + len(gdt)] = gdt
        self.mirror.constants()
        self.uc.reg_write(UC_X86_REG_GDTR, (0, self.abi.GDT_LINEAR, len(gdt) - 1, 0))
        self.uc.reg_write(UC_X86_REG_CR0, 0x11)           # the real CPU: protected mode, ring 0
        self.uc.reg_write(UC_X86_REG_CS, abi.SEL_TC_CODE)
        for sreg in range(6):
            self.load_seg(sreg, 0, reload=(sreg != CS))

    def attach(self, device):
        """Register a device's port ranges on the bus and in the C port table."""
        for dev, base, count in device.port_ranges():
            self.bus.register(dev, base, count)
            self.cpu.claim_ports(base, count, "python")
        return device

    # -- virtual state ----------------------------------------------------------------

    def load_seg(self, sreg: int, value: int, reload: bool = True) -> None:
        """A real-mode segment load: value, base = value*16; the hidden limit stays."""
        value &= 0xFFFF
        sel = abi.slot_selector(sreg)
        off = self.abi.offset(self.abi.GDT_LINEAR) + sel
        self.memory.monitor[off:off + 8] = D.data16(value << 4, self.vcpu.seg_limits[sreg]).encode()
        self.mirror.seg(sreg, value)
        self.mirror.real_selector(sreg, sel)
        if self.world is World.DE:
            if reload and sreg != CS:
                self.uc.reg_write(REAL_SEG_REGS[sreg], value)      # V8086: a real-mode-style load
            return
        if reload and sreg != CS:
            self.uc.reg_write(REAL_SEG_REGS[sreg], sel)

    def set_segment(self, sreg: int, sel: int, desc) -> None:
        """A protected-mode (or V8086) segment register: selector and cached
        descriptor (None: a null selector).  The slot gets the descriptor at
        DPL 0 (the TC runs at CPL 0); the CS slot is a data segment with CS's
        base for `cs:` operands.  The real register is reloaded now when the
        real CPU is in BT, else by the re-entry stub."""
        v = self.vcpu
        v.segs[sreg] = (sel & 0xFFFF, desc)
        self.mirror.seg(sreg, sel)
        slot = abi.slot_selector(sreg)
        off = self.abi.offset(self.abi.GDT_LINEAR) + slot
        if desc is None:
            self.memory.monitor[off:off + 8] = bytes(8)
            real = 0
        else:
            v.seg_limits[sreg] = desc.limit & 0xFFFFFFFF
            access = desc.access & ~0x60 | D.ACC_ACCESSED
            if sreg == CS:
                access = D.ACC_PRESENT | D.ACC_S | D.ACC_RW | D.ACC_ACCESSED
            self.memory.monitor[off:off + 8] = D.Descriptor(desc.base, desc.limit, access, desc.flags).encode()
            real = slot
        self.mirror.real_selector(sreg, real)
        if sreg != CS and self.world is World.BT:
            self.uc.reg_write(REAL_SEG_REGS[sreg], real)

    def set_real_ldtr(self, sel: int, base: int, limit: int) -> None:
        from unicorn.x86_const import UC_X86_REG_LDTR
        self.uc.reg_write(UC_X86_REG_LDTR, (sel, base, limit, 0x82))

    def guest_eflags(self, regs) -> int:
        """The guest's EFLAGS: the real ones (IF included, docs/real-mode-bt.md)
        with the virtual VM bit."""
        return (regs[EFLAGS] & ~0x20000) | (0x20000 if self.vcpu.eflags_vm else 0) | 2

    def set_guest_eflags(self, regs, value: int) -> None:
        """VM is virtual in BT; RF is dropped: it only suppresses instruction
        breakpoints, which are not virtualized, and Unicorn never clears it, so
        a later pushf would show it (SDM: pushf never stores RF)."""
        self.vcpu.eflags_vm = bool(value & 0x20000)
        regs[EFLAGS] = (value & ~0x30000 & 0x3F7FD7) | 2

    def code_context(self) -> CodeContext:
        sel, desc = self.vcpu.segs[CS]
        return CodeContext(sel, desc.base, bool(desc.big), self.vcpu.cpl)

    def current_cs(self):
        """What units are keyed on: the CS value in real mode, the code context in protected mode."""
        return self.code_context() if self.vcpu.pe else self.seg_value(CS)

    def _count_tc_block(self, address: int, size: int) -> int:
        """Guest instructions whose translation starts in TC block [address,
        address+size), flagged ALT for protected-mode units and MARK for a
        landing pad (a lookup hit)."""
        known = self.tc_block_counts.get((address, size))
        if known is not None:
            return known
        if address in self.pad_addresses:
            return 0x1000000
        units = self.tc.all_units
        lo, hi = 0, len(units)
        while lo < hi:                           # first unit ending after `address`
            mid = (lo + hi) // 2
            if units[mid].tc_end <= address:
                lo = mid + 1
            else:
                hi = mid
        end = address + size
        n, pm = 0, False
        for unit in units[lo:]:
            if unit.tc_start >= end:
                break
            pm = pm or unit.key[0] == "pm"
            n += sum(1 for a, _ in unit.insn_map if address <= a < end)
        value = n | (0x2000000 if pm else 0)
        self.tc_block_counts[(address, size)] = value
        return value

    def _count_block(self, address: int, size: int) -> int:
        """Guest instructions in a block the real CPU ran in DE (asked once per block)."""
        from bt.decoder import decode

        v = self.vcpu
        bits = 16 if v.eflags_vm or not (v.segs[CS][1] and v.segs[CS][1].big) else 32
        try:
            code = self.vmem.read(address, size, cpl=0) + bytes(15)
        except PageFault:
            return 1
        n = off = 0
        while off < size:
            insn = decode(code[off:off + 15], 0, bits)
            off += insn.length if insn.ok else 1
            n += 1
        return n

    def _read_code(self, linear: int, size: int):
        return self.vmem.read_code(linear, size, self.vcpu.cpl)

    # -- control registers ------------------------------------------------------------

    def write_cr0(self, value: int) -> None:
        v = self.vcpu
        old = v.cr0
        v.cr0 = value | 0x10
        self.sync_real_cr0()
        if (old ^ value) & 1:
            if value & 1:
                self._enter_protected_mode()
            else:
                self._leave_protected_mode()
            self._reset_lookup()
        self.paging_changed()

    def sync_real_cr0(self) -> None:
        """The real CR0 is PE=1 and ET=1 plus the guest's MP, EM, TS and NE:
        FPU instructions then trap as the guest's would (#NM), and smsw run
        directly in DE shows the guest's low CR0 bits (U26: it cannot trap)."""
        from unicorn.x86_const import UC_X86_REG_CR0
        self.uc.reg_write(UC_X86_REG_CR0, 0x11 | (self.vcpu.cr0 & 0x2E))

    def _sync_real_cr4(self) -> None:
        """The real CR4 carries the guest's TSD, PCE, OSFXSR and OSXMMEXCPT
        (SSE and rdtsc at CPL 3 then behave as the guest set them up); paging
        bits stay off (the software MMU does paging)."""
        from unicorn.x86_const import UC_X86_REG_CR4
        want = self.vcpu.cr4 & 0x704
        if want != getattr(self, "_real_cr4", None):
            self.uc.reg_write(UC_X86_REG_CR4, want)
            self._real_cr4 = want

    def set_real_tr(self, sel: int, base: int, limit: int, typ: int) -> None:
        """The real TR shows the guest's (the real CPU never uses it: U2, U7),
        so str run directly in DE answers the guest's selector."""
        from unicorn.x86_const import UC_X86_REG_TR
        self.uc.reg_write(UC_X86_REG_TR, (sel, base, limit, 0x80 | typ))

    def _enter_protected_mode(self) -> None:
        """PE 0 -> 1: every segment keeps its real-mode cache (CS too, until the far jump)."""
        v = self.vcpu
        v.cpl = 0
        self.odd_cs = None
        for sreg in range(6):
            value = self.seg_value(sreg)
            self.mirror.seg(sreg, value)              # (VSEG32 too: real-mode loads write VSEG only)
            base = self.mirror.read_base(sreg)
            if sreg == CS:
                desc = D.code16(base, v.seg_limits[sreg])
            else:
                desc = D.data16(base, v.seg_limits[sreg])
            v.segs[sreg] = (value, desc)

    def _leave_protected_mode(self) -> None:
        """PE 1 -> 0: the caches stay (unreal mode); the next far jump reloads CS.
        Until then CS keeps its protected-mode base (`odd_cs`, bt/realmode.py)."""
        v = self.vcpu
        v.cpl = 0
        sel, desc = v.segs[CS]
        self.odd_cs = (sel, desc.base) if desc is not None and desc.base != sel << 4 else None

    def paging_changed(self, flush: bool = False) -> None:
        v = self.vcpu
        self._sync_real_cr4()
        self.mmu.set_control(v.cr0, v.cr3, v.cr4)
        if flush:
            self.mmu.flush()
        self.window.check()                       # keep monitor data where the guest maps nothing

    def invlpg(self, linear: int) -> None:
        self.mmu.invlpg(linear)
        if self.abi.contains(linear & 0xFFFFF000):
            self.window.check()                   # (other pages cannot bring a mapping into the window)

    def tsc(self) -> int:
        return self.clock.now_ns       # a 1 GHz time-stamp counter on virtual time

    # -- worlds -------------------------------------------------------------------------

    def decision(self, regs):
        v = self.vcpu
        reversible = True
        if v.pe and not v.eflags_vm and v.cpl == 3:
            reversible = all(self._reversible(s) for s in range(6))
        return decide_state(v.cr0, self.guest_eflags(regs), v.cpl if v.pe else 0, reversible)

    def _reversible(self, sreg: int) -> bool:
        sel, desc = self.vcpu.segs[sreg]
        if desc is None:
            return True
        try:
            entry = self.pm_ops.table_entry(sel)
            if entry is not None and self._hidden_in_shadow(sel):
                return False                 # the real CPU could not load it from the shadow
        except PageFault:
            return False
        return is_reversible(desc, entry[0] if entry else None)

    def enter_world_de(self) -> None:
        self.world = World.DE
        self.mmu.set_world("de")
        self.mmu.set_cpl(3)
        self.cpu.set_io_check(self._de_io_check)
        self.stats["world_switches_to_de"] += 1

    def enter_world_bt(self) -> None:
        self.world = World.BT
        self.cpu.set_io_check(None)
        self.mmu.set_world("bt")
        self.mmu.set_cpl(self.vcpu.cpl if self.vcpu.pe else 0)
        self.stats["world_switches_to_bt"] += 1

    def _on_sysenter(self, uc, _ud) -> None:
        """A sysenter run directly (ring 3): Unicorn calls this hook, steps
        over the instruction and may run on to the end of the block (U21,
        U16), so the block is unwound like a denied I/O (`_unwind_block`) and
        the run loop then leaves DE and performs the sysenter from the guest's
        MSRs (monitor/protmode.py)."""
        if self.io_trap is not None:
            return
        if self.world is World.DE:
            regs = self.cpu.read_gprs()
            self._sync_from_de(regs)          # (a far transfer run directly may have changed CS)
            v = self.vcpu
            lin = (v.segs[CS][1].base + regs[EIP]) & 0xFFFFFFFF
            try:
                at = self.vmem.read(lin, 2, cpl=3)
            except PageFault:
                at = b""
            after = regs[EIP] + 2 if at == b"\x0f\x34" else regs[EIP]
            self._unwind_block(regs, ("sysenter", after & 0xFFFFFFFF, None))
        else:
            self.stop("sysenter executed outside the TC's callouts (a translator bug)")

    def _de_io_check(self, port: int, size: int, is_write: bool) -> bool:
        """IN/OUT run directly at CPL 3 or in V8086: the CPU checks neither
        IOPL nor the TSS bitmap (U7), so the monitor does; a denied access
        becomes #GP(0) at the instruction (`_unwind_block`).  While a block
        is being unwound, its later I/O instructions still reach this hook
        (U16): they are refused too, so that no device sees them."""
        if self.io_trap is not None:
            return False
        regs = self.cpu.read_gprs()
        if self.pm_ops.io_allowed(regs, port, size):
            self.stats["de_io"] += 1
            return True
        self._unwind_block(regs, ("fault", regs[EIP], GuestFault(13, 0)))
        self.stats["de_io_denied"] += 1
        return False

    def _unwind_block(self, regs, event) -> None:
        """An event in DE that must take effect *at* the current instruction,
        seen in a hook from which a stop lands only at the end of the block
        (U16, U25): save the CPU context here (EIP is exact in these hooks),
        make the software TLB refuse every fill so that no later memory access
        of the block lands, let the block end; the run loop restores the
        context and leaves DE with `event` (`_finish_unwind`)."""
        if self.io_trap is None:
            self.io_trap = (self.uc.context_save(), regs[EFLAGS], event)
            self.mmu.freeze(True)
            self.uc.emu_stop()

    def _finish_unwind(self) -> None:
        ctx, eflags, event = self.io_trap
        self.io_trap = None
        self.mmu.freeze(False)
        self.mmu.clear_page_fault()
        self.mmu.trace_exit = False
        self.uc.context_restore(ctx)
        # A context saved inside a hook keeps the arithmetic flags in QEMU's
        # lazy form only; the next run would rebuild them as 0 (U30): write
        # EFLAGS as the hook read it.
        self.uc.reg_write(UC_X86_REG_EFLAGS, eflags)
        self.de_pending = event

    def guest_target(self, regs, eip: int) -> int:
        """Where the real CPU continues for guest EIP `eip` in the current
        state: a translation (BT), or the DE entry stub with its frame written."""
        v = self.vcpu
        for _ in range(4):
            if v.pe and not self.force_bt and self.decision(regs).direct:
                return self.worlds.prepare_de(regs, eip)
            self.force_bt = False
            if self.world is World.DE:
                self.enter_world_bt()
            self.mmu.set_cpl(v.cpl if v.pe else 0)
            try:
                return self._tc_address(self.current_cs(), eip)
            except PageFault as pf:
                eip = self._fault_at(regs, GuestFault(14, pf.error_code, pf.linear), eip)
        raise VMStop(f"page faults while fetching the handler of a page fault at {eip:#x}")

    def _fault_at(self, regs, fault: GuestFault, eip: int) -> int:
        """Deliver `fault` raised by the instruction at guest `eip`; returns the handler's EIP."""
        self.stats[f"exception_{fault.vector}"] += 1
        if fault.vector == 14:
            self.vcpu.cr2 = fault.cr2 & 0xFFFFFFFF
            self.stats["page_faults_reflected"] += 1
        if not self.vcpu.pe:
            return self.ops.deliver(regs, fault.vector, eip)
        try:
            return self.pm_ops.deliver(regs, fault.vector, eip, fault.error_code)
        except (GuestFault, PageFault) as second:
            raise VMStop(f"exception {fault.vector} at {eip:#x} could not be delivered ({second}): "
                         "double faults are not virtualized") from None

    def seg_value(self, sreg: int) -> int:
        """A guest segment register (translated code may have loaded it inline)."""
        return self.mirror.read_seg(sreg)

    def guest_if(self) -> bool:
        """The guest's EFLAGS.IF.  In BT it is the real CPU's own IF: Unicorn
        delivers no interrupts by itself, so the real IF has no other effect,
        and cli/sti/pushf/popf run as plain copies (docs/real-mode-bt.md)."""
        return bool(self.cpu.read_gprs()[EFLAGS] & 0x200)

    def cpuid(self, regs) -> None:
        from monitor.cpuid import cpuid
        regs[0], regs[3], regs[1], regs[2] = cpuid(regs[0], regs[1])

    # -- entering guest code ------------------------------------------------------------

    def enter_real_mode(self, cs: int, ip: int, regs: dict | None = None) -> None:
        """Start the guest at cs:ip in real mode (after the BIOS's POST)."""
        for name, sreg in (("es", 0), ("ss", 2), ("ds", 3), ("fs", 4), ("gs", 5)):
            self.load_seg(sreg, (regs or {}).get(name, 0))
        self.load_seg(CS, cs)
        gprs = self.cpu.read_gprs()
        for i, name in enumerate(("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi")):
            gprs[i] = (regs or {}).get(name, 0)
        gprs[EFLAGS] = 0x2 | (0x200 if (regs or {}).get("if", False) else 0)
        self.eip = self._tc_address(cs, ip)
        gprs[EIP] = self.eip
        self.cpu.write_gprs(gprs)

    def _unit_for(self, cs, ip: int):
        """The translation of cs:ip, made now if needed (flushing a full TC first).
        `cs` is a CS value (real mode) or a CodeContext (protected mode)."""
        if isinstance(cs, CodeContext):
            translate, args = self.pm_translator.translate, (cs, ip)
        else:
            translate, args = self.translator.translate, (cs, ip, self._odd_base(cs))
        try:
            return translate(*args)
        except TCFull:
            self.flush_translations()
            return translate(*args)

    def _odd_base(self, cs: int) -> int | None:
        """CS's base in real mode when it is not CS x 16 (`odd_cs`), else None."""
        return self.odd_cs[1] if self.odd_cs is not None and self.odd_cs[0] == cs else None

    def _tc_address(self, cs: int, ip: int) -> int:
        return self._unit_for(cs, ip).tc_start

    def flush_translations(self, before_new_generation=None) -> None:
        """Drop the whole TC (it is full, the guest moved its IVT, or the data
        window moves: `before_new_generation` runs before the shared code is
        emitted again), keeping the counts."""
        self.tc.flush()
        self.bt_counter.forget()                 # new code at the same TC addresses
        self.tc_block_counts.clear()
        self.pad_addresses.clear()
        self.incoming.clear()
        self.callouts.clear()
        if before_new_generation is not None:
            before_new_generation()
        self._new_tc_generation()

    def _new_tc_generation(self) -> None:
        """The shared lookup code at the start of a fresh TC: the real-mode
        miss callout, the protected-mode miss stub and dispatch stub."""
        from bt.lookup import pm_dispatch_code, pm_miss_code

        self.real_miss = self._emit_shared(b"", Kind.LOOKUP_MISS)
        self.pm_miss = self._emit_shared(pm_miss_code(self.abi), Kind.PM_LOOKUP_MISS)
        self.pm_translator.dispatch = self.tc.top
        code = pm_dispatch_code(self.abi)
        self.tc.write_fresh(self.tc.top, code)
        self.tc.top += len(code)
        self._reset_lookup()

    def _emit_shared(self, prefix: bytes, kind: Kind) -> int:
        rec = Callout(kind=kind, cs=0, ip=0, next_ip=0)
        index = self.callouts.add(rec)
        start = self.tc.top
        rec.site = start + len(prefix)
        self.tc.write_fresh(start, prefix + bytes([abi.CALLOUT_OPCODE]) + index.to_bytes(4, "little"))
        self.tc.top += len(prefix) + abi.CALLOUT_LEN
        return start

    def _reset_lookup(self) -> None:
        """The lookup table serves the current mode only (bt/lookup.py)."""
        self.lookup.reset(self.pm_miss if self.vcpu.pe else self.real_miss)

    # -- the hooks ------------------------------------------------------------------------

    def _on_callout(self, vector: int, error_code: int, is_int: bool) -> bool:
        if self.io_trap is not None:
            return False                    # a denied DE I/O is being unwound (_de_io_check)
        regs = self.cpu.read_gprs()
        site = regs[EIP] - 1
        if self.world is World.DE:
            return self._leave_de(regs, vector, error_code, is_int)
        if not (TC_LINEAR <= site < TC_LINEAR + TC_SIZE):
            return self._on_exception(vector, error_code, is_int)
        index = self.tc.read_u32(regs[EIP])
        rec = self.callouts[index]
        self.stats[f"callout_{rec.kind.name.lower()}"] += 1
        protected = isinstance(rec.cs, CodeContext)
        saved = list(regs) if protected else None
        try:
            if rec.kind == Kind.CHAIN:
                try:
                    regs[EIP] = self._chain(rec, index)
                except PageFault as pf:           # the target's code is not mapped: #PF at it
                    regs[EIP] = self.guest_target(
                        regs, self._fault_at(regs, GuestFault(14, pf.error_code, pf.linear), rec.target))
                    return self._continue(regs, None)
                return self._continue(regs, rec.target)
            if rec.kind == Kind.LOOKUP_MISS:
                return self._lookup_miss(regs)
            if rec.kind == Kind.PM_LOOKUP_MISS:
                return self._pm_lookup_miss(regs)
            if rec.kind == Kind.STALE:
                return self._stale(rec, regs)
            if rec.kind == Kind.BIOS:
                next_ip = self.bios_callout(rec, regs)
            elif protected:
                try:
                    next_ip = self.pm_ops.handle(rec, regs)
                except PageFault as pf:
                    raise GuestFault(14, pf.error_code, pf.linear) from None
            else:
                next_ip = self.ops.handle(rec, regs)
        except GuestFault as fault:
            regs[:] = saved
            next_ip = self._fault_at(regs, fault, rec.ip)
        except VMStop as stop:
            self.stop(str(stop))
            regs[EIP] = rec.site
            self.cpu.write_gprs(regs)
            return False
        try:
            return self._resume(regs, next_ip, rec)
        except VMStop as stop:
            self.stop(str(stop))
            regs[EIP] = rec.site
            self.cpu.write_gprs(regs)
            return False

    def _resume(self, regs, next_ip, rec) -> bool:
        if self.vcpu.halted:
            regs[EIP] = self.guest_target(regs, next_ip)
            self.halted_ip = next_ip
            self.cpu.write_gprs(regs)
            return False
        if self.stop_reason is not None:
            self.cpu.write_gprs(regs)
            return False
        if next_ip is None:
            regs[EIP] = rec.resume                  # continue inside the same unit
            return self._continue(regs, None)
        return self._continue(regs, next_ip, retarget=True)

    def _continue(self, regs, guest_ip, retarget: bool = False) -> bool:
        """Finish a callout: drop stale code, take a pending interrupt, decide
        where the real CPU goes (a translation or DE), write the registers.
        The world decision comes last: delivering an interrupt changes it."""
        if self.dirty_pages:
            self._invalidate_dirty()
            retarget = True
        if guest_ip is not None and regs[EFLAGS] & 0x200 and self.pic is not None and self.pic.has_interrupt() \
                and not self._in_shadow(guest_ip):
            guest_ip = self._deliver(regs, self.pic.acknowledge(), guest_ip)
            retarget = True
        if retarget and guest_ip is not None:
            regs[EIP] = self.guest_target(regs, guest_ip)
        self.cpu.write_gprs(regs)
        return True

    def _deliver(self, regs, vector: int, return_ip: int) -> int:
        """Deliver external interrupt `vector` (IVT or IDT); returns the handler's IP."""
        if self.vcpu.pe:
            try:
                return self.pm_ops.deliver(regs, vector, return_ip)
            except (GuestFault, PageFault) as err:
                raise VMStop(f"interrupt {vector:#x} could not be delivered: {err}") from None
        return self.ops.deliver(regs, vector, return_ip)

    # -- leaving direct execution (inside the interrupt hook) ----------------------------

    def _leave_de(self, regs, vector: int, error_code: int, is_int: bool) -> bool:
        """An exception, `int n` or the WS_TRAP in DE: bring the guest state
        back from the real CPU, deliver the event, continue in BT (or DE)."""
        v = self.vcpu
        if self._in_monitor_code(regs):
            self.stop(f"exception {vector} (error {error_code:#x}) in the DE entry stub at {regs[EIP]:#x}: "
                      "the guest state the monitor built could not be entered (a monitor bug)")
            return False
        if vector == 6 and regs[EFLAGS] & 0x20000 and self._v86_bios_callout(regs):
            return True
        pending, self.de_pending = self.de_pending, None
        self._sync_from_de(regs)              # (self.world stays DE: no real segment reloads yet)
        cs_base = v.segs[CS][1].base if v.segs[CS][1] is not None else 0
        if pending is not None and (regs[EIP] + cs_base) & 0xFFFFFFFF == WS_TRAP + 1:
            regs[EIP] = pending[1]
        regs[EFLAGS] &= ~0x10000              # RF (see set_guest_eflags)
        eip = regs[EIP]
        saved = list(regs)
        try:
            try:
                try:
                    target = self._de_event(regs, pending, vector, error_code, is_int, eip)
                except PageFault as pf:
                    raise GuestFault(14, pf.error_code, pf.linear) from None
            except GuestFault as fault:
                # The event itself faults (int n through a DPL-0 gate, sysenter
                # with SYSENTER_CS = 0, an emulated segment load...): deliver
                # that fault at the instruction instead.
                regs[:] = saved
                target = self._fault_at(regs, fault, self._event_eip(pending, vector, is_int, eip))
            if self.pic is not None and self.guest_eflags(regs) & 0x200 and self.pic.has_interrupt():
                target = self.pm_ops.deliver(regs, self.pic.acknowledge(), target)
            addr = self.guest_target(regs, target)
        except (GuestFault, PageFault, VMStop) as err:
            self.stop(str(err) if isinstance(err, VMStop) else f"fault while leaving DE: {err}")
            return False
        self.worlds.recipe_to_ring0(regs, addr)
        self.cpu.write_gprs(regs)
        return True

    def _de_event(self, regs, pending, vector: int, error_code: int, is_int: bool, eip: int) -> int:
        """Perform what made the guest leave DE; returns the guest EIP to go on at."""
        v = self.vcpu
        if pending is not None:
            kind, at, arg = pending
            if kind == "irq":
                return self.pm_ops.deliver(regs, arg, at)
            if kind == "bt":
                self.force_bt = True
                return at
            if kind == "sysenter":
                return self.pm_ops.sysenter(regs)
            return self._fault_at(regs, arg, at)                  # ("fault", eip, GuestFault)
        if is_int:
            self.stats["de_software_interrupts"] += 1
            return self.pm_ops.deliver(regs, vector, eip, soft=vector != 1 or not self._is_icebp(eip))
        code = error_code if vector in (8, 10, 11, 12, 13, 14, 17) else None
        if vector in (11, 12, 13) and not v.eflags_vm:
            insn = self._guest_insn_at(eip)
            if insn is not None and insn.ok and insn.mnemonic == "sysenter":
                return self.pm_ops.sysenter(regs)                  # (real SYSENTER_CS = 0)
            if insn is not None and insn.ok and insn.sensitive == Sens.SEG_LOAD and code \
                    and self._hidden_in_shadow(code):
                # A segment whose descriptor the shadow GDT hides (based in the
                # monitor region): the monitor performs the load; the segment
                # is then not reversible and the guest continues in BT.
                self.pm_ops.seg_load(regs, insn)
                self.stats["de_emulated_segment_loads"] += 1
                return (eip + insn.length) & 0xFFFFFFFF
        return self._fault_at(regs, GuestFault(vector, code), eip)

    def _in_monitor_code(self, regs) -> bool:
        """Did the event happen in the monitor's own DE entry stub?  The real
        CS is then one of the monitor's selectors (ring 0, top of the shadow
        GDT); the guest's EIP alone cannot tell (a guest CS base can make it
        equal a stub address)."""
        if regs[EFLAGS] & 0x20000:
            return False
        return (self.cpu.read_segs()[CS] >> 3) >= abi.MON_GDT_INDEX

    def _is_icebp(self, eip: int) -> bool:
        """Vector 1 as an `int`-type event in DE: `F1` (ICEBP: no gate DPL
        check) or `CD 01` (a software interrupt: gate DPL checked)?  `eip` is
        past the instruction; its last byte tells them apart."""
        try:
            return self.vmem.read((self.vcpu.segs[CS][1].base + eip - 1) & 0xFFFFFFFF, 1, cpl=3)[0] == 0xF1
        except PageFault:
            return False

    def _guest_insn_at(self, eip: int):
        v = self.vcpu
        bits = 16 if v.eflags_vm or not v.segs[CS][1].big else 32
        try:
            raw = self.vmem.read_code((v.segs[CS][1].base + eip) & 0xFFFFFFFF, 15, 3)[0]
        except PageFault:
            return None
        return decode(raw + bytes(15), eip, bits)

    def _hidden_in_shadow(self, selector: int) -> bool:
        """Does the shadow GDT/LDT hide this guest entry (present in the guest's,
        not present in the shadow)?"""
        from monitor.shadow import shadow_entry

        entry = self.pm_ops.table_entry(selector & 0xFFFC)
        if entry is None or not entry[0][5] & 0x80:
            return False
        return not shadow_entry(entry[0])[0][5] & 0x80

    def _event_eip(self, pending, vector: int, is_int: bool, eip: int) -> int:
        """Where the instruction that raised a DE event starts (faults in its
        delivery are reported there)."""
        if pending is not None:
            return pending[1] if pending[0] != "sysenter" else (eip - 2) & 0xFFFFFFFF
        if is_int:
            v = self.vcpu
            try:
                prev = self.vmem.read((v.segs[CS][1].base + eip - 1) & 0xFFFFFFFF, 1, cpl=3)[0]
            except PageFault:
                prev = None
            return (eip - (1 if prev in (0xCC, 0xCE, 0xF1) and vector in (3, 4, 1) else 2)) & 0xFFFFFFFF
        return eip

    def _v86_bios_callout(self, regs) -> bool:
        """The BIOS ROM's callout (ud2 + service byte) executed in V8086 mode,
        where a guest's V86 monitor reflected an int n to the BIOS: run the
        service as in real mode and stay in DE."""
        segs = self.cpu.read_segs()
        cs, ip = segs[CS], regs[EIP] & 0xFFFF
        lin = (cs << 4) + ip
        if self.bios is None or not 0xF0000 <= lin <= 0xFFFFD:
            return False
        try:
            raw = self.vmem.read(lin, 3, cpl=3)
        except PageFault:
            return False
        if raw[:2] != b"\x0f\x0b":
            return False
        for sreg in range(6):
            self.mirror.seg(sreg, segs[sreg])
        rec = Callout(kind=Kind.BIOS, cs=cs, ip=ip, next_ip=(ip + 3) & 0xFFFF, service=raw[2])
        self.stats["callout_bios_v86"] += 1
        try:
            next_ip = self.bios.callout(self, rec, regs)
        except VMStop as stop:
            self.stop(str(stop))
            return True
        if self.vcpu.halted:                 # a key wait: re-execute the callout instead
            self.vcpu.halted = False
            next_ip = ip
        regs[EIP] = rec.next_ip if next_ip is None else next_ip
        self.cpu.write_gprs(regs)
        return True

    def _sync_from_de(self, regs) -> None:
        """The guest's segment registers as the real CPU left them in DE."""
        v = self.vcpu
        v.eflags_vm = bool(regs[EFLAGS] & 0x20000)
        sels = self.cpu.read_segs()
        for sreg in range(6):
            sel = sels[sreg]
            if v.eflags_vm:
                self.set_segment(sreg, sel, v86_segment(sel))
            elif sel != v.segs[sreg][0]:
                if sel & 0xFFFC == 0:
                    self.set_segment(sreg, sel, None)
                else:
                    entry = self.pm_ops.table_entry(sel)
                    self.set_segment(sreg, sel, D.decode(entry[0]) if entry else None)
        v.cpl = 3

    def _stale(self, rec, regs) -> bool:
        """A checked unit's guest bytes changed: drop it and translate them again."""
        if isinstance(rec.cs, CodeContext):
            key = ("pm", rec.cs, rec.ip)
        else:
            key = real_key(rec.cs, rec.ip, self._odd_base(rec.cs))
        unit = self.tc.units.get(key)
        if unit is not None:
            self._drop_unit(unit)
        regs[EIP] = self.guest_target(regs, rec.ip)
        return self._continue(regs, rec.ip)

    def _drop_unit(self, unit) -> None:
        self.tc.invalidate_unit(unit)
        self.lookup.drop_unit(unit.tc_start)
        for addr, restore in self.incoming.pop(unit.tc_start, []):
            self.tc.patch(addr, restore)

    def _lookup_miss(self, regs) -> bool:
        """ret / indirect branch whose (CS, IP) has no landing pad: make one."""
        ip = regs[0] & 0xFFFF
        regs[0] = int.from_bytes(self.memory.monitor[self.abi.offset(self.abi.SCRATCH_EAX):][:4], "little")
        cs = self.seg_value(CS)
        unit = self._unit_for(cs, ip)
        self.lookup.misses += 1
        pad = self.lookup.install(self.tc, cs, ip, unit)
        if pad:
            self.pad_addresses.add(pad + PAD_HIT_OFFSET)
        regs[EIP] = unit.tc_start
        return self._continue(regs, ip)

    def _pm_lookup_miss(self, regs) -> bool:
        """Protected-mode ret / indirect branch whose target has no pad yet."""
        eip = regs[0]
        regs[0] = int.from_bytes(self.memory.monitor[self.abi.offset(self.abi.SCRATCH_EAX):][:4], "little")
        ctx = self.code_context()
        try:
            unit = self._unit_for(ctx, eip)
        except PageFault as pf:
            regs[EIP] = self.guest_target(regs, self._fault_at(regs, GuestFault(14, pf.error_code, pf.linear), eip))
            return self._continue(regs, None)
        self.lookup.misses += 1
        pad = self.lookup.install_pm(self.tc, ctx.selector, eip, unit, self.pm_miss)
        if pad:
            self.pad_addresses.add(pad + PM_PAD_HIT_OFFSET)
        regs[EIP] = unit.tc_start
        return self._continue(regs, eip)

    def _chain(self, rec, index: int) -> int:
        """Translate a continuation's target and patch the stub into a direct jump."""
        cs, generation = rec.cs, self.tc.generation
        unit = self._unit_for(cs, rec.target)
        if self.tc.generation != generation:
            return unit.tc_start                     # the TC was flushed: the stub is gone
        if self.current_cs() != cs:
            return unit.tc_start                     # never chain across a CS mismatch
        rel = unit.tc_start - (rec.site + 5)
        self.tc.patch(rec.site, b"\xe9" + rel.to_bytes(4, "little", signed=True))
        into = self.incoming.setdefault(unit.tc_start, [])
        into.append((rec.site, bytes([abi.CALLOUT_OPCODE]) + index.to_bytes(4, "little")))
        jcc = getattr(rec, "jcc_field", None)
        if jcc is not None:
            # The jcc whose taken path this stub is jumps to the unit itself:
            # one translation block less per taken branch (loops).
            into.append((jcc, (rec.site - (jcc + 4)).to_bytes(4, "little", signed=True)))
            self.tc.patch(jcc, (unit.tc_start - (jcc + 4)).to_bytes(4, "little", signed=True))
            self.tc.stats.jcc_patches += 1
        self.tc.stats.chain_patches += 1
        return unit.tc_start

    def _on_exception(self, vector: int, error_code: int, is_int: bool) -> bool:
        """A CPU exception raised by translated code: deliver it to the guest."""
        if self.io_trap is not None:
            return False                    # a denied DE I/O is being unwound (_de_io_check)
        regs = self.cpu.read_gprs()
        if self.world is World.DE:
            return self._leave_de(regs, vector, error_code, is_int)
        unit = self.tc.unit_at(regs[EIP])
        guest_ip = unit.guest_ip_at(regs[EIP]) if unit is not None else None
        if guest_ip is None:
            self.stop(f"exception {vector} at {regs[EIP]:#x} outside translated guest code")
            return False
        # A fault inside a cs: operand's FS borrow leaves FS on the CS slot: reload it.
        self.uc.reg_write(REAL_SEG_REGS[4], self.mirror.read_real_selector(4))
        self._restore_scratch(unit, regs)
        code = error_code if self.vcpu.pe and vector in (8, 10, 11, 12, 13, 14, 17) else None
        try:
            ip = self._fault_at(regs, GuestFault(vector, code), guest_ip)
            regs[EIP] = self.guest_target(regs, ip)
        except VMStop as stop:
            self.stop(str(stop))
            return False
        self.cpu.write_gprs(regs)
        return True

    def note_memory_written(self, addr: int, length: int) -> None:
        """The monitor (BIOS) wrote guest RAM behind the CPU: drop code translated from it."""
        for pfn in range(addr >> 12, (addr + max(length, 1) - 1 >> 12) + 1):
            if self.mmu.is_traced(pfn):
                self.mmu.untrace(pfn)
                self._on_code_write(pfn)

    def _on_code_write(self, pfn: int) -> None:
        """Write trace: a page with translated code is about to be written (by the
        guest: the TLB fill refuses and the run ends before the write; by the
        monitor: the callout finishing the write drops the units)."""
        self.dirty_pages.add(pfn)
        self.stats["traces_fired"] += 1

    def _on_guest_code_write(self, pfn: int) -> None:
        """The guest itself wrote a code page: from now on the page is not
        write-protected; its units validate their bytes on entry (code and
        data share pages in real-mode programs all the time)."""
        if pfn in self.window.watched:
            self.window.recheck = True               # a page table under the data window changed
            self.dirty_pages.add(pfn)
            return
        self.checked_pages.add(pfn)
        self._on_code_write(pfn)

    def _cut_dropped_unit(self, eip: int) -> None:
        """A write trace ends the run *before* the write, EIP at the writing
        instruction (U20), and the run resumes there, in its unit, which the
        write may just have dropped: the unit's translations of the
        instructions after the writing one are stale.  Turn the next
        instruction boundary into a CHAIN callout: the write lands, then the
        rest is translated from the bytes as they are."""
        unit = self.tc.unit_at(eip)
        if unit is None or unit.valid:
            return
        for tc_addr, ip in unit.insn_map:
            if tc_addr > eip:
                rec = Callout(kind=Kind.CHAIN, cs=unit.key[1], ip=ip, next_ip=ip, insn=None, target=ip)
                index = self.callouts.add(rec)
                rec.site, rec.resume = tc_addr, tc_addr + 5
                self.tc.patch(tc_addr, bytes([abi.CALLOUT_OPCODE]) + index.to_bytes(4, "little"))
                self.stats["dropped_units_cut"] += 1
                return

    def _invalidate_dirty(self) -> None:
        pages, self.dirty_pages = self.dirty_pages, set()
        for pfn in pages:
            for unit in self.tc.take_page(pfn):
                self._drop_unit(unit)

    # -- BIOS -------------------------------------------------------------------------------

    def bios_callout(self, rec, regs):
        if self.bios is None:
            raise VMStop(f"BIOS callout {rec.service:#04x} with no BIOS attached")
        return self.bios.callout(self, rec, regs)

    # -- the run loop ---------------------------------------------------------------------

    def stop(self, reason: str, status: int | None = None) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
            self.exit_status = status
        self.uc.emu_stop()

    def guest_ip_at(self, eip: int) -> int | None:
        """Guest IP when the CPU stands at a guest instruction boundary in the TC."""
        unit = self.tc.unit_at(eip)
        if unit is None:
            return None
        if eip == unit.tc_start:
            return unit.insn_map[0][1]
        for addr, ip in unit.insn_map:
            if addr == eip:
                return ip
        return None

    def run(self, timeout_s: float | None = None) -> str:
        """Run until the guest stops the machine, a VM stop, or the timeout."""
        start = time.monotonic()
        epoch_ns = time.monotonic_ns() - self.clock.now_ns
        while self.stop_reason is None:
            if self.on_poll is not None:
                self.on_poll()
                if self.stop_reason is not None:
                    break
            if timeout_s is not None and time.monotonic() - start > timeout_s:
                self.stop(f"timeout after {timeout_s:g} s")
                break
            now = time.monotonic_ns() - epoch_ns
            if self.vcpu.halted:
                if self.guest_if() and self.pic is not None and self.pic.has_interrupt():
                    self.vcpu.halted = False
                    self._take_interrupt(self.halted_ip)
                    continue
                if not self.guest_if():
                    # Nothing can wake it (no NMI source is emulated): an orderly end,
                    # as Linux's halt and "System halted" paths expect.
                    self.stop("the guest halted with interrupts disabled")
                    break
                deadline = self.clock.next_deadline()
                if deadline is None:
                    deadline = now + SLICE_NS
                if deadline > now:
                    time.sleep(min(deadline - now, SLICE_NS) / 1e9)
                self.clock.advance_to(max(deadline, time.monotonic_ns() - epoch_ns))
                continue
            deadline = self.clock.next_deadline()
            slice_ns = SLICE_NS if deadline is None else max(10_000, min(SLICE_NS, deadline - now))
            if self.short_slice:
                slice_ns, self.short_slice = 10_000, False
            begin = self.eip
            in_stub = TC_ALLOC_END <= self.eip < TC_ALLOC_END + 0x1000
            if self.world is World.DE and not in_stub:       # (in the stub: let the entry finish first)
                if (self.de_pending is None and self.pic is not None and self.guest_if()
                        and self.pic.has_interrupt()):
                    self.de_pending = ("irq", self.eip, self.pic.acknowledge())
                if self.de_pending is not None:
                    self._sync_from_de(self.cpu.read_gprs())   # (CS may have changed in DE)
                    begin = (WS_TRAP - self.vcpu.segs[CS][1].base) & 0xFFFFFFFF   # leave DE at once
            count, self.step_count = self.step_count, 0
            after, self.after_step = self.after_step, None
            timer = threading.Timer(slice_ns / 1e9, self._end_slice)
            timer.start()
            try:
                self.cpu.run(begin, TC_UNTIL, count=count)
            except UcError as err:
                if err.errno not in (UC_ERR_EXCEPTION, UC_ERR_INSN_INVALID):
                    raise
                if self.io_trap is not None:
                    pass                         # a frozen fill ended the block: unwound below
                elif self.mmu.page_fault is not None:
                    self._page_fault_after_run()
                elif err.errno == UC_ERR_INSN_INVALID and self.world is World.DE:
                    # An invalid opcode run directly ends the run (no #UD through the
                    # hook; ud2 in V8086 does this): the BIOS's own callout, or #UD.
                    regs = self.cpu.read_gprs()
                    if not (regs[EFLAGS] & 0x20000 and self._v86_bios_callout(regs)):
                        self.de_pending = ("fault", regs[EIP], GuestFault(6))
                elif self.mmu.trace_exit:
                    self.mmu.trace_exit = False  # a write trace: resume at the writing instruction
                else:
                    raise
            finally:
                timer.cancel()
                for hook in self.block_hooks:
                    hook.request_stop(False)
            if self.io_trap is not None:
                self._finish_unwind()
            self.eip = self.cpu.read_gprs()[EIP]
            self.clock.advance_to(max(self.clock.now_ns, time.monotonic_ns() - epoch_ns))
            if self.dirty_pages:
                self._invalidate_dirty()
                if self.world is World.BT:
                    self._cut_dropped_unit(self.eip)
            if after is not None:
                self._at_boundary(after)
            if self.window.recheck and self.step_count == 0:
                self.window.recheck = False
                self.step_count, self.after_step = 1, self.window.check   # let the write land first
            if (self.world is World.BT and not self.vcpu.halted and self.pic is not None
                    and self.step_count == 0 and self.pic.has_interrupt() and self.guest_if()):
                # (not while a single step is pending: it must run the
                # instruction the monitor stopped at, e.g. a page-table write
                # the data window's check has to see land)
                guest_ip = self.guest_ip_at(self.eip)
                if guest_ip is not None and self._in_shadow(guest_ip):
                    self.short_slice = True          # take it right after the next instruction
                elif guest_ip is not None:
                    self._take_interrupt(guest_ip)
        return self.stop_reason

    def _end_slice(self) -> None:
        """The slice timer (another thread): ask the block hooks to stop the run."""
        for hook in self.block_hooks:
            hook.request_stop(True)

    def _at_boundary(self, action) -> None:
        """Run a monitor action between two runs.  When it flushed the TC, the
        CPU goes on at the translation of the guest instruction it stood at;
        anywhere else (inside an instruction's translation, the dispatch
        stub, a landing pad) it goes on where it is."""
        guest_ip = self._resume_point(self.eip) if self.world is World.BT else None
        generation = self.tc.generation
        try:
            action()
        except VMStop as stop:
            self.stop(str(stop))
            return
        if self.world is World.BT and self.tc.generation != generation:
            if guest_ip is None:
                self.stop(f"the translation cache was flushed while the CPU stood inside translated code "
                          f"at {self.eip:#x} (not at a guest instruction boundary): a monitor bug")
                return
            regs = self.cpu.read_gprs()
            regs[EIP] = self.eip = self.guest_target(regs, guest_ip)
            self.cpu.write_gprs(regs)

    def _resume_point(self, eip: int) -> int | None:
        """The guest IP translated code at `eip` stands for: an instruction
        boundary, or a continuation stub (its target)."""
        ip = self.guest_ip_at(eip)
        if ip is not None:
            return ip
        if self.tc.unit_at(eip) is None:
            return None                  # shared code (lookup miss, dispatch stub) or a landing pad
        off = eip - TC_LINEAR
        if 0 <= off < TC_SIZE - 5 and self.tc.buf[off] == abi.CALLOUT_OPCODE:
            rec = self.callouts[self.tc.read_u32(eip + 1)]
            return rec.target if rec.kind == Kind.CHAIN else rec.ip
        if 0 <= off < TC_SIZE - 5 and self.tc.buf[off] == 0xE9:          # a chained stub
            target = eip + 5 + int.from_bytes(self.tc.buf[off + 1:off + 5], "little", signed=True)
            return self.guest_ip_at(target)
        return None

    def relocate_data(self, base: int) -> None:
        """Move the monitor-data window to linear `base` (monitor/relocation.py)."""
        from unicorn.x86_const import UC_X86_REG_GDTR

        def move():
            self.abi.move(base)
            self.mmu.set_data_base(base)
            self.worlds.write_stubs()
            self.uc.reg_write(UC_X86_REG_GDTR, (0, self.abi.GDT_LINEAR, abi.GDT_LIMIT, 0))
            if self.vcpu.ldtr[0] & 0xFFFC:
                self.set_real_ldtr(self.vcpu.ldtr[0], self.abi.LDT_LINEAR, self.vcpu.ldtr[2])

        self.flush_translations(before_new_generation=move)   # translated code embeds the old addresses
        self.stats["data_window_moves"] += 1
        log.info("monitor data window moved to %#x", base)

    def _in_shadow(self, guest_ip: int) -> bool:
        if (self.current_cs(), guest_ip) in self.interrupt_shadow:
            self.shadow_skips += 1
            return True
        return False

    def _take_interrupt(self, return_ip: int) -> None:
        """Between runs: acknowledge the PIC's interrupt and enter its handler."""
        regs = self.cpu.read_gprs()
        try:
            regs[EIP] = self.guest_target(regs, self._deliver(regs, self.pic.acknowledge(), return_ip))
        except VMStop as stop:
            self.stop(str(stop))
            return
        self.eip = regs[EIP]
        self.cpu.write_gprs(regs)

    def _page_fault_after_run(self) -> None:
        """The TLB fill refused an access the guest's page tables do not allow
        (the run ended at the faulting instruction, U8): reflect #PF, with
        CR2 worked out from the instruction (monitor/faultaddr.py)."""
        page, code = self.mmu.page_fault
        self.mmu.clear_page_fault()
        regs = self.cpu.read_gprs()
        if self.world is World.DE and self._in_monitor_code(regs):
            self._de_entry_fault(regs, page, code)
            return
        if self.world is World.DE:
            self._de_page_fault(regs, page, code)
            return
        unit = self.tc.unit_at(regs[EIP])
        guest_ip = unit.guest_ip_at(regs[EIP]) if unit is not None else None
        if guest_ip is None:
            self.stop(f"page fault at {page:#x} outside translated guest code (EIP {regs[EIP]:#x})")
            return
        off = regs[EIP] - MONITOR_LINEAR
        insn = decode(bytes(self.memory.monitor[off:off + 15]), regs[EIP], 32)
        real = self.cpu.read_segs()
        ss_desc = self._real_descriptor(real[SS])
        cands = accesses(insn, regs, lambda name: self._real_base(real[SEG_INDEX[name]]),
                         stack32=ss_desc is None or bool(ss_desc[6] & 0x40))
        cr2 = fault_address(page, cands)
        fault = GuestFault(14, code, page if cr2 is None else cr2)
        self.uc.reg_write(REAL_SEG_REGS[4], self.mirror.read_real_selector(4))
        self._restore_scratch(unit, regs)
        try:
            regs[EIP] = self.guest_target(regs, self._fault_at(regs, fault, guest_ip))
        except VMStop as stop:
            self.stop(str(stop))
            return
        self.cpu.write_gprs(regs)

    def _de_entry_fault(self, regs, page: int, code: int) -> None:
        """The DE entry stub's iretd could not fetch the guest's first
        instruction (Unicorn reports the start of the stub's block, with
        nothing of it run): the real CPU is still at ring 0, so this is a
        #PF at the entry point, delivered as in BT."""
        eip, esp = self.worlds.entry
        regs[ESP] = esp
        self.enter_world_bt()
        lin = (self.vcpu.segs[CS][1].base + eip) & 0xFFFFFFFF
        fault = GuestFault(14, code, lin if lin & ~0xFFF == page else page)
        try:
            regs[EIP] = self.guest_target(regs, self._fault_at(regs, fault, eip))
        except VMStop as stop:
            self.stop(str(stop))
            return
        self.cpu.write_gprs(regs)

    def _restore_scratch(self, unit, regs) -> None:
        """A fault where translated code keeps a branch target in EAX: the
        guest's EAX is in SCRATCH_EAX (bt/protmode.py)."""
        if any(a <= regs[EIP] < b for a, b in getattr(unit, "eax_scratch", ())):
            regs[0] = int.from_bytes(self.memory.monitor[self.abi.offset(self.abi.SCRATCH_EAX):][:4], "little")

    def _real_descriptor(self, sel: int) -> bytes | None:
        if sel & 0xFFFC == 0:
            return None
        off = self.abi.offset(self.abi.GDT_LINEAR) + (sel & 0xFFF8)
        return bytes(self.memory.monitor[off:off + 8])

    def _real_base(self, sel: int) -> int:
        d = self._real_descriptor(sel)
        return 0 if d is None else d[2] | d[3] << 8 | d[4] << 16 | d[7] << 24

    def _de_page_fault(self, regs, page: int, code: int) -> None:
        """A #PF in DE: a data access at EIP, or a fetch that crosses into the
        page (then Unicorn reports the start of the block, docs/mmu.md: run
        the instructions before the crossing one first)."""
        self._sync_from_de(regs)              # (a far transfer run directly may have changed CS)
        v = self.vcpu
        if code & PF_W and self.abi.GDT_LINEAR <= page < self.abi.LDT_LINEAR + 0x10000:
            insn = self._guest_insn_at(regs[EIP])
            if insn is not None and insn.ok and (insn.sensitive in (Sens.SEG_LOAD, Sens.IRET)
                                                 or insn.flow in (Flow.JMPF, Flow.JMPF_IND, Flow.CALLF,
                                                                  Flow.CALLF_IND, Flow.RETF, Flow.IRET)):
                # The CPU setting a descriptor's accessed bit in the shadow
                # table (monitor/worlds.py _accessed): the instruction runs in
                # BT, which sets the bit in the guest's own table.
                self.stats["de_accessed_bit_exits"] += 1
                self.de_pending = ("bt", regs[EIP], None)
                return
        cs_base = v.segs[CS][1].base
        bits = 16 if v.eflags_vm or not v.segs[CS][1].big else 32
        eip = regs[EIP]
        lin = (cs_base + eip) & 0xFFFFFFFF
        try:
            raw = self.vmem.read_code(lin, 15, 3)[0]
        except PageFault:
            raw = b""
        insn = decode(raw + bytes(15), eip, bits)
        real = self.cpu.read_segs()

        def base(name: str) -> int:
            sreg = SEG_INDEX[name]
            sel = real[sreg]
            if v.eflags_vm:
                return (sel & 0xFFFF) << 4
            if sel == v.segs[sreg][0] and v.segs[sreg][1] is not None:
                return v.segs[sreg][1].base
            d = self.pm_ops.descriptor(sel) if sel & 0xFFFC else None
            return getattr(d, "base", 0)

        ss = v.segs[SS][1]
        cr2 = fault_address(page, accesses(insn, regs, base, stack32=ss is None or bool(ss.big)))
        if cr2 is None:
            # A fetch: find the first instruction from EIP that reaches into `page`.
            steps, at = 0, lin
            while steps < 64:
                length = insn.length if insn.ok else 1
                if at + length > page and at < page + 0x1000 or at >= page:
                    break
                steps += 1
                at += length
                try:
                    raw = self.vmem.read_code(at, 15, 3)[0]
                except PageFault:
                    break
                insn = decode(raw + bytes(15), 0, bits)
            if steps:
                # Unicorn would translate the crossing instruction with the ones
                # before it (count= does not help): run them in BT instead, where
                # the unit ends before it and the next translation faults exactly.
                self.de_pending = ("bt", eip, None)
                return
            cr2 = page if lin < page else lin
        self.de_pending = ("fault", eip, GuestFault(14, code, cr2))

    # -- statistics -----------------------------------------------------------------------

    def statistics(self) -> dict:
        tc = self.tc.stats
        bt = self.bt_counter if self.counting else None
        de = self.de_counter if self.counting else None
        out = {
            "bt_instructions": (bt.instructions + bt.alt_instructions) if bt else None,
            "bt_instructions_real_mode": bt.instructions if bt else None,
            "bt_instructions_protected": bt.alt_instructions if bt else None,
            # (None when the machine runs with count_instructions=False)
            "de_instructions": de.instructions if de else None,
            "de_blocks": de.blocks if de else None,
            "world_switches": self.worlds.switches,
            "data_window": hex(self.abi.base),
            "units_translated": tc.units,
            "guest_instructions_translated": tc.insns,
            "tc_bytes": tc.bytes,
            "tc_flushes": tc.flushes,
            "chain_patches": tc.chain_patches,
            "jcc_patches": tc.jcc_patches,
            "lookup_hits": bt.marks if bt else None,
            "lookup_misses": self.lookup.misses,
            "landing_pads": len(self.lookup.pads),
            "interrupt_shadow_waits": self.shadow_skips,
            "units_invalidated": tc.invalidated,
            "checked_pages": len(self.checked_pages),
            "tlb_fills": self.mmu.fills,
            "traces_fired": self.stats["traces_fired"],
            "dropped_units_cut": self.stats["dropped_units_cut"],
            "de_accessed_bit_exits": self.stats["de_accessed_bit_exits"],
            "interrupts_delivered": self.stats["interrupts_delivered"],
            "page_faults_reflected": self.stats["page_faults_reflected"],
            "de_software_interrupts": self.stats["de_software_interrupts"],
            "sysenter": self.stats["sysenter"],
            "callouts": {k[len("callout_"):]: v for k, v in sorted(self.stats.items()) if k.startswith("callout_")},
            "exceptions": {k: v for k, v in sorted(self.stats.items()) if k.startswith("exception_")},
            "io": self.cpu.counters,
        }
        return out
