"""The virtual CPU: guest architectural state the real CPU does not hold.

While translated code runs, the general registers and the arithmetic flags are
the real CPU's own; this object holds what is virtual: the hidden limits of
the guest's segment registers and its control and system registers. The
segment values and bases live in monitor data (bt/abi.py), where translated
code loads them itself; the guest's IF is the real IF (docs/real-mode-bt.md).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from bt import abi

ES, CS, SS, DS, FS, GS = range(6)


@dataclass
class VirtualCPU:
    # Hidden limits of ES CS SS DS FS GS: a real-mode load keeps them (unreal mode).
    seg_limits: list = field(default_factory=lambda: [0xFFFF] * 6)
    cr0: int = 0x60000010   # reset value: CD NW ET
    cr2: int = 0
    cr3: int = 0
    cr4: int = 0
    gdtr: tuple = (0, 0xFFFF)   # (base, limit)
    idtr: tuple = (0, 0x3FF)
    halted: bool = False    # waiting in hlt for an interrupt
    # Protected mode (monitor/protmode.py): the six segment registers as
    # (selector, cached descriptor or None for a null selector), CPL, the
    # guest's LDTR (selector, base, limit) and TR (selector, base, limit, type).
    segs: list = field(default_factory=lambda: [(0, None)] * 6)
    cpl: int = 0
    eflags_vm: bool = False   # the guest's EFLAGS.VM (the real CPU's VM is 1 only in DE)
    ldtr: tuple = (0, 0, 0)
    tr: tuple = (0, 0, 0, 0)
    msr: dict = field(default_factory=dict)
    dr: list = field(default_factory=lambda: [0, 0, 0, 0, 0, 0, 0xFFFF0FF0, 0x400])

    @property
    def pe(self) -> bool:
        return bool(self.cr0 & 1)



class VirtualStateMirror:
    """Writes the parts translated code reads into monitor data."""

    def __init__(self, monitor_view, layout=abi.DEFAULT):
        self.view = monitor_view
        self.abi = layout

    def _off(self, linear: int) -> int:
        return self.abi.offset(linear)

    def seg(self, sreg: int, value: int) -> None:
        struct.pack_into("<H", self.view, self._off(self.abi.VSEG) + 2 * sreg, value & 0xFFFF)
        struct.pack_into("<I", self.view, self._off(self.abi.VSEG32) + 4 * sreg, value & 0xFFFF)

    def constants(self) -> None:
        struct.pack_into("<H", self.view, self._off(self.abi.CS_SLOT_SEL), abi.slot_selector(CS))
        struct.pack_into("<H", self.view, self._off(self.abi.MON_SS_SEL), abi.SEL_MON_DATA)
        for sreg in range(6):
            struct.pack_into("<H", self.view, self._off(self.abi.SLOT_SELS) + 2 * sreg, abi.slot_selector(sreg))
            self.real_selector(sreg, abi.slot_selector(sreg))

    def real_selector(self, sreg: int, sel: int) -> None:
        """The selector the re-entry stub loads into real segment register `sreg`
        (the slot, or 0 for a null guest selector)."""
        struct.pack_into("<H", self.view, self._off(self.abi.REAL_SELS) + 2 * sreg, sel)

    def read_real_selector(self, sreg: int) -> int:
        return struct.unpack_from("<H", self.view, self._off(self.abi.REAL_SELS) + 2 * sreg)[0]

    def word32(self, linear: int, value: int) -> None:
        struct.pack_into("<I", self.view, self._off(linear), value & 0xFFFFFFFF)

    def read_seg(self, sreg: int) -> int:
        """The guest's segment value as translated code last left it."""
        return struct.unpack_from("<H", self.view, self._off(self.abi.VSEG) + 2 * sreg)[0]

    def read_base(self, sreg: int) -> int:
        """The base in the shadow slot (what the real CPU uses for `sreg`)."""
        off = self._off(self.abi.slot_descriptor(sreg))
        d = self.view[off:off + 8]
        return d[2] | d[3] << 8 | d[4] << 16 | d[7] << 24
