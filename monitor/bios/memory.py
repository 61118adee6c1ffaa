"""Guest memory access for the BIOS services, and the fixed low-memory layout.

Addresses are physical.  Real-mode ``segment:offset`` pairs become
physical addresses through ``real_addr``, which applies the A20 gate (with
A20 off, bit 20 is forced to 0: FFFF:0010 is 0x00000 again, as on an 8086).

Guest behaviour never raises here: an access past the end of RAM reads as a
floating bus (0xFF) and a write there is dropped, both logged once.

Layout of the first MiB as this BIOS leaves it (IBM PC/AT Technical
Reference, "BIOS data area"; Ralf Brown's Interrupt List, MEMORY.LST):

  0x00000-0x003FF  interrupt vector table (256 x segment:offset)
  0x00400-0x004FF  BIOS data area (BDA), segment 0x40; fields below
  0x00500          print-screen status byte
  0x07C00          boot sector
  0x9FC00-0x9FFFF  extended BIOS data area (EBDA, 1 KiB; segment at 0x40E)
  0xA0000-0xBFFFF  video memory (text mode: 0xB8000, 8 pages of 4 KiB)
  0xF0000-0xFFFFF  this ROM (rom.py)
"""

from __future__ import annotations

import logging
import struct
import weakref

log = logging.getLogger("hybrid86.bios")

IVT_BASE = 0x00000
BDA_SEGMENT = 0x0040
BDA_BASE = 0x00400
EBDA_BASE = 0x9FC00
EBDA_SEGMENT = EBDA_BASE >> 4
EBDA_SIZE_KB = 1
BASE_MEMORY_KB = EBDA_BASE // 1024         # 639: what int 12h reports
VIDEO_TEXT_BASE = 0xB8000
ROM_BASE = 0xF0000
ROM_SEGMENT = 0xF000
ROM_SIZE = 0x10000
BOOT_ADDR = 0x7C00
PRINT_SCREEN_STATUS = 0x500

# --- BDA fields (physical addresses) -----------------------------------------
BDA_COM_PORTS = 0x400       # 4 words: I/O base of COM1..COM4 (0 = absent)
BDA_LPT_PORTS = 0x408       # 3 words: I/O base of LPT1..LPT3
BDA_EBDA_SEGMENT = 0x40E    # word: segment of the EBDA
BDA_EQUIPMENT = 0x410       # word: equipment list (int 11h)
BDA_MEMORY_KB = 0x413       # word: base memory in KiB (int 12h)
BDA_KBD_FLAGS1 = 0x417      # byte: shift state (KF1_*)
BDA_KBD_FLAGS2 = 0x418      # byte: keys held (KF2_*)
BDA_ALT_KEYPAD = 0x419      # byte: Alt + keypad digits accumulator
BDA_KBD_HEAD = 0x41A        # word: offset (from 0x400) of the next key to read
BDA_KBD_TAIL = 0x41C        # word: offset of the next free slot
BDA_KBD_BUFFER = 0x41E      # 16 words: the default type-ahead buffer
BDA_FLOPPY_RECAL = 0x43E    # byte: floppy recalibrate status
BDA_FLOPPY_MOTOR = 0x43F    # byte: floppy motor status (bits 3-0 = drives on)
BDA_FLOPPY_MOTOR_TIMEOUT = 0x440  # byte: ticks until the motors turn off
BDA_FLOPPY_STATUS = 0x441   # byte: status of the last floppy int 13h
BDA_VIDEO_MODE = 0x449      # byte: current video mode
BDA_VIDEO_COLUMNS = 0x44A   # word: columns per row
BDA_VIDEO_PAGE_SIZE = 0x44C # word: bytes per video page
BDA_VIDEO_PAGE_START = 0x44E  # word: offset of the active page in video memory
BDA_CURSOR_POS = 0x450      # 8 words: cursor (column, row) per page
BDA_CURSOR_TYPE = 0x460     # word: cursor start (high) / end (low) scan line
BDA_VIDEO_ACTIVE_PAGE = 0x462  # byte
BDA_CRTC_PORT = 0x463       # word: CRTC index port (0x3D4 colour, 0x3B4 mono)
BDA_CRT_MODE_REG = 0x465    # byte: value of the CGA mode control register
BDA_CRT_PALETTE = 0x466     # byte: value of the CGA palette register
BDA_UNEXPECTED_IRQ = 0x46B  # byte: last unexpected IRQ (IBM "INTR_FLAG")
BDA_TIMER_TICKS = 0x46C     # dword: IRQ0 ticks since midnight
BDA_TIMER_ROLLOVER = 0x470  # byte: midnight passed since the last int 1Ah/00h read
BDA_BREAK_FLAG = 0x471      # byte: bit 7 = Ctrl-Break was pressed
BDA_RESET_FLAG = 0x472      # word: 0x1234 = warm boot (skip memory test)
BDA_HD_STATUS = 0x474       # byte: status of the last hard-disk int 13h
BDA_HD_COUNT = 0x475        # byte: number of hard disks
BDA_LPT_TIMEOUT = 0x478     # 4 bytes: printer time-out counters
BDA_COM_TIMEOUT = 0x47C     # 4 bytes: serial time-out counters
BDA_KBD_START = 0x480       # word: offset of the keyboard buffer start
BDA_KBD_END = 0x482         # word: offset just past its end
BDA_VIDEO_ROWS = 0x484      # byte: rows on screen - 1
BDA_CHAR_HEIGHT = 0x485     # word: scan lines per character
BDA_VIDEO_CTL = 0x487       # byte: EGA/VGA control (bit 0 = cursor emulation off)
BDA_VIDEO_SWITCHES = 0x488  # byte: EGA/VGA feature switches
BDA_VGA_FLAGS = 0x489       # byte: VGA mode-set option flags
BDA_DCC_INDEX = 0x48A       # byte: display combination code index
BDA_KBD_FLAGS3 = 0x496      # byte: 101-key keyboard state (KF3_*)
BDA_KBD_LEDS = 0x497        # byte: LED state and keyboard command status (KF4_*)

