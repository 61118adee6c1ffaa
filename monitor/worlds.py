"""World switches: between binary translation (BT, the TC at real CPL 0) and
direct execution (DE, the guest's own ring-3 or V8086 code on the real CPU).

The stubs live in the TC's last page, which the software MMU keeps fetchable
in both worlds (it also holds the `until` address of every run, U19):

    WS_TRAP     int3 x 16     a run started here traps at once: the way to
                              leave DE between two runs (U17: CS/CR0 register
                              writes between runs are unreliable, so the
                              switch is made inside the interrupt hook)
    STUB16      66 EA reentry32:SEL_TC_CODE
                              first instruction after the U5 recipe (CS=0,
                              16-bit): far jump to the monitor's 32-bit code
    REENTRY32   mov ss/ds/es/fs/gs, cs:[REAL_SELS+..]; jmp cs:[REENTRY_TARGET]
                              reloads the guest's segment slots, then enters
                              the translation (or the DE stub)
    DE_STUB     mov ss, cs:[MON_SS_SEL]; mov esp, cs:[DE_ESP];
                pop es; pop ds; pop fs; pop gs; iretd
                              enters ring 3 with the guest's selectors,
                              loaded by the real CPU from the shadow GDT
    DE_STUB_V86 mov ss, ...; mov esp, ...; iretd
                              enters V8086 (the 9-dword frame carries the
                              segment values)

Entering DE from BT is a jump to DE_STUB (the real CPU is at CPL 0).
Leaving DE happens in the interrupt hook, where the U5 recipe (VM off, PE
off, SS=CS=0, PE on) makes the real CPU ring 0 and EIP goes to STUB16.
"""

from __future__ import annotations

import struct

from unicorn.x86_const import UC_X86_REG_CR0, UC_X86_REG_CS, UC_X86_REG_EFLAGS, UC_X86_REG_SS

from bt import abi
from monitor import shadow
from monitor.memory import TC_ALLOC_END

WS_TRAP = TC_ALLOC_END
STUB16 = TC_ALLOC_END + 0x10
REENTRY32 = TC_ALLOC_END + 0x20
DE_STUB = TC_ALLOC_END + 0x60
DE_STUB_V86 = TC_ALLOC_END + 0x80
VM_BIT = 0x20000


def _abs32(addr: int) -> bytes:
    return struct.pack("<I", addr & 0xFFFFFFFF)


def stub_page(layout) -> dict[int, bytes]:
    """The stubs, by linear address (they embed monitor-data addresses)."""
    reentry = bytearray()
    for sreg in (2, 3, 0, 4, 5):                   # SS first, then DS ES FS GS
        reentry += b"\x2e\x8e" + bytes([0x05 | sreg << 3]) + _abs32(layout.REAL_SELS + 2 * sreg)
    reentry += b"\x2e\xff\x25" + _abs32(layout.REENTRY_TARGET)          # jmp dword cs:[target]
    enter = b"\x2e\x8e\x15" + _abs32(layout.MON_SS_SEL) + b"\x2e\x8b\x25" + _abs32(layout.DE_ESP)
    return {
        WS_TRAP: b"\xcc" * 16,
        STUB16: b"\x66\xea" + struct.pack("<IH", REENTRY32, abi.SEL_TC_CODE),
        REENTRY32: bytes(reentry),
        DE_STUB: enter + b"\x07\x1f\x0f\xa1\x0f\xa9\xcf",            # pop es ds fs gs; iretd
        DE_STUB_V86: enter + b"\xcf",                                  # iretd
    }


