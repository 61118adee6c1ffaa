"""hybrid86's PC BIOS: a 64 KiB ROM of real x86 stubs plus Python services.

The ROM (``rom.py``) is ordinary real-mode code at F000:0000.  Where the
work is done by the monitor, a stub executes the callout ``0F 0B nn``; the
translator calls ``Bios.service(nn, ctx)`` (``context.py`` describes the
context and the protocol) and the stub continues.  One module per
interrupt family: ``video`` (10h), ``disk`` (13h), ``system`` (15h),
``keyboard`` (09h, 16h), ``timeofday`` (08h, 1Ah), ``misc`` (05h, 14h,
17h), ``post`` (POST, 18h, 19h).  docs/bios.md has the whole picture.
"""

from __future__ import annotations

from .context import BiosContext, BiosDevices, SimpleContext, SimpleDevices
from .memory import ROM_BASE, ROM_SIZE, rd16, real_addr, wr16
from .post import BiosConfigError, BiosError, NoBootableDevice, boot, the_rom
from . import disk, keyboard, misc, post as _post, rom, system, timeofday, video

from monitor.regs import FLAG_CF, FLAG_ZF

__all__ = [
    "Bios", "BiosContext", "BiosDevices", "BiosError", "BiosConfigError", "NoBootableDevice",
    "UnknownCallout", "SimpleContext", "SimpleDevices", "boot", "CALLOUT_LIMITS",
]

#: Physical range in which ``0F 0B nn`` is a BIOS callout (elsewhere it is ud2).
CALLOUT_LIMITS = (ROM_BASE, ROM_BASE + ROM_SIZE)

#: Flags a function-call service returns through the interrupt frame.
RETURN_FLAGS = FLAG_CF | FLAG_ZF


class UnknownCallout(BiosError):
    """A callout byte no service answers: the ROM and the dispatcher disagree."""


class Bios:
    """The dispatcher the translator calls for ``0F 0B nn``."""

    #: service byte -> (function, returns CF/ZF through the iret frame)
    SERVICES = {
        rom.SVC_PRINT_SCREEN: (misc.int05, False),
        rom.SVC_TIMER: (timeofday.irq0, False),
        rom.SVC_KEYBOARD: (keyboard.irq1, False),
        rom.SVC_VIDEO: (video.int10, False),
        rom.SVC_DISK: (disk.int13, True),
        rom.SVC_SERIAL: (misc.int14, False),
        rom.SVC_SYSTEM: (system.int15, True),
        rom.SVC_KEYBOARD_FN: (keyboard.int16, True),
        rom.SVC_PRINTER: (misc.int17, False),
        rom.SVC_NO_BASIC: (_post.int18, False),
        rom.SVC_BOOTSTRAP: (_post.int19, False),
        rom.SVC_TIME: (timeofday.int1a, True),
        rom.SVC_POST: (_post.post_and_boot, False),
    }

    def __init__(self) -> None:
        self.rom = the_rom()
        #: Calls per service byte (statistics).
        self.calls: dict[int, int] = {}

    @classmethod
    def is_callout(cls, service: int) -> bool:
        return service in cls.SERVICES

    def service(self, nn: int, ctx) -> None:
        """Run service ``nn``.  ``ctx.regs.eip`` points past the callout on
        entry; the guest continues with ``ctx.regs`` on return."""
        entry = self.SERVICES.get(nn)
        if entry is None:
            raise UnknownCallout(f"BIOS callout 0F 0B {nn:02X} has no service (ROM/dispatcher mismatch)")
        fn, returns_flags = entry
        self.calls[nn] = self.calls.get(nn, 0) + 1
        r = ctx.regs
        cs, ip = r.cs, r.ip
        fn(ctx)
        if returns_flags and (r.cs, r.ip) == (cs, ip):
            self._return_flags(ctx)

    @staticmethod
    def _return_flags(ctx) -> None:
        """Copy CF and ZF into the FLAGS word of the interrupt frame at
        SS:SP (IP, CS, FLAGS), which the stub's ``iret`` restores."""
        r = ctx.regs
        at = real_addr(ctx, r.ss, (r.sp + 4) & 0xFFFF)
        if at + 2 > len(ctx.mem):
            return
        old = rd16(ctx.mem, at)
        wr16(ctx.mem, at, (old & ~RETURN_FLAGS) | (r.eflags & RETURN_FLAGS))