# Shift flags at 0x417.
KF1_RSHIFT = 0x01
KF1_LSHIFT = 0x02
KF1_CTRL = 0x04       # either Ctrl down
KF1_ALT = 0x08        # either Alt down
KF1_SCROLL = 0x10     # Scroll Lock active
KF1_NUM = 0x20        # Num Lock active
KF1_CAPS = 0x40       # Caps Lock active
KF1_INSERT = 0x80     # Insert mode active
# Keys held at 0x418.
KF2_LCTRL = 0x01
KF2_LALT = 0x02
KF2_SYSREQ = 0x04
KF2_PAUSE = 0x08
KF2_SCROLL = 0x10
KF2_NUM = 0x20
KF2_CAPS = 0x40
KF2_INSERT = 0x80
# 101-key state at 0x496.
KF3_LAST_E1 = 0x01
KF3_LAST_E0 = 0x02
KF3_RCTRL = 0x04
KF3_RALT = 0x08
KF3_101KEY = 0x10     # an enhanced (101/102-key) keyboard is installed
# LEDs and command status at 0x497.
KF4_LEDS = 0x07       # bits 2-0: Caps, Num, Scroll LED as last sent
KF4_ACK = 0x10        # the keyboard acknowledged a command
KF4_RESEND = 0x20     # the keyboard asked for a resend

# Equipment word bits (int 11h).
EQ_FLOPPY = 0x0001        # floppy drives present
EQ_FPU = 0x0002           # x87 present
EQ_MOUSE = 0x0004         # PS/2 pointing device
EQ_VIDEO_EGA = 0x0000     # bits 5-4: 00 = EGA/VGA (own BIOS)
EQ_FLOPPY_SHIFT = 6       # bits 7-6: floppy drives - 1
EQ_SERIAL_SHIFT = 9       # bits 11-9: serial ports
EQ_PRINTER_SHIFT = 14     # bits 15-14: printers

TICKS_PER_DAY = 0x1800B0  # 1573040: IRQ0 ticks in 24 h at 1193182/65536 Hz


