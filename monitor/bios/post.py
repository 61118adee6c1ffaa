"""Power-on self-test as data, the bootstrap loader (int 19h) and int 18h.

``post(ctx)`` leaves the machine as a PC/AT BIOS hands it to a boot
sector; ``boot(ctx, order)`` loads the first bootable drive's sector 0 to
0000:7C00 and sets the registers a boot sector expects.  The POST service
(callout F0h, reached from the reset vector) runs both.

What POST does, in order:

1. copies the ROM image to 0xF0000 (the monitor maps that range read-only);
2. clears the IVT, BDA and EBDA and fills the IVT: every vector to the ROM's
   dummy ``iret``, the BIOS vectors to their stubs, 1Dh/1Eh/1Fh/43h to ROM
   tables, 41h/46h to the fixed-disk parameter tables in the EBDA (SeaBIOS
   keeps them there too, since they describe this machine's disks), and
   60h-67h and 79h to 0000:0000;
3. fills the BDA: COM ports, EBDA segment, equipment word, base memory
   (639 KiB: the top KiB is the EBDA), keyboard buffer, hard disk count,
   serial and printer time-outs, time-of-day ticks from the RTC;
4. writes the CMOS configuration bytes (``CmosRtc.fill_bios_defaults``);
5. programs both 8259s (ICW1-ICW4: vectors 08h and 70h, cascade on IR2,
   8086 mode) with only IRQ0, IRQ1 and the cascade unmasked, and PIT
   channel 0 in mode 3 with count 0 (18.2 Hz);
6. sets video mode 3 (clears the screen, cursor at 0,0).

Not done: a memory test, option ROM scanning, PnP/PCI/ACPI/SMBIOS tables,
keyboard controller self-tests (the 8042 powers up as a BIOS leaves it).
"""

from __future__ import annotations

import struct

from .memory import (
    BASE_MEMORY_KB, BDA_COM_PORTS, BDA_COM_TIMEOUT, BDA_EBDA_SEGMENT, BDA_EQUIPMENT,
    BDA_HD_COUNT, BDA_KBD_END, BDA_KBD_FLAGS3, BDA_KBD_HEAD, BDA_KBD_START, BDA_KBD_TAIL,
    BDA_LPT_TIMEOUT, BDA_MEMORY_KB, BDA_TIMER_TICKS, BDA_VGA_FLAGS, BOOT_ADDR, EBDA_BASE,
    EBDA_SEGMENT, EBDA_SIZE_KB, EQ_FLOPPY, EQ_FLOPPY_SHIFT, EQ_FPU, EQ_SERIAL_SHIFT, EQ_VIDEO_EGA,
    KF3_101KEY, ROM_BASE, ROM_SEGMENT, once, set_vector, wr16, wr32, write,
)
from .ports import COM_BASES, outb
from . import rom as rom_mod
from . import video
from .timeofday import ticks_for

ONE_MB = 0x100000
KBD_BUFFER_START = 0x1E       # offsets from segment 40h
KBD_BUFFER_END = 0x3E
EBDA_FDPT0 = 0x3D             # EBDA offsets of the two fixed-disk parameter tables
EBDA_FDPT1 = 0x4D
FDPT_SIZE = 16
LPT_TIMEOUT = 0x14
COM_TIMEOUT = 0x01
BOOT_STACK = 0x7C00
BOOT_EFLAGS = 0x0202          # IF set (and the reserved bit 1)
BOOT_SIGNATURE = b"\x55\xaa"

# 8259 initialisation (Intel 8259A data sheet; IBM PC/AT wiring).
ICW1_EDGE_CASCADE_ICW4 = 0x11 # edge triggered, cascade, ICW4 follows
MASTER_VECTOR = 0x08          # IRQ0-7 -> int 08h-0Fh
SLAVE_VECTOR = 0x70           # IRQ8-15 -> int 70h-77h
ICW3_MASTER = 0x04            # slave on IR2
ICW3_SLAVE = 0x02             # slave identity 2
ICW4_8086 = 0x01
MASTER_MASK = 0xF8            # IRQ0 timer, IRQ1 keyboard, IRQ2 cascade open
SLAVE_MASK = 0xFF

# 8254 channel 0: counter 0, lsb then msb, mode 3 (square wave), binary.
PIT_CW_CH0_MODE3 = 0x36


class BiosError(Exception):
    """Base of the BIOS's host-side errors."""


