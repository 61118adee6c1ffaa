"""What a BIOS service sees of the machine: the ``BiosContext`` protocol.

Every service is a function ``(ctx) -> None``.  The run loop provides the
context; tests provide ``SimpleContext`` (below) built on real devices and a
``bytearray`` of RAM, with no CPU at all.

The callout protocol (see docs/bios.md)
---------------------------------------
ROM code executes ``0F 0B nn`` (``ud2`` followed by a service byte).  Inside
0xF0000-0xFFFFF the translator turns that into a call to
``Bios.service(nn, ctx)`` with

* ``ctx.regs`` holding the guest registers *at* the callout, except that
  ``regs.eip`` already points past the three callout bytes (the
  continuation);
* on return, the guest continues with whatever ``ctx.regs`` then holds:
  usually CS:EIP is unchanged (execution goes on after the callout), but
  POST and int 19h load a new CS:EIP, SS:ESP and more, the keyboard service
  may push an interrupt frame (Ctrl-Break raises int 1Bh), and a service
  that must wait moves EIP *back* onto the callout (below).  The run loop
  must therefore write ``ctx.regs`` back to the CPU and compare CS:EIP
  before continuing inline.

Waiting (the re-execution protocol)
-----------------------------------
int 16h AH=00h/10h with an empty keyboard buffer calls ``ctx.wait_for_key()``
and sets ``regs.eip`` back by 3, onto the callout itself, leaving every
other register unchanged.  The run loop then idles the CPU as it would for
``hlt`` (the int 16h stub executed ``sti`` first, so IF=1): it advances
virtual time / waits for host input and delivers the next interrupt at the
callout's address.  When that interrupt returns, the callout executes again
and finds the key IRQ1 put into the buffer; without a key it asks to wait
again.  Nothing is lost if the run loop ignores the request and simply
resumes: the guest spins on the callout like a polling BIOS.

Memory written behind the CPU's back
------------------------------------
Services write guest RAM directly through ``ctx.mem``.  Writes that may
overwrite code (disk reads, the boot sector, block moves) are reported with
``ctx.memory_written(addr, length)`` so the translator can drop
translations of those bytes; writes to the BDA, the IVT and text memory are
not reported.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Optional, Protocol, Sequence

from monitor.regs import RegisterFile


class BiosDevices(Protocol):
    """The chips the BIOS drives (host-side objects from ``devices/``)."""

    vga: Any                         # devices.vga_text.VgaText
    kbd: Any                         # devices.i8042.I8042
    pic: Any                         # devices.pic8259.Pic8259Pair
    pit: Any                         # devices.pit8254.Pit8254
    cmos: Any                        # devices.cmos_rtc.CmosRtc
    floppies: Sequence[Any]          # devices.disk.RawImage or None; index = drive 00h, 01h
    disks: Sequence[Any]             # devices.disk.RawImage or None; index = drive 80h, 81h, ...
    uarts: Sequence[Any]             # devices.uart16550.Uart16550 or None; COM1..COM4


class BiosContext(Protocol):
    """What the run loop hands to ``Bios.service``."""

    regs: RegisterFile               # guest registers (see the callout protocol above)
    mem: memoryview                  # guest physical RAM from 0, writable, memory_size bytes
    devices: BiosDevices
    memory_size: int                 # bytes of guest RAM (at least 1 MiB)
    a20: bool                        # the A20 gate; assigning it opens/closes the gate
    clock: Any                       # devices.clock.VirtualClock
    log: logging.Logger
    boot_order: str                  # drive letters to try, e.g. "ac" ("a"/"b" floppies, "c"/"d" disks)
    # Optional: ``direct_boot(ctx)``, when present and not None, replaces the
    # drive boot after POST and on int 19h (a kernel loaded by the monitor,
    # monitor/linux); it writes guest RAM and sets ``ctx.regs`` itself.

    def wait_for_key(self) -> None:
        """int 16h needs a key: idle until an interrupt, then re-execute the callout."""

    def memory_written(self, addr: int, length: int) -> None:
        """The BIOS wrote guest RAM ``[addr, addr+length)``: drop translations of it."""


@dataclass
class SimpleDevices:
    """A concrete ``BiosDevices`` (tests, tools)."""

    vga: Any
    kbd: Any
    pic: Any
    pit: Any
    cmos: Any
    floppies: list = field(default_factory=list)
    disks: list = field(default_factory=list)
    uarts: list = field(default_factory=list)


class SimpleContext:
    """A concrete ``BiosContext`` with no CPU: requests are recorded.

    ``key_waits`` counts ``wait_for_key()`` calls; ``written`` lists the
    ranges passed to ``memory_written``; ``a20`` is a plain attribute
    unless ``on_a20`` is given, which is then called with each new value.
    """

    def __init__(
        self,
        mem: memoryview,
        devices: SimpleDevices,
        clock: Any,
        regs: Optional[RegisterFile] = None,
        boot_order: str = "ac",
        log: Optional[logging.Logger] = None,
        a20: bool = True,
        on_a20=None,
    ) -> None:
        self.mem = mem
        self.memory_size = len(mem)
        self.devices = devices
        self.clock = clock
        self.regs = regs if regs is not None else RegisterFile()
        self.boot_order = boot_order
        self.log = log or logging.getLogger("hybrid86.bios")
        self._a20 = a20
        self._on_a20 = on_a20
        self.key_waits = 0
        self.written: list[tuple[int, int]] = []

    @property
    def a20(self) -> bool:
        return self._a20

    @a20.setter
    def a20(self, value: bool) -> None:
        self._a20 = bool(value)
        if self._on_a20 is not None:
            self._on_a20(self._a20)

    def wait_for_key(self) -> None:
        self.key_waits += 1

    def memory_written(self, addr: int, length: int) -> None:
        self.written.append((addr, length))