def real_addr(ctx, seg: int, off: int) -> int:
    """Physical address of real-mode ``seg:off`` with the A20 gate applied."""
    addr = ((seg & 0xFFFF) << 4) + (off & 0xFFFF)
    if not ctx.a20:
        addr &= ~0x100000
    return addr


_SEEN: "weakref.WeakKeyDictionary[object, set]" = weakref.WeakKeyDictionary()
_SEEN_BY_ID: dict[int, set] = {}


def once(ctx, what: str) -> None:
    """Log ``what`` as a warning the first time it happens on this machine
    (later occurrences go to the debug log)."""
    try:
        seen = _SEEN.setdefault(ctx, set())
    except TypeError:  # a context that cannot be weakly referenced
        seen = _SEEN_BY_ID.setdefault(id(ctx), set())
    if what in seen:
        ctx.log.debug("bios: %s", what)
    else:
        seen.add(what)
        ctx.log.warning("bios: %s", what)


def read(ctx, addr: int, length: int) -> bytes:
    """``length`` bytes at physical ``addr``; bytes beyond RAM read as 0xFF."""
    mem = ctx.mem
    size = len(mem)
    if addr < 0:
        addr &= 0xFFFFFFFF
    if addr + length <= size:
        return bytes(mem[addr:addr + length])
    once(ctx, f"read past the end of RAM at {addr:#x} (floating bus)")
    inside = max(0, min(length, size - addr))
    return bytes(mem[addr:addr + inside]) + b"\xff" * (length - inside)


def write(ctx, addr: int, data: bytes, code: bool = True) -> None:
    """Write ``data`` at physical ``addr`` (the part beyond RAM is dropped).

    ``code``: the bytes may be executed later (disk data, boot sector), so
    the run loop is told to drop translations of them.
    """
    mem = ctx.mem
    size = len(mem)
    n = len(data)
    if addr + n > size:
        once(ctx, f"write past the end of RAM at {addr:#x} dropped")
        n = max(0, size - addr)
        data = data[:n]
    if n:
        mem[addr:addr + n] = data
        if code:
            ctx.memory_written(addr, n)


def rd8(mem, addr: int) -> int:
    return mem[addr]


def wr8(mem, addr: int, value: int) -> None:
    mem[addr] = value & 0xFF


def rd16(mem, addr: int) -> int:
    return mem[addr] | (mem[addr + 1] << 8)


def wr16(mem, addr: int, value: int) -> None:
    mem[addr] = value & 0xFF
    mem[addr + 1] = (value >> 8) & 0xFF


def rd32(mem, addr: int) -> int:
    return struct.unpack_from("<I", mem, addr)[0]


def wr32(mem, addr: int, value: int) -> None:
    struct.pack_into("<I", mem, addr, value & 0xFFFFFFFF)


def set_vector(mem, vector: int, seg: int, off: int) -> None:
    wr16(mem, IVT_BASE + 4 * vector, off)
    wr16(mem, IVT_BASE + 4 * vector + 2, seg)


def get_vector(mem, vector: int) -> tuple[int, int]:
    """(segment, offset) of interrupt ``vector``."""
    return rd16(mem, 4 * vector + 2), rd16(mem, 4 * vector)


def push16(ctx, value: int) -> None:
    """Push a word on the guest's real-mode stack SS:SP."""
    r = ctx.regs
    r.sp = (r.sp - 2) & 0xFFFF
    a = real_addr(ctx, r.ss, r.sp)
    write(ctx, a, bytes((value & 0xFF, (value >> 8) & 0xFF)), code=False)


def raise_interrupt(ctx, vector: int) -> None:
    """Deliver software interrupt ``vector`` as ``int n`` would at the current
    CS:IP: push FLAGS, CS, IP; clear IF and TF; jump through the IVT.

    The handler's ``iret`` returns to the instruction after the callout.
    """
    r = ctx.regs
    push16(ctx, r.flags)
    push16(ctx, r.cs)
    push16(ctx, r.ip)
    r.if_ = False
    r.tf = False
    seg, off = get_vector(ctx.mem, vector)
    r.cs = seg
    r.eip = off