class BiosConfigError(BiosError, ValueError):
    """The machine configuration cannot work with this BIOS (a host error)."""


class NoBootableDevice(BiosError):
    """No drive in the boot order holds a boot sector."""


_ROM: rom_mod.Rom | None = None


def the_rom() -> rom_mod.Rom:
    """The ROM image (built once per process)."""
    global _ROM
    if _ROM is None:
        _ROM = rom_mod.build_rom()
    return _ROM


def _present(drives) -> list:
    return [d for d in drives if d is not None]


def fdpt(geometry) -> bytes:
    """Fixed-disk parameter table (int 41h/46h; IBM PC/AT "FD_TBL"; RBIL
    table 03196): cylinders, heads, reduced-write and precompensation
    cylinders (none), ECC burst, control byte (bit 3: more than 8 heads),
    three XT time-outs, landing zone, sectors per track."""
    cyls = min(geometry.cylinders, 1024)
    control = 0x08 if geometry.heads > 8 else 0x00
    return struct.pack("<HBHHBBBBBHBB", cyls, geometry.heads, 0, 0xFFFF, 0, control,
                       0, 0, 0, cyls, geometry.sectors, 0)


def post(ctx) -> None:
    if ctx.memory_size < ONE_MB or len(ctx.mem) < ONE_MB:
        raise BiosConfigError(
            f"the BIOS needs at least 1 MiB of guest RAM (it has {ctx.memory_size} bytes)")
    m = ctx.mem
    devs = ctx.devices
    rom = the_rom()

    # 1. The ROM.
    write(ctx, ROM_BASE, rom.image)

    # 2. IVT (and a clean BDA and EBDA).
    m[0:0x500] = bytes(0x500)
    m[EBDA_BASE:EBDA_BASE + EBDA_SIZE_KB * 1024] = bytes(EBDA_SIZE_KB * 1024)
    for vector, off in rom.vectors.items():
        set_vector(m, vector, ROM_SEGMENT, off)
    for vector in rom_mod.NULL_VECTORS:
        set_vector(m, vector, 0, 0)
    disks = list(devs.disks)
    for vector, slot, index in ((0x41, EBDA_FDPT0, 0), (0x46, EBDA_FDPT1, 1)):
        img = disks[index] if index < len(disks) else None
        if img is not None:
            m[EBDA_BASE + slot:EBDA_BASE + slot + FDPT_SIZE] = fdpt(img.geometry)
            set_vector(m, vector, EBDA_SEGMENT, slot)
        else:
            set_vector(m, vector, 0, 0)

    # 3. BDA and EBDA header.
    m[EBDA_BASE] = EBDA_SIZE_KB
    uarts = list(getattr(devs, "uarts", ()))
    serial = 0
    for i, base in enumerate(COM_BASES):
        if i < len(uarts) and uarts[i] is not None:
            wr16(m, BDA_COM_PORTS + 2 * serial, base)
            m[BDA_COM_TIMEOUT + serial] = COM_TIMEOUT
            serial += 1
    for i in range(3):
        m[BDA_LPT_TIMEOUT + i] = LPT_TIMEOUT
    wr16(m, BDA_EBDA_SEGMENT, EBDA_SEGMENT)
    floppies = _present(devs.floppies)
    equipment = EQ_FPU | EQ_VIDEO_EGA | (min(serial, 7) << EQ_SERIAL_SHIFT)
    if floppies:
        equipment |= EQ_FLOPPY | ((min(len(floppies), 4) - 1) << EQ_FLOPPY_SHIFT)
    wr16(m, BDA_EQUIPMENT, equipment)
    wr16(m, BDA_MEMORY_KB, BASE_MEMORY_KB)
    wr16(m, BDA_KBD_HEAD, KBD_BUFFER_START)
    wr16(m, BDA_KBD_TAIL, KBD_BUFFER_START)
    wr16(m, BDA_KBD_START, KBD_BUFFER_START)
    wr16(m, BDA_KBD_END, KBD_BUFFER_END)
    m[BDA_KBD_FLAGS3] = KF3_101KEY
    m[BDA_HD_COUNT] = len(_present(disks))
    now = devs.cmos.now()
    wr32(m, BDA_TIMER_TICKS, ticks_for(now.hour * 3600 + now.minute * 60 + now.second))

    # 4. CMOS configuration.
    fl = list(devs.floppies)
    types = [img.geometry.cmos_type if img is not None else 0
             for img in (fl + [None, None])[:2]]
    devs.cmos.fill_bios_defaults(ctx.memory_size, floppy_a=types[0], floppy_b=types[1])

    # 5. Interrupt controllers and the timer.
    for port, vector, icw3 in ((0x20, MASTER_VECTOR, ICW3_MASTER), (0xA0, SLAVE_VECTOR, ICW3_SLAVE)):
        outb(ctx, port, ICW1_EDGE_CASCADE_ICW4)
        outb(ctx, port + 1, vector)
        outb(ctx, port + 1, icw3)
        outb(ctx, port + 1, ICW4_8086)
    outb(ctx, 0x21, MASTER_MASK)
    outb(ctx, 0xA1, SLAVE_MASK)
    outb(ctx, 0x43, PIT_CW_CH0_MODE3)
    outb(ctx, 0x40, 0x00)
    outb(ctx, 0x40, 0x00)

    # 6. Video.
    m[BDA_VGA_FLAGS] = video.VGA_FLAGS_DEFAULT
    video.set_mode(ctx, 3)


