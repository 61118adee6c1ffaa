"""System control port B (port 0x61) of the PC/AT.

Reference: IBM PC/AT Technical Reference, "System Board I/O Address Map";
Intel 82371AB PIIX4 data sheet 4.1.21 (NMI status and control register).

Bits (write): 0 = PIT channel 2 GATE, 1 = speaker data enable, 2 = parity
check (SERR#) disable, 3 = I/O channel check (IOCHK#) disable.
Bits (read): those four as written, 4 = refresh request toggle, 5 = PIT
channel 2 OUT, 6 = IOCHK# NMI source, 7 = parity/SERR# NMI source.

The refresh bit toggles on every read (as QEMU does) instead of every
15.085 us of virtual time: BIOS and DOS delay loops that wait for it to
change then finish whatever the run loop does with time, and a snapshot
carries the phase.  Not emulated: the speaker sound itself (the levels are
visible through ``speaker_on``), NMI sources (bits 6-7 read 0).
"""

from __future__ import annotations

from dataclasses import dataclass

from .base import Device, DeviceState
from .pit8254 import Pit8254

PORT61 = 0x61

# --- port 0x61 bits ----------------------------------------------------------
P61_T2_GATE = 0x01     # PIT channel 2 GATE input
P61_SPKR_DATA = 0x02   # speaker data: ANDed with OUT2 to drive the speaker
P61_PARITY_DIS = 0x04  # disable parity/SERR# NMI
P61_IOCHK_DIS = 0x08   # disable IOCHK# NMI
P61_REFRESH = 0x10     # (read) refresh request, toggles
P61_T2_OUT = 0x20      # (read) PIT channel 2 OUT
P61_IOCHK = 0x40       # (read) IOCHK# NMI occurred
P61_PARITY = 0x80      # (read) parity error / SERR# NMI occurred
P61_WRITABLE = 0x0F


@dataclass
class Port61State(DeviceState):
    KIND = "port61"
    VERSION = 1
    control: int   # bits 0-3 as last written
    refresh: bool  # current phase of the refresh toggle (bit 4)


class SystemControlPortB(Device):
    name = "port61"

    def __init__(self, pit: Pit8254) -> None:
        super().__init__()
        self.pit = pit
        self.control = 0
        self.refresh = False

    def port_ranges(self):
        return [(self, PORT61, 1)]

    def io_read(self, offset: int, size: int) -> int:
        self.refresh = not self.refresh
        value = self.control & P61_WRITABLE
        if self.refresh:
            value |= P61_REFRESH
        if self.pit.out(2):
            value |= P61_T2_OUT
        return value

    def io_write(self, offset: int, size: int, value: int) -> None:
        self.control = value & P61_WRITABLE
        self.pit.set_gate(2, bool(value & P61_T2_GATE))

    @property
    def speaker_on(self) -> bool:
        """True while the speaker cone is being driven by OUT2 (data enable and gate)."""
        return bool(self.control & P61_SPKR_DATA) and bool(self.control & P61_T2_GATE)

    def reset(self) -> None:
        self.control = 0
        self.refresh = False
        self.pit.set_gate(2, False)

    def save(self) -> Port61State:
        return Port61State(control=self.control, refresh=self.refresh)

    def restore(self, state: Port61State) -> None:
        self._check_state(state, Port61State)
        self.control = state.control
        self.refresh = state.refresh
        # The gate level itself is part of the PIT's snapshot.
