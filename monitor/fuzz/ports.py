"""The deterministic I/O model both paths share.

The run does not stop at I/O: every port answers ``IN`` with a value that
depends only on (port, size, how many accesses came before), and every access
is recorded.  Both paths get the same answers, so the whole I/O trace can be
compared and the program goes on with the value it read.  This sidesteps
Unicorn's imprecise stop from an I/O hook (U16): no run ever needs one.
"""

from __future__ import annotations

MASK = {1: 0xFF, 2: 0xFFFF, 4: 0xFFFFFFFF}


class PortModel:
    def __init__(self):
        self.trace: list[tuple] = []

    def value(self, port: int, size: int) -> int:
        n = len(self.trace)
        v = (port * 0x9E3779B1 + size * 0x85EBCA6B + n * 0xC2B2AE35) & 0xFFFFFFFF
        v ^= v >> 15
        return v & MASK[size]

    def read(self, port: int, size: int) -> int:
        port &= 0xFFFF
        v = self.value(port, size)
        self.trace.append(("in", port, size, v))
        return v

    def write(self, port: int, size: int, value: int) -> None:
        self.trace.append(("out", port & 0xFFFF, size, value & MASK.get(size, 0xFFFFFFFF)))