_DRIVES = {"a": (False, 0), "b": (False, 1), "c": (True, 0), "d": (True, 1)}


def boot(ctx, order: str):
    """Load the boot sector of the first bootable drive in ``order`` ("a",
    "b": floppies; "c", "d": hard disks) and set the registers: CS:IP =
    0000:7C00, DL = BIOS drive number, SS:SP = 0000:7C00, other segments
    0, IF set.  Returns ``ctx.regs``.

    A floppy boot sector needs no 55AAh signature on a real BIOS, but one
    without it is almost always an unformatted or data disk, so this BIOS
    skips it and says so.
    """
    if not order:
        raise BiosConfigError("boot order is empty (expected drive letters such as 'ac')")
    why: list[str] = []
    for letter in order.lower():
        if letter not in _DRIVES:
            raise BiosConfigError(f"boot order {order!r}: unknown drive {letter!r} (use a, b, c, d)")
        hard, index = _DRIVES[letter]
        drives = ctx.devices.disks if hard else ctx.devices.floppies
        img = drives[index] if index < len(drives) else None
        if img is None:
            why.append(f"{letter}: no {'disk' if hard else 'diskette'}")
            continue
        sector = img.read(0, 1)
        if sector[510:512] != BOOT_SIGNATURE:
            why.append(f"{letter}: {img.path} has no boot signature (55 aa) in sector 0")
            continue
        write(ctx, BOOT_ADDR, sector)
        r = ctx.regs
        r.set_gprs([0] * 10)
        r.set_segs([0] * 6)
        r.dl = (0x80 if hard else 0x00) + index
        r.eip = BOOT_ADDR
        r.esp = BOOT_STACK
        r.eflags = BOOT_EFLAGS
        ctx.log.info("bios: booting from %s (%s, drive %02Xh)", letter, img.path, r.dl)
        return r
    raise NoBootableDevice("no bootable device: " + "; ".join(why))


def _bootstrap(ctx) -> None:
    """Boot the machine: the context's direct-boot hook when it has one (a
    kernel loaded by the monitor, ``monitor/linux``: it writes guest RAM and
    sets ``ctx.regs`` itself), else the first bootable drive."""
    direct = getattr(ctx, "direct_boot", None)
    if direct is not None:
        direct(ctx)
    else:
        boot(ctx, ctx.boot_order)


def post_and_boot(ctx) -> None:
    """Service F0h: POST, then boot in ``ctx.boot_order`` (raises
    ``NoBootableDevice`` to the run loop: a host configuration problem)."""
    post(ctx)
    _bootstrap(ctx)


def int19(ctx) -> None:
    """Service 19h, the bootstrap loader called by the guest.  On failure the
    stub goes on to int 18h, which tells the user and waits for a key."""
    try:
        _bootstrap(ctx)
    except NoBootableDevice as exc:
        once(ctx, f"int 19h: {exc}")


NO_BOOT_MESSAGE = b"\r\nNo bootable device -- insert a boot disk and press a key\r\n"


def int18(ctx) -> None:
    """Service 18h: IBM's ROM BASIC entry; here a message on the screen."""
    page = video.active_page(ctx)
    for ch in NO_BOOT_MESSAGE:
        video.teletype(ctx, ch, page)
