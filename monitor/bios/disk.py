"""int 13h: floppy and hard disk services on disk images.

Function numbers, register conventions and status codes from Ralf Brown's
Interrupt List (INT 13; status table 00234) and the Phoenix "BIOS Enhanced
Disk Drive Specification" 1.1 for the extensions (AH=41h-48h).  Drives
00h/01h are ``ctx.devices.floppies[0/1]``, drives 80h, 81h, ... are
``ctx.devices.disks[0, 1, ...]``; an entry of None is an absent drive.
Sectors move directly between the image (``devices.disk.RawImage``: reads
come from the file, writes go to its copy-on-write overlay unless it was
opened writable) and guest RAM.

Every function returns its status in AH with CF set on error and records
it in the BDA (0x441 for floppies, 0x474 for hard disks), where AH=01h
reads it back.

Implemented: 00h reset, 01h last status, 02h read, 03h write, 04h verify
(CHS), 05h format (refused), 08h drive parameters (floppies: type in BL,
ES:DI -> diskette parameter table), 09h/0Ch/0Dh/10h/11h/14h hard-disk
housekeeping (succeed), 15h drive type, 16h change line ("not changed"),
17h/18h floppy media type, 41h EDD installation check, 42h/43h/44h
extended read/write/verify, 47h extended seek, 48h extended drive
parameters (hard disks).

Not emulated, deliberately: the 64 KiB DMA boundary error (status 09h;
transfers are linear and never fail on it), the floppy end-of-cylinder
limit on multi-sector transfers (like SeaBIOS and QEMU, a transfer may run
on across heads and cylinders up to the end of the disk), the floppy
controller (no IRQ6, no motor), format track, and EDD for floppies.
"""

from __future__ import annotations

import struct

from .memory import (
    BDA_FLOPPY_STATUS, BDA_HD_STATUS, ROM_SEGMENT, once, read, real_addr, wr16, write,
)
from . import rom

SECTOR = 512

# --- status codes (AH) ---------------------------------------------------------------
ST_OK = 0x00
ST_BAD_COMMAND = 0x01        # invalid function or parameter
ST_WRITE_PROTECTED = 0x03
ST_SECTOR_NOT_FOUND = 0x04   # sector not found / read error
ST_MEDIA_TYPE = 0x0C         # unsupported track or invalid media
ST_NOT_READY = 0x80          # time-out: drive not ready (no diskette)

# --- drive types (AH=15h) ------------------------------------------------------------
TYPE_NONE = 0x00
TYPE_FLOPPY_CHANGELINE = 0x02
TYPE_FIXED = 0x03

# --- EDD -----------------------------------------------------------------------------
EDD_VERSION = 0x21           # EDD 1.1
EDD_SUPPORT_FIXED = 0x0001   # AH=42h-44h, 47h, 48h
EDD_INFO_CHS_VALID = 0x0002  # AH=48h flags: the CHS fields are valid
MAX_CHS_CYLINDERS = 1024


def _drive(ctx, dl: int):
    """(image or None, is_hard_disk) for BIOS drive number ``dl``."""
    if dl & 0x80:
        disks = ctx.devices.disks
        i = dl - 0x80
        return (disks[i] if i < len(disks) else None), True
    floppies = ctx.devices.floppies
    return (floppies[dl] if dl < len(floppies) else None), False


def _count(drives) -> int:
    return sum(1 for d in drives if d is not None)


def _finish(ctx, hard: bool, status: int) -> None:
    r = ctx.regs
    r.ah = status
    r.cf = status != ST_OK
    ctx.mem[BDA_HD_STATUS if hard else BDA_FLOPPY_STATUS] = status


def _absent(ctx, hard: bool) -> None:
    # No diskette in a floppy drive times out; a hard disk number with no
    # disk is an invalid parameter.
    _finish(ctx, hard, ST_BAD_COMMAND if hard else ST_NOT_READY)


