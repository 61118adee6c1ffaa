"""System control port A (port 0x92): "fast A20" and fast reset; and the A20 gate.

Reference: IBM PS/2 Model 50/60 Technical Reference, "System Control
Port A"; Intel 82371AB PIIX4 data sheet (port 92h), which also says how the
chipset combines it with the keyboard controller's A20 output: the A20M#
line is released when *either* source enables A20.

Bits: 0 = fast reset (a 0 -> 1 transition resets the CPU; reads back as
written), 1 = A20 gate, 3 = CMOS security lock (stored only), 6-7 = fixed
disk activity LEDs (stored only).  Not emulated: the security lock and LEDs
have no effect.

``A20Gate`` ORs the 8042 and port 0x92 sources and tells the monitor when
the combined line changes: wire ``I8042(on_a20=gate.source("kbc"))`` and
``Port92(on_a20=gate.source("port92"))``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from .base import Device, DeviceState

PORT92 = 0x92

# --- port 0x92 bits -----------------------------------------------------------------
P92_FAST_RESET = 0x01  # 0 -> 1 pulses the CPU reset line
P92_A20 = 0x02         # A20 gate
P92_LOCK = 0x08        # CMOS security lock (stored only)
P92_LED = 0xC0         # disk activity LEDs (stored only)
P92_WRITABLE = P92_FAST_RESET | P92_A20 | P92_LOCK | P92_LED


class A20Gate:
    """The chipset's OR of A20 requests; calls ``on_change(enabled)`` on changes."""

    def __init__(self, on_change: Callable[[bool], None], initial: bool = False) -> None:
        self._on_change = on_change
        self._sources: dict[str, bool] = {}
        self.enabled = initial

    def source(self, name: str) -> Callable[[bool], None]:
        self._sources.setdefault(name, False)

        def drive(level: bool) -> None:
            self._sources[name] = bool(level)
            enabled = any(self._sources.values())
            if enabled != self.enabled:
                self.enabled = enabled
                self._on_change(enabled)

        return drive


@dataclass
class Port92State(DeviceState):
    KIND = "port92"
    VERSION = 1
    value: int  # the register as last written (writable bits)


class Port92(Device):
    name = "port92"

    def __init__(
        self,
        on_a20: Optional[Callable[[bool], None]] = None,
        on_reset: Optional[Callable[[], None]] = None,
    ) -> None:
        super().__init__()
        self._on_a20 = on_a20
        self._on_reset = on_reset
        self.value = 0
        #: Resets requested through bit 0.
        self.resets = 0

    def port_ranges(self):
        return [(self, PORT92, 1)]

    @property
    def a20(self) -> bool:
        return bool(self.value & P92_A20)

    def io_read(self, offset: int, size: int) -> int:
        return self.value

    def io_write(self, offset: int, size: int, value: int) -> None:
        old = self.value
        self.value = value & P92_WRITABLE
        if (old ^ value) & P92_A20 and self._on_a20 is not None:
            self._on_a20(bool(value & P92_A20))
        if value & P92_FAST_RESET and not old & P92_FAST_RESET:
            self.resets += 1
            self.log.debug("fast reset through port 0x92")
            if self._on_reset is not None:
                self._on_reset()

    def reset(self) -> None:
        if self.value & P92_A20 and self._on_a20 is not None:
            self._on_a20(False)
        self.value = 0

    def save(self) -> Port92State:
        return Port92State(value=self.value)

    def restore(self, state: Port92State) -> None:
        """Restore; the A20 bit is re-announced through ``on_a20``."""
        self._check_state(state, Port92State)
        self.value = state.value
        if self._on_a20 is not None:
            self._on_a20(self.a20)
