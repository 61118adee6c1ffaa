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
import time

from unicorn import UC_ARCH_X86, UC_ERR_EXCEPTION, UC_MODE_32, Uc, UcError
from unicorn.x86_const import (
    UC_X86_REG_CR0, UC_X86_REG_CS, UC_X86_REG_DS, UC_X86_REG_ES, UC_X86_REG_FS,
    UC_X86_REG_GDTR, UC_X86_REG_GS, UC_X86_REG_SS,
)

import _native
from bt import abi
from bt.callouts import Callout, CalloutTable, Kind
from bt.lookup import IndirectLookup
from bt.realmode import RealModeTranslator
from bt.tc import TCFull, TranslationCache
from devices.base import PortBus
from devices.clock import VirtualClock
from monitor import descriptors as D
from monitor.counters import CounterPool
from monitor.guestmem import GuestMemory
from monitor.memory import MONITOR_LINEAR, TC_LINEAR, TC_SIZE, TC_UNTIL, PhysicalMemory
from monitor.mmu import SoftMMU
from monitor.realmode import EFLAGS, EIP, RealModeOps, VMStop
from monitor.vcpu import CS, VirtualCPU, VirtualStateMirror

log = logging.getLogger("hybrid86.monitor.machine")

SLICE_NS = 10_000_000          # longest run between two looks at device time
REAL_SEG_REGS = (UC_X86_REG_ES, UC_X86_REG_CS, UC_X86_REG_SS, UC_X86_REG_DS, UC_X86_REG_FS, UC_X86_REG_GS)