def _transfer(ctx, img, lba: int, count: int, addr: int, writing: bool) -> int:
    """Move ``count`` sectors between LBA ``lba`` and RAM at ``addr``;
    returns how many lie inside the disk and were moved."""
    n = max(0, min(count, img.sector_count - lba))
    if n:
        if writing:
            img.write(lba, read(ctx, addr, n * SECTOR))
        else:
            write(ctx, addr, img.read(lba, n))
    return n


def _chs_rw(ctx, img, hard: bool, fn: int) -> None:
    """AH=02h/03h/04h: AL sectors from cylinder CH (+ CL bits 7-6 as bits
    9-8), sector CL bits 5-0, head DH, to/from ES:BX."""
    r = ctx.regs
    count = r.al
    cyl = r.ch | ((r.cl & 0xC0) << 2)
    sector = r.cl & 0x3F
    head = r.dh
    if count == 0 or count > 128:
        r.al = 0
        _finish(ctx, hard, ST_BAD_COMMAND)
        return
    g = img.geometry
    if not (cyl < g.cylinders and head < g.heads and 1 <= sector <= g.sectors):
        r.al = 0
        _finish(ctx, hard, ST_SECTOR_NOT_FOUND)
        return
    lba = (cyl * g.heads + head) * g.sectors + sector - 1
    if fn == 0x04:
        done = max(0, min(count, img.sector_count - lba))
    else:
        done = _transfer(ctx, img, lba, count, real_addr(ctx, r.es, r.bx), fn == 0x03)
    r.al = done
    _finish(ctx, hard, ST_OK if done == count else ST_SECTOR_NOT_FOUND)


def _params(ctx, img, hard: bool) -> None:
    """AH=08h: CH = max cylinder bits 7-0, CL = sectors per track | max
    cylinder bits 9-8 << 6, DH = max head, DL = number of drives; floppies
    also BL = drive type and ES:DI -> diskette parameter table."""
    r = ctx.regs
    g = img.geometry
    cyls = min(g.cylinders, MAX_CHS_CYLINDERS)
    maxcyl = cyls - 1
    r.ch = maxcyl & 0xFF
    r.cl = (g.sectors & 0x3F) | ((maxcyl >> 2) & 0xC0)
    r.dh = g.heads - 1
    if hard:
        r.dl = _count(ctx.devices.disks)
    else:
        r.dl = _count(ctx.devices.floppies)
        r.bl = g.cmos_type
        r.bh = 0
        r.es = ROM_SEGMENT
        r.di = rom.floppy_table_offset(g.cmos_type)
    r.al = 0
    _finish(ctx, hard, ST_OK)


def _packet(ctx):
    """The EDD disk address packet at DS:SI: (count, buffer address, LBA,
    packet address), or None if it is malformed."""
    r = ctx.regs
    p = real_addr(ctx, r.ds, r.si)
    raw = read(ctx, p, 0x18)
    size = raw[0]
    if size < 0x10:
        return None
    count, off, seg, lba = struct.unpack_from("<HHHQ", raw, 2)
    if size >= 0x18 and seg == 0xFFFF and off == 0xFFFF:
        addr = struct.unpack_from("<Q", raw, 0x10)[0]     # EDD 3.0 flat 64-bit buffer
    else:
        addr = real_addr(ctx, seg, off)
    return count, addr, lba, p


def _extended_rw(ctx, img, fn: int) -> None:
    pkt = _packet(ctx)
    if pkt is None:
        _finish(ctx, True, ST_BAD_COMMAND)
        return
    count, addr, lba, p = pkt
    if lba >= img.sector_count and count:
        if p + 4 <= len(ctx.mem):
            wr16(ctx.mem, p + 2, 0)
        _finish(ctx, True, ST_SECTOR_NOT_FOUND)
        return
    if fn == 0x44:
        done = max(0, min(count, img.sector_count - lba))
    else:
        done = _transfer(ctx, img, lba, count, addr, fn == 0x43)
    if p + 4 <= len(ctx.mem):
        wr16(ctx.mem, p + 2, done)           # blocks actually transferred
    _finish(ctx, True, ST_OK if done == count else ST_SECTOR_NOT_FOUND)


