"""int 15h: system services (memory sizing, A20, configuration, block move).

Function numbers and conventions from Ralf Brown's Interrupt List (INT 15)
and, for E820h, the ACPI specification ("System Address Map Interfaces").
Unsupported functions return CF=1 with AH=86h ("function not supported"),
which is what callers probe for.

Implemented: 24h A20 gate (via ``ctx.a20``), 4Fh keyboard intercept (CF
stays set: process the key), 53h APM (not present), 83h/86h waits (86h
returns at once: pacing guest time is the run loop's business; 83h is
unsupported), 85h SysReq, 87h block move (the descriptors of the caller's
GDT are parsed; the copy is done in guest RAM), 88h extended memory
size, 89h (unsupported), 90h/91h device busy/post, C0h configuration
table, C1h EBDA segment, C2h PS/2 mouse (not present), E801h, E820h.
"""

from __future__ import annotations

import struct

from .memory import (
    BDA_EBDA_SEGMENT, EBDA_BASE, ROM_BASE, ROM_SEGMENT, once, rd16, read, real_addr, write,
)
from . import rom

# --- status codes ----------------------------------------------------------------------
AH_UNSUPPORTED = 0x86
AH_APM_NOT_PRESENT = 0x86
AH_A20_NOT_SUPPORTED = 0x86
AH_MOVE_OK = 0x00
AH_MOVE_GATE_FAILED = 0x03       # block move: A20 failed / bad parameters

# --- E820 ------------------------------------------------------------------------------------
SMAP = 0x534D4150                # 'SMAP'
E820_RAM = 1                     # usable by the OS
E820_RESERVED = 2                # in use or not memory
E820_ENTRY = 20                  # base (8), length (8), type (4)
E820_ENTRY_ACPI3 = 24            # + extended attributes (bit 0 = entry valid)
VGA_HOLE = 0xA0000               # video memory and adapter ROMs up to the BIOS
ONE_MB = 0x100000
SIXTEEN_MB = 0x1000000


def e820_map(memory_size: int) -> list[tuple[int, int, int]]:
    """The system address map as (base, length, type), sorted, no overlaps,
    covering 0..max(memory_size, 1 MiB) without gaps."""
    entries = [
        (0, EBDA_BASE, E820_RAM),                           # conventional memory
        (EBDA_BASE, VGA_HOLE - EBDA_BASE, E820_RESERVED),   # EBDA
        (VGA_HOLE, ROM_BASE - VGA_HOLE, E820_RESERVED),     # video memory, option ROMs
        (ROM_BASE, ONE_MB - ROM_BASE, E820_RESERVED),       # this BIOS
    ]
    if memory_size > ONE_MB:
        entries.append((ONE_MB, memory_size - ONE_MB, E820_RAM))
    return entries


def _e820(ctx) -> None:
    """EAX=E820h, EDX='SMAP', EBX = continuation (0 = first), ECX = buffer
    size, ES:DI = buffer.  Returns EAX='SMAP', ECX = bytes stored, EBX =
    next continuation, 0 after the last entry."""
    r = ctx.regs
    entries = e820_map(ctx.memory_size)
    if r.edx != SMAP or r.ecx < E820_ENTRY or r.ebx >= len(entries):
        r.ah = AH_UNSUPPORTED
        r.cf = True
        return
    base, length, kind = entries[r.ebx]
    data = struct.pack("<QQI", base, length, kind)
    if r.ecx >= E820_ENTRY_ACPI3:
        data += struct.pack("<I", 1)      # ACPI 3.0 extended attributes: entry valid
    write(ctx, real_addr(ctx, r.es, r.di), data, code=False)
    r.eax = SMAP
    r.ecx = len(data)
    r.ebx = r.ebx + 1 if r.ebx + 1 < len(entries) else 0
    r.cf = False


def _extended_kb(memory_size: int) -> int:
    return max(0, memory_size - ONE_MB) // 1024


def _block_move(ctx) -> None:
    """AH=87h: copy CX words between the addresses in descriptors 2 (source,
    GDT+10h) and 3 (destination, GDT+18h) of the table at ES:SI.  The BIOS
    would enter protected mode to do it; the monitor copies directly."""
    r = ctx.regs
    gdt = read(ctx, real_addr(ctx, r.es, r.si), 0x30)

    def base(desc: bytes) -> int:
        return desc[2] | (desc[3] << 8) | (desc[4] << 16) | (desc[7] << 24)

    src, dst = base(gdt[0x10:0x18]), base(gdt[0x18:0x20])
    count = r.cx * 2
    if r.cx > 0x8000:
        r.ah = AH_MOVE_GATE_FAILED
        r.cf = True
        return
    size = len(ctx.mem)
    if src + count > size or dst + count > size:
        once(ctx, f"int 15h AH=87h: move {src:#x} -> {dst:#x} ({count} bytes) is outside RAM")
        r.ah = AH_MOVE_GATE_FAILED
        r.cf = True
        return
    write(ctx, dst, read(ctx, src, count))
    r.ah = AH_MOVE_OK
    r.cf = False


def int15(ctx) -> None:
    r = ctx.regs
    fn = r.ah
    r.cf = False
    if fn == 0x4F:
        r.cf = True                        # keyboard intercept: process the key
    elif fn == 0x24:
        sub = r.al
        if sub == 0x00:
            ctx.a20 = False
            r.ah = 0
        elif sub == 0x01:
            ctx.a20 = True
            r.ah = 0
        elif sub == 0x02:
            r.ah = 0
            r.al = 1 if ctx.a20 else 0
        elif sub == 0x03:
            r.ah = 0
            r.bx = 0x0003                  # supported via the 8042 and port 92h
        else:
            r.ah = AH_A20_NOT_SUPPORTED
            r.cf = True
    elif fn == 0x88:
        r.ax = min(_extended_kb(ctx.memory_size), 0xFFFF)
    elif fn == 0xE8 and r.al == 0x01:
        # E801h: AX/CX = KiB between 1 and 16 MiB (max 3C00h), BX/DX =
        # 64 KiB blocks above 16 MiB.
        kb = min(_extended_kb(ctx.memory_size), 0x3C00)
        blocks = min(max(0, ctx.memory_size - SIXTEEN_MB) // 0x10000, 0xFFFF)
        r.ax = r.cx = kb
        r.bx = r.dx = blocks
    elif fn == 0xE8 and r.al == 0x20:
        _e820(ctx)
    elif fn == 0xC0:
        r.es, r.bx = ROM_SEGMENT, rom.OFF_CONFIG_TABLE
        r.ah = 0
    elif fn == 0xC1:
        r.es = rd16(ctx.mem, BDA_EBDA_SEGMENT)
    elif fn == 0x87:
        _block_move(ctx)
    elif fn == 0x86:
        r.ah = 0                           # wait CX:DX microseconds: returns at once
    elif fn in (0x90, 0x91):
        r.ah = 0                           # device busy / interrupt complete
    elif fn == 0x85:
        r.ah = 0                           # SysReq pressed/released: no action
    elif fn == 0x53:
        r.ah = AH_APM_NOT_PRESENT          # no APM BIOS
        r.cf = True
    elif fn == 0xC2:
        r.ah = AH_UNSUPPORTED              # no PS/2 pointing device interface
        r.cf = True
    else:
        if fn not in (0x83, 0x89, 0x84, 0xC3, 0xC4, 0xE9, 0xEC):
            once(ctx, f"int 15h AX={r.ax:#06x}: function not emulated")
        r.ah = AH_UNSUPPORTED
        r.cf = True

