"""A CPU-less machine for driving the BIOS: real devices, RAM in a bytearray.

``make_machine()`` wires the chips the BIOS talks to the way the monitor
does (PIT -> IRQ0, 8042 -> IRQ1/IRQ12, RTC -> IRQ8 on the PIC pair; the
VGA over the text window of RAM) and returns a ``SimpleContext``.  Tests
use it to call services directly; tools can use it to inspect what POST
leaves in memory.
"""

from __future__ import annotations

from datetime import datetime
from typing import Optional, Sequence

from devices.clock import VirtualClock
from devices.cmos_rtc import CmosRtc
from devices.i8042 import I8042
from devices.pic8259 import Pic8259Pair
from devices.pit8254 import Pit8254
from devices.vga_text import VgaText

from .context import SimpleContext, SimpleDevices
from .memory import VIDEO_TEXT_BASE

DEFAULT_START = datetime(2024, 6, 1, 12, 34, 56)


def make_machine(
    memory_size: int = 2 << 20,
    floppies: Sequence = (),
    disks: Sequence = (),
    uarts: Sequence = (),
    start_time: Optional[datetime] = DEFAULT_START,
    boot_order: str = "ac",
) -> SimpleContext:
    ram = bytearray(memory_size)
    mem = memoryview(ram)
    clock = VirtualClock()
    pic = Pic8259Pair()
    resets: list[int] = []
    ctx_holder: list[SimpleContext] = []

    def on_a20(level: bool) -> None:
        if ctx_holder:
            ctx_holder[0]._a20 = level

    pit = Pit8254(clock, irq=pic.irq_line(0))
    kbd = I8042(clock, irq=pic.irq_line(1), irq12=pic.irq_line(12), on_a20=on_a20,
                on_reset=lambda: resets.append(clock.now_ns))
    cmos = CmosRtc(clock, irq=pic.irq_line(8), start_time=start_time)
    vga = VgaText(mem[VIDEO_TEXT_BASE:VIDEO_TEXT_BASE + 0x8000])
    devices = SimpleDevices(vga=vga, kbd=kbd, pic=pic, pit=pit, cmos=cmos,
                            floppies=list(floppies), disks=list(disks), uarts=list(uarts))
    ctx = SimpleContext(mem, devices, clock, boot_order=boot_order, a20=kbd.a20)
    ctx.resets = resets  # type: ignore[attr-defined]  (8042 reset requests, for tests)
    ctx_holder.append(ctx)
    return ctx