def _extended_params(ctx, img) -> None:
    """AH=48h: result buffer at DS:SI, its first word the caller's size."""
    r = ctx.regs
    p = real_addr(ctx, r.ds, r.si)
    size = read(ctx, p, 2)
    size = size[0] | (size[1] << 8)
    if size < 0x1A:
        _finish(ctx, True, ST_BAD_COMMAND)
        return
    g = img.geometry
    out = struct.pack("<HHIIIQH", 0x1A, EDD_INFO_CHS_VALID, g.cylinders, g.heads, g.sectors,
                      img.sector_count, SECTOR)
    if size >= 0x1E:
        # EDD 1.1 device parameter table extension: none (FFFF:FFFF).
        out = struct.pack("<H", 0x1E) + out[2:] + b"\xff\xff\xff\xff"
    write(ctx, p, out, code=False)
    _finish(ctx, True, ST_OK)


def int13(ctx) -> None:
    r = ctx.regs
    fn = r.ah
    img, hard = _drive(ctx, r.dl)

    # Functions that also answer for absent drives.
    if fn == 0x01:
        status = ctx.mem[BDA_HD_STATUS if hard else BDA_FLOPPY_STATUS]
        r.ah = status
        r.cf = status != ST_OK
        return
    if fn == 0x15:
        if img is None:
            r.ah = TYPE_NONE
        elif hard:
            r.ah = TYPE_FIXED
            r.cx, r.dx = img.sector_count >> 16 & 0xFFFF, img.sector_count & 0xFFFF
        else:
            r.ah = TYPE_FLOPPY_CHANGELINE
        r.cf = False
        return
    if fn == 0x08 and img is None:
        # No such drive: report the count so a caller scanning drives stops.
        r.ax = r.cx = r.dh = 0
        r.dl = _count(ctx.devices.disks if hard else ctx.devices.floppies)
        _finish(ctx, hard, ST_BAD_COMMAND)
        return
    if img is None:
        _absent(ctx, hard)
        return

    if fn == 0x00:
        _finish(ctx, hard, ST_OK)
    elif fn in (0x02, 0x03, 0x04):
        _chs_rw(ctx, img, hard, fn)
    elif fn == 0x05:
        once(ctx, "int 13h AH=05h: format track is not emulated")
        _finish(ctx, hard, ST_BAD_COMMAND)
    elif fn == 0x08:
        _params(ctx, img, hard)
    elif fn == 0x16 and not hard:
        _finish(ctx, hard, ST_OK)              # change line: not changed
    elif fn == 0x17 and not hard:
        _finish(ctx, hard, ST_OK)              # set DASD type for format: accepted
    elif fn == 0x18 and not hard:
        # Set media type for format: CH = max cylinder, CL = sectors per track.
        g = img.geometry
        maxcyl = r.ch | ((r.cl & 0xC0) << 2)
        if maxcyl == g.cylinders - 1 and (r.cl & 0x3F) == g.sectors:
            r.es, r.di = ROM_SEGMENT, rom.floppy_table_offset(g.cmos_type)
            _finish(ctx, hard, ST_OK)
        else:
            _finish(ctx, hard, ST_MEDIA_TYPE)
    elif hard and fn in (0x09, 0x0C, 0x0D, 0x10, 0x11, 0x14, 0x47):
        # Initialise parameters, seek, alternate reset, test ready,
        # recalibrate, controller diagnostic, extended seek: nothing to do
        # for an image.
        _finish(ctx, hard, ST_OK)
    elif hard and fn == 0x41:
        if r.bx == 0x55AA:
            r.bx = 0xAA55
            r.ah = EDD_VERSION
            r.cx = EDD_SUPPORT_FIXED
            r.cf = False
        else:
            _finish(ctx, hard, ST_BAD_COMMAND)
    elif hard and fn in (0x42, 0x43, 0x44):
        _extended_rw(ctx, img, fn)
    elif hard and fn == 0x48:
        _extended_params(ctx, img)
    else:
        once(ctx, f"int 13h AH={fn:#04x} DL={r.dl:#04x}: function not emulated")
        _finish(ctx, hard, ST_BAD_COMMAND)