class WorldSwitch:
    """Builds DE entries and performs the U5 recipe for a Machine."""

    def __init__(self, machine):
        self.m = machine
        self.switches = 0          # BT -> DE and DE -> BT, each counted
        self.shadow_syncs = 0
        self.entry = (0, 0)        # guest EIP and ESP of the last DE entry
        self.write_stubs()

    def write_stubs(self) -> None:
        """(Re)write the stubs: at start and after the data window moved."""
        for addr, code in stub_page(self.m.abi).items():
            self.m.tc.patch(addr, code)

    # -- the shadow tables ---------------------------------------------------------

    def sync_shadow_tables(self) -> None:
        """Copy the guest's GDT and LDT into the shadow tables (truncated
        limits, gates and available TSSes hidden: monitor/shadow.py), keeping
        the monitor's own entries in the top 32 GDT slots."""
        m, v = self.m, self.m.vcpu
        base, limit = v.gdtr
        n = min(limit + 1, abi.MON_GDT_INDEX * 8)
        guest = m.vmem.read(base, n, cpl=0)
        table = shadow.shadow_table(guest)
        L = m.abi
        off = L.offset(L.GDT_LINEAR)
        view = m.memory.monitor
        old_n = getattr(self, "_gdt_n", 0)
        loaded = [v.segs[sreg][0] & 0xFFFC for sreg in range(6)] if not v.eflags_vm else []
        view[off:off + n] = bytes(self._accessed(table.data, n, [s for s in loaded if s and not s & 4]))
        if old_n > n:
            view[off + n:off + old_n] = bytes(old_n - n)
        self._gdt_n = n
        if v.ldtr[0] & 0xFFFC:
            ldt = m.vmem.read(v.ldtr[1], min(v.ldtr[2] + 1, 0x10000), cpl=0)
            lt = shadow.shadow_table(ldt, ldt=True)
            loff = L.offset(L.LDT_LINEAR)
            view[loff:loff + len(ldt)] = bytes(self._accessed(lt.data, len(ldt), [s for s in loaded if s & 4]))
            m.set_real_ldtr(v.ldtr[0], L.LDT_LINEAR, v.ldtr[2])
        self.shadow_syncs += 1

    @staticmethod
    def _accessed(table: bytes, n: int, loaded) -> bytearray:
        """The shadow entries keep the guest's accessed bits, except those of
        the selectors the entry stub itself reloads (`loaded`): that reload
        is the monitor's, not the guest's, and must not write the table.  A
        segment load run directly that would set a clear accessed bit is a
        refused write to the (read-only in DE) shadow table: the machine
        runs that instruction in BT, which sets the bit in the guest's table
        as the CPU would (machine.py `_de_page_fault`)."""
        out = bytearray(table[:n])
        for sel in loaded:
            i = sel & 0xFFF8
            if i + 8 <= n and out[i + 5] & 0x90 == 0x90:
                out[i + 5] |= 1
        return out

    # -- BT -> DE -----------------------------------------------------------------------

    def prepare_de(self, regs, eip: int) -> int:
        """Write the DE-entry frame on the monitor stack; returns the stub to
        jump to.  The guest's registers other than ESP and EIP stay in regs."""
        m, v = self.m, self.m.vcpu
        self.sync_shadow_tables()
        eflags = (m.guest_eflags(regs) | 2) & ~0x10000          # no RF (machine.set_guest_eflags)
        sels = [v.segs[s][0] for s in range(6)]          # ES CS SS DS FS GS
        if v.eflags_vm:
            frame = [eip & 0xFFFF, sels[1], eflags | VM_BIT, regs[4], sels[2], sels[0], sels[3], sels[4], sels[5]]
            stub = DE_STUB_V86
        else:
            frame = [sels[0], sels[3], sels[4], sels[5], eip, sels[1], eflags & ~VM_BIT, regs[4], sels[2]]
            stub = DE_STUB
        at = m.abi.STACK_TOP - 4 * len(frame)
        off = m.abi.offset(at)
        struct.pack_into(f"<{len(frame)}I", m.memory.monitor, off, *[x & 0xFFFFFFFF for x in frame])
        m.mirror.word32(m.abi.DE_ESP, at)
        self.entry = (eip, regs[4])             # for a fault the entry itself takes (machine.py)
        m.enter_world_de()
        self.switches += 1
        return stub

    # -- DE -> BT: the U5 recipe, inside the interrupt hook ------------------------------------

    def recipe_to_ring0(self, regs, target: int) -> None:
        """Make the real CPU ring 0 and continue at `target` (a TC address)
        through STUB16 and REENTRY32; regs are written by the caller."""
        uc = self.m.uc
        self.m.mirror.word32(self.m.abi.REENTRY_TARGET, target)
        uc.reg_write(UC_X86_REG_EFLAGS, uc.reg_read(UC_X86_REG_EFLAGS) & ~VM_BIT)
        cr0 = uc.reg_read(UC_X86_REG_CR0)
        uc.reg_write(UC_X86_REG_CR0, cr0 & ~1)
        uc.reg_write(UC_X86_REG_SS, 0)
        uc.reg_write(UC_X86_REG_CS, 0)
        uc.reg_write(UC_X86_REG_CR0, cr0 | 1)
        regs[8] = STUB16
        regs[9] &= ~VM_BIT
        self.switches += 1