class Machine:
    """A PC with hybrid86's monitor.  Devices are attached by the caller (monitor/pc.py)."""

    def __init__(self, memory_mb: int = 16, native: bool = True, count_instructions: bool = True):
        self.uc = Uc(UC_ARCH_X86, UC_MODE_32)
        self.memory = PhysicalMemory(self.uc, memory_mb << 20)
        mmu_class = _native.NativeMMU if native else SoftMMU
        self.mmu = mmu_class(self.uc, self.memory, on_code_write=self._on_guest_code_write)
        self.cpu = (_native.Cpu if native else _native.PyCpu)(self.uc)
        self.cpu.install_hooks()
        self.vcpu = VirtualCPU()
        self.mirror = VirtualStateMirror(self.memory.monitor)
        self.guestmem = GuestMemory(self.memory, self.mmu, self._on_code_write)
        self.clock = VirtualClock()
        self.bus = PortBus()
        self.cpu.set_io_handlers(self.bus.read, self.bus.write)
        self.cpu.claim_ports(0x80, 1, "ignore")        # POST/delay port
        self.tc = TranslationCache(self.uc, self.memory)
        self.checked_pages: set[int] = set()   # code pages validated at unit entry instead of write-protected
        self.callouts = CalloutTable()
        self.counters = CounterPool(self.memory.monitor) if count_instructions else None
        self.translator = RealModeTranslator(
            self.tc, self.callouts, self.guestmem.read, self.mmu.trace_page,
            counters=self.counters, a20_mask=lambda: self.mmu.a20_mask,
            is_checked=self.checked_pages.__contains__, ivt_base=lambda: self.vcpu.idtr[0])
        self.ops = RealModeOps(self)
        self.lookup = IndirectLookup(self.memory.monitor, self.counters)
        self.pic = None                     # the interrupt controller (monitor/pc.py attaches it)
        self.bios = None                    # set by the PC builder
        self.stats = collections.Counter()  # callouts by kind, interrupts, ...
        self.dirty_pages: set[int] = set()
        self.incoming: dict[int, list[tuple[int, int]]] = {}  # unit tc_start -> [(stub site, record index)]
        self.on_poll = None                 # callable run once per run-loop iteration (front ends)
        self.halted_ip = 0                  # guest IP to resume at when a halted guest takes an interrupt
        self.stop_reason: str | None = None
        self.exit_status: int | None = None
        self.eip = TC_LINEAR
        self._install_shadow_gdt()
        self._new_tc_generation()
        self.cpu.set_vector_handler(3, self._on_callout)
        for vector in range(256):
            if vector != 3:
                self.cpu.set_vector_handler(vector, self._on_exception)

    # -- set-up -------------------------------------------------------------------

    def _install_shadow_gdt(self) -> None:
        """The real CPU's GDTR points at the shadow GDT in monitor data, never the guest's."""
        gdt = bytearray(abi.GDT_ENTRIES * 8)
        gdt[abi.SEL_TC_CODE:abi.SEL_TC_CODE + 8] = D.code32().encode()
        gdt[abi.SEL_MON_DATA:abi.SEL_MON_DATA + 8] = D.data32().encode()
        gdt[abi.SEL_CODE16:abi.SEL_CODE16 + 8] = D.code16().encode()
        off = abi.GDT_LINEAR - MONITOR_LINEAR
        self.memory.monitor[off:off + len(gdt)] = gdt
        self.mirror.constants()
        self.uc.reg_write(UC_X86_REG_GDTR, (0, abi.GDT_LINEAR, len(gdt) - 1, 0))
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
        off = abi.GDT_LINEAR - MONITOR_LINEAR + sel
        self.memory.monitor[off:off + 8] = D.data16(value << 4, self.vcpu.seg_limits[sreg]).encode()
        self.mirror.seg(sreg, value)
        if reload and sreg != CS:
            self.uc.reg_write(REAL_SEG_REGS[sreg], sel)

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

    def _unit_for(self, cs: int, ip: int):
        """The translation of cs:ip, made now if needed (flushing a full TC first)."""
        try:
            return self.translator.translate(cs, ip)
        except TCFull:
            self.flush_translations()
            return self.translator.translate(cs, ip)

    def _tc_address(self, cs: int, ip: int) -> int:
        return self._unit_for(cs, ip).tc_start

    def flush_translations(self) -> None:
        """Drop the whole TC (it is full, or the guest moved its IVT), keeping the counts."""
        self.lookup.retire_generation()
        if self.counters is not None:
            self.counters.fold_and_reset(self.tc.all_units)
        self.tc.flush()
        self.incoming.clear()
        self.callouts.clear()
        self._new_tc_generation()

    def _new_tc_generation(self) -> None:
        """The shared lookup-miss callout at the start of a fresh TC."""
        rec = Callout(kind=Kind.LOOKUP_MISS, cs=0, ip=0, next_ip=0)
        index = self.callouts.add(rec)
        rec.site = self.tc.top
        self.tc.write_fresh(rec.site, bytes([abi.CALLOUT_OPCODE]) + index.to_bytes(4, "little"))
        self.tc.top += abi.CALLOUT_LEN
        self.lookup.reset(rec.site)

    # -- the hooks ------------------------------------------------------------------------

    def _on_callout(self, vector: int, error_code: int, is_int: bool) -> bool:
        regs = self.cpu.read_gprs()
        site = regs[EIP] - 1
        if not (TC_LINEAR <= site < TC_LINEAR + TC_SIZE):
            return self._on_exception(vector, error_code, is_int)
        index = self.tc.read_u32(regs[EIP])
        rec = self.callouts[index]
        self.stats[f"callout_{rec.kind.name.lower()}"] += 1
        try:
            if rec.kind == Kind.CHAIN:
                regs[EIP] = self._chain(rec, index)
                return self._continue(regs, rec.target)
            if rec.kind == Kind.LOOKUP_MISS:
                return self._lookup_miss(regs)
            if rec.kind == Kind.STALE:
                return self._stale(rec, regs)
            if rec.kind == Kind.BIOS:
                next_ip = self.bios_callout(rec, regs)
            else:
                next_ip = self.ops.handle(rec, regs)
        except VMStop as stop:
            self.stop(str(stop))
            regs[EIP] = rec.site
            self.cpu.write_gprs(regs)
            return False
        return self._resume(regs, next_ip, rec)

    def _resume(self, regs, next_ip, rec) -> bool:
        if self.vcpu.halted:
            regs[EIP] = self._tc_address(self.seg_value(CS), next_ip)
            self.halted_ip = next_ip
            self.cpu.write_gprs(regs)
            return False
        if self.stop_reason is not None:
            self.cpu.write_gprs(regs)
            return False
        if next_ip is None:
            regs[EIP] = rec.resume
            guest_ip = None
        else:
            regs[EIP] = self._tc_address(self.seg_value(CS), next_ip)
            guest_ip = next_ip
        return self._continue(regs, guest_ip)

    def _continue(self, regs, guest_ip) -> bool:
        """Finish a callout: drop stale code, take a pending interrupt, write registers."""
        if self.dirty_pages:
            self._invalidate_dirty()
            if guest_ip is not None:
                regs[EIP] = self._tc_address(self.seg_value(CS), guest_ip)
        if guest_ip is not None and regs[EFLAGS] & 0x200 and self.pic is not None and self.pic.has_interrupt():
            self._deliver(regs, self.pic.acknowledge(), guest_ip)
        self.cpu.write_gprs(regs)
        return True

    def _deliver(self, regs, vector: int, return_ip: int) -> None:
        """Deliver `vector` through the guest's IVT and point EIP at its handler's translation."""
        ip = self.ops.deliver(regs, vector, return_ip)
        regs[EIP] = self._tc_address(self.seg_value(CS), ip)

    def _stale(self, rec, regs) -> bool:
        """A checked unit's guest bytes changed: drop it and translate them again."""
        unit = self.tc.units.get(("real", rec.cs, rec.ip))
        if unit is not None:
            self._drop_unit(unit)
        regs[EIP] = self._tc_address(rec.cs, rec.ip)
        return self._continue(regs, rec.ip)

    def _drop_unit(self, unit) -> None:
        self.tc.invalidate_unit(unit)
        self.lookup.drop_unit(unit.tc_start)
        for site, index in self.incoming.pop(unit.tc_start, []):
            self.tc.patch(site, bytes([abi.CALLOUT_OPCODE]) + index.to_bytes(4, "little"))

    def _lookup_miss(self, regs) -> bool:
        """ret / indirect branch whose (CS, IP) has no landing pad: make one."""
        ip = regs[0] & 0xFFFF
        regs[0] = self.memory.monitor_word32(abi.SCRATCH_EAX)
        cs = self.seg_value(CS)
        unit = self._unit_for(cs, ip)
        self.lookup.misses += 1
        self.lookup.install(self.tc, cs, ip, unit)
        regs[EIP] = unit.tc_start
        return self._continue(regs, ip)

    def _chain(self, rec, index: int) -> int:
        """Translate a continuation's target and patch the stub into a direct jump."""
        cs, generation = rec.cs, self.tc.generation
        unit = self._unit_for(cs, rec.target)
        if self.tc.generation != generation:
            return unit.tc_start                     # the TC was flushed: the stub is gone
        if self.seg_value(CS) != cs:
            return unit.tc_start                     # never chain across a CS mismatch
        rel = unit.tc_start - (rec.site + 5)
        self.tc.patch(rec.site, b"\xe9" + rel.to_bytes(4, "little", signed=True))
        self.incoming.setdefault(unit.tc_start, []).append((rec.site, index))
        self.tc.stats.chain_patches += 1
        return unit.tc_start

    def _on_exception(self, vector: int, error_code: int, is_int: bool) -> bool:
        """A CPU exception raised by translated code: deliver it through the guest's IVT."""
        regs = self.cpu.read_gprs()
        unit = self.tc.unit_at(regs[EIP])
        guest_ip = unit.guest_ip_at(regs[EIP]) if unit is not None else None
        if guest_ip is None:
            self.stop(f"exception {vector} at {regs[EIP]:#x} outside translated guest code")
            return False
        self.stats[f"exception_{vector}"] += 1
        # A fault inside a cs: operand's FS borrow leaves FS on the CS slot: reload it.
        self.uc.reg_write(REAL_SEG_REGS[4], abi.slot_selector(4))
        self._deliver(regs, vector, guest_ip)
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
        self.checked_pages.add(pfn)
        self._on_code_write(pfn)

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
        last_fold = start
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
                deadline = self.clock.next_deadline()
                if deadline is None:
                    if not self.guest_if():
                        self.stop("the guest halted with interrupts disabled")
                        break
                    deadline = now + SLICE_NS
                if deadline > now:
                    time.sleep(min(deadline - now, SLICE_NS) / 1e9)
                self.clock.advance_to(max(deadline, time.monotonic_ns() - epoch_ns))
                continue
            deadline = self.clock.next_deadline()
            slice_ns = SLICE_NS if deadline is None else max(10_000, min(SLICE_NS, deadline - now))
            try:
                self.cpu.run(self.eip, TC_UNTIL, timeout_us=slice_ns // 1000)
            except UcError as err:
                if not (self.mmu.trace_exit and err.errno == UC_ERR_EXCEPTION):
                    raise
                self.mmu.trace_exit = False      # a write trace: resume at the writing instruction
            self.eip = self.cpu.read_gprs()[EIP]
            self.clock.advance_to(max(self.clock.now_ns, time.monotonic_ns() - epoch_ns))
            if self.dirty_pages:
                self._invalidate_dirty()
            if self.counters is not None and time.monotonic() - last_fold > 1.0:
                self.counters.fold()             # u32 counters never get near wrapping
                last_fold = time.monotonic()
            if not self.vcpu.halted and self.pic is not None and self.pic.has_interrupt() and self.guest_if():
                guest_ip = self.guest_ip_at(self.eip)
                if guest_ip is not None:
                    self._take_interrupt(guest_ip)
        return self.stop_reason

    def _take_interrupt(self, return_ip: int) -> None:
        """Between runs: acknowledge the PIC's interrupt and enter its handler."""
        regs = self.cpu.read_gprs()
        self._deliver(regs, self.pic.acknowledge(), return_ip)
        self.eip = regs[EIP]
        self.cpu.write_gprs(regs)

    # -- statistics -----------------------------------------------------------------------

    def statistics(self) -> dict:
        tc = self.tc.stats
        out = {
            "bt_instructions": self.counters.executed(self.tc.all_units) if self.counters else None,
            "de_instructions": 0,
            "units_translated": tc.units,
            "guest_instructions_translated": tc.insns,
            "tc_bytes": tc.bytes,
            "tc_flushes": tc.flushes,
            "chain_patches": tc.chain_patches,
            "lookup_hits": self.lookup.hits() if self.counters else None,
            "lookup_misses": self.lookup.misses,
            "landing_pads": len(self.lookup.pads),
            "units_invalidated": tc.invalidated,
            "checked_pages": len(self.checked_pages),
            "tlb_fills": self.mmu.fills,
            "traces_fired": self.stats["traces_fired"],
            "interrupts_delivered": self.stats["interrupts_delivered"],
            "callouts": {k[len("callout_"):]: v for k, v in sorted(self.stats.items()) if k.startswith("callout_")},
            "exceptions": {k: v for k, v in sorted(self.stats.items()) if k.startswith("exception_")},
            "io": self.cpu.counters,
        }
        return out
