"""The Bochs/QEMU debug console: port 0xE9.

Reference: Bochs "port E9 hack" (``iodev/unmapped.cc``) and QEMU's
``isa-debugcon`` device.  Not a chip: a convenience port that test guests and
BIOSes write characters to.

Emulated: a byte written to the port goes to the host ``write`` callback;
a read returns 0xE9, which is how a guest detects the port (Bochs and QEMU
both answer so).  Wider writes send their low byte, as QEMU does.

Not emulated: nothing else exists.  Without a ``write`` callback the bytes
are counted and dropped.
"""

from __future__ import annotations

from typing import Callable, Optional

from .base import Device

DEBUGCON_PORT = 0xE9
DEBUGCON_READBACK = 0xE9  # what a read returns: "the port is present"


class DebugCon(Device):
    name = "debugcon"
    io_widths = (1, 2, 4)

    def __init__(self, write: Optional[Callable[[bytes], None]] = None, port: int = DEBUGCON_PORT) -> None:
        super().__init__()
        self._write = write
        self.port = port
        #: Bytes the guest wrote (statistics).
        self.bytes_written = 0

    def port_ranges(self):
        return [(self, self.port, 1)]

    def io_read(self, offset: int, size: int) -> int:
        return DEBUGCON_READBACK

    def io_write(self, offset: int, size: int, value: int) -> None:
        self.bytes_written += 1
        if self._write is not None:
            self._write(bytes((value & 0xFF,)))

    # The port has no state: save() returns None, restore(None) accepts it.
