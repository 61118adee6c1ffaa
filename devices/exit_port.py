"""The test-exit port: port 0xF4.

Reference: QEMU's ``isa-debug-exit`` device (iobase 0xF4), used by bare-metal
test guests to end the run with a status.  Not a chip.

Emulated: a write of value V (any size: byte, word or dword) calls
``on_exit(V)``; the run loop ends the run with exit status V.  (QEMU exits
with ``(V << 1) | 1``; hybrid86 passes V unchanged.)  Reads float (all ones).

Not emulated: nothing else exists.  Without ``on_exit`` the write is counted
and the last value kept in ``exit_value``.
"""

from __future__ import annotations

from typing import Callable, Optional

from .base import FLOATING_BUS, Device

EXIT_PORT = 0xF4


class ExitPort(Device):
    name = "exit_port"
    io_widths = (1, 2, 4)

    def __init__(self, on_exit: Optional[Callable[[int], None]] = None, port: int = EXIT_PORT) -> None:
        super().__init__()
        self._on_exit = on_exit
        self.port = port
        #: Value of the last write, None if the guest never wrote.
        self.exit_value: Optional[int] = None

    def port_ranges(self):
        return [(self, self.port, 1)]

    def io_read(self, offset: int, size: int) -> int:
        return FLOATING_BUS[size]

    def io_write(self, offset: int, size: int, value: int) -> None:
        self.exit_value = value
        if self._on_exit is not None:
            self._on_exit(value)
