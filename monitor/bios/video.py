"""int 10h: video services for the 80x25 colour text mode.

Function numbers from Ralf Brown's Interrupt List (INT 10) and the IBM VGA
Technical Reference.  The service writes characters straight into text
memory at 0xB8000 (8 pages of 4 KiB), keeps the BIOS data area up to date
(mode 0x449, columns 0x44A, page size 0x44C, page start 0x44E, cursor
positions 0x450, cursor shape 0x460, active page 0x462, CRTC port 0x463,
rows-1 0x484) and programs the VGA through its ports: mode registers, the
display start address (CRTC 0Ch/0Dh) for page changes and the hardware
cursor (CRTC 0Ah/0Bh shape, 0Eh/0Fh location).

Implemented: AH=00h set mode (2 and 3; 7 is shown as mode 3; others clear
the screen, keep mode 3 and are logged once), 01h cursor shape (with the
VGA's CGA cursor emulation), 02h/03h cursor position, 05h active page,
06h/07h scroll window up/down, 08h read character and attribute, 09h/0Ah
write character (and attribute) CX times, 0Eh teletype (BEL, BS, CR, LF,
wrap and scroll), 0Fh get mode, 10h palette and DAC (00h-03h, 07h, 08h,
10h, 12h, 15h, 17h), 11h font functions (30h font information; loading
fonts is accepted and ignored), 12h alternate select (BL=10h EGA
information, 30h-36h), 13h write string, 1Ah display combination (VGA
colour).

Not emulated: graphics modes and the pixel functions (0Ch/0Dh), 40-column
modes, other text geometries (rows and font heights), VESA (AH=4Fh leaves
AL unchanged, which callers read as "not supported"), 1Bh/1Ch state
functions, the beep for BEL.  The ROM fonts are blank (docs/bios.md).
"""

from __future__ import annotations

from devices.vga_text import (
    DEFAULT_DAC, MISC_MODE3, MODE3_ATTR, MODE3_CRTC, MODE3_GC, MODE3_SEQ,
)

from .memory import (
    BDA_CHAR_HEIGHT, BDA_CRT_MODE_REG, BDA_CRT_PALETTE, BDA_CRTC_PORT, BDA_CURSOR_POS,
    BDA_CURSOR_TYPE, BDA_DCC_INDEX, BDA_VGA_FLAGS, BDA_VIDEO_ACTIVE_PAGE, BDA_VIDEO_COLUMNS,
    BDA_VIDEO_CTL, BDA_VIDEO_MODE, BDA_VIDEO_PAGE_SIZE, BDA_VIDEO_PAGE_START, BDA_VIDEO_ROWS,
    BDA_VIDEO_SWITCHES, ROM_SEGMENT, VIDEO_TEXT_BASE, once, rd16, real_addr, wr16,
)
from .ports import inb, outb
from . import rom

COLUMNS = 80
ROWS = 25
PAGE_SIZE = 0x1000          # bytes per page: 80*25*2 rounded up to 4 KiB
PAGES = 8
TEXT_WINDOW = 0x8000        # 0xB8000-0xBFFFF
BLANK = 0x0720              # space on light grey
DEFAULT_CURSOR = 0x0607     # CGA-style start 6, end 7 (scaled to the 16-line cell)
CHAR_HEIGHT = 16

# CRTC registers used here.
CRTC_CURSOR_START = 0x0A
CRTC_CURSOR_END = 0x0B
CRTC_START_HIGH = 0x0C
CRTC_START_LOW = 0x0D
CRTC_CURSOR_HIGH = 0x0E
CRTC_CURSOR_LOW = 0x0F
CRTC_VRETRACE_END = 0x11

# Ports.
PORT_ATTR = 0x3C0
PORT_ATTR_READ = 0x3C1
PORT_MISC = 0x3C2
PORT_SEQ = 0x3C4
PORT_DAC_READ = 0x3C7
PORT_DAC_WRITE = 0x3C8
PORT_DAC_DATA = 0x3C9
PORT_GC = 0x3CE
PORT_STATUS1 = 0x3DA

ATTR_MODE_CONTROL = 0x10
ATTR_OVERSCAN = 0x11
AMC_BLINK = 0x08
ATTR_PAS = 0x20

TEXT_MODES = (2, 3)

# Video BDA defaults after mode 3 (IBM VGA BIOS).
CRT_MODE_REG_MODE3 = 0x29   # CGA mode control: 80x25, video on, blink
CRT_PALETTE_MODE3 = 0x30
VIDEO_CTL_DEFAULT = 0x60    # 256 KiB, cursor emulation on
VIDEO_SWITCHES_DEFAULT = 0xF9
VGA_FLAGS_DEFAULT = 0x51    # 400 lines, VGA active, default palette loading on
VIDEO_CTL_NOCLEAR = 0x80    # 0x487 bit 7: the last mode set kept video memory
VIDEO_CTL_NO_EMULATION = 0x01
VGA_FLAGS_NO_PALETTE = 0x08
VGA_FLAGS_GREY = 0x02
DCC_VGA_COLOUR = 0x08       # display combination code: VGA with analog colour display


# -- BDA and hardware helpers ------------------------------------------------------------


def _crtc_out(ctx, index: int, value: int) -> None:
    port = rd16(ctx.mem, BDA_CRTC_PORT) or 0x3D4
    outb(ctx, port, index)
    outb(ctx, port + 1, value)


def _attr_out(ctx, index: int, value: int) -> None:
    inb(ctx, PORT_STATUS1)           # reset the index/data flip-flop
    outb(ctx, PORT_ATTR, index)
    outb(ctx, PORT_ATTR, value)
    outb(ctx, PORT_ATTR, ATTR_PAS)   # palette address source on: video enabled


def _attr_in(ctx, index: int) -> int:
    inb(ctx, PORT_STATUS1)
    outb(ctx, PORT_ATTR, index)
    value = inb(ctx, PORT_ATTR_READ)
    outb(ctx, PORT_ATTR, ATTR_PAS)
    return value


def active_page(ctx) -> int:
    return ctx.mem[BDA_VIDEO_ACTIVE_PAGE] % PAGES


def cursor(ctx, page: int) -> tuple[int, int]:
    """(row, column) of ``page``'s cursor from the BDA."""
    pos = rd16(ctx.mem, BDA_CURSOR_POS + 2 * (page % PAGES))
    return pos >> 8, pos & 0xFF


def _page_base(page: int) -> int:
    return VIDEO_TEXT_BASE + (page % PAGES) * PAGE_SIZE


def set_cursor(ctx, page: int, row: int, col: int) -> None:
    page %= PAGES
    wr16(ctx.mem, BDA_CURSOR_POS + 2 * page, ((row & 0xFF) << 8) | (col & 0xFF))
    if page == active_page(ctx):
        # The CRTC cursor location counts character cells from the start of
        # video memory, so it includes the page offset.
        cell = (page * PAGE_SIZE) // 2 + row * COLUMNS + col
        _crtc_out(ctx, CRTC_CURSOR_HIGH, (cell >> 8) & 0xFF)
        _crtc_out(ctx, CRTC_CURSOR_LOW, cell & 0xFF)


def _emulated_shape(ctx, shape: int) -> int:
    """CGA cursor emulation (IBM VGA; the algorithm SeaBIOS's vgabios uses):
    a shape given for an 8-line cell is scaled to the 16-line cell."""
    if ctx.mem[BDA_VIDEO_CTL] & VIDEO_CTL_NO_EMULATION:
        return shape
    start, end = (shape >> 8) & 0x3F, shape & 0x1F
    cheight = rd16(ctx.mem, BDA_CHAR_HEIGHT) or CHAR_HEIGHT
    if cheight <= 8 or end >= 8 or start >= 0x20:
        return shape
    if end != start + 1:
        start = ((start + 1) * cheight // 8) - 1
    else:
        start = ((end + 1) * cheight // 8) - 2
    end = ((end + 1) * cheight // 8) - 1
    return (start << 8) | end


def set_cursor_shape(ctx, shape: int) -> None:
    wr16(ctx.mem, BDA_CURSOR_TYPE, shape)
    hw = _emulated_shape(ctx, shape)
    # CH bit 5 (0x20) turns the cursor off (CRTC 0Ah bit 5).
    _crtc_out(ctx, CRTC_CURSOR_START, (hw >> 8) & 0x3F)
    _crtc_out(ctx, CRTC_CURSOR_END, hw & 0x1F)


def set_active_page(ctx, page: int) -> None:
    page %= PAGES
    ctx.mem[BDA_VIDEO_ACTIVE_PAGE] = page
    wr16(ctx.mem, BDA_VIDEO_PAGE_START, page * PAGE_SIZE)
    start = (page * PAGE_SIZE) // 2
    _crtc_out(ctx, CRTC_START_HIGH, start >> 8)
    _crtc_out(ctx, CRTC_START_LOW, start & 0xFF)
    row, col = cursor(ctx, page)
    set_cursor(ctx, page, row, col)


def _program_mode3(ctx) -> None:
    """Load the VGA registers of mode 3 through the ports (IBM VGA BIOS
    parameter table), in the order a VGA BIOS does: misc output, sequencer
    (held in reset while the clocking changes), CRTC (registers 0-7
    unprotected first), graphics controller, attribute controller, DAC."""
    outb(ctx, PORT_MISC, MISC_MODE3)
    outb(ctx, PORT_SEQ, 0)
    outb(ctx, PORT_SEQ + 1, 0x01)          # synchronous reset
    for i, v in enumerate(MODE3_SEQ[1:], start=1):
        outb(ctx, PORT_SEQ, i)
        outb(ctx, PORT_SEQ + 1, v)
    outb(ctx, PORT_SEQ, 0)
    outb(ctx, PORT_SEQ + 1, MODE3_SEQ[0])  # end of reset
    wr16(ctx.mem, BDA_CRTC_PORT, 0x3D4)
    _crtc_out(ctx, CRTC_VRETRACE_END, MODE3_CRTC[CRTC_VRETRACE_END] & 0x7F)
    for i, v in enumerate(MODE3_CRTC):
        _crtc_out(ctx, i, v)
    for i, v in enumerate(MODE3_GC):
        outb(ctx, PORT_GC, i)
        outb(ctx, PORT_GC + 1, v)
    inb(ctx, PORT_STATUS1)
    for i, v in enumerate(MODE3_ATTR):
        outb(ctx, PORT_ATTR, i)
        outb(ctx, PORT_ATTR, v)
    outb(ctx, PORT_ATTR, ATTR_PAS)
    if not ctx.mem[BDA_VGA_FLAGS] & VGA_FLAGS_NO_PALETTE:
        outb(ctx, PORT_DAC_WRITE, 0)
        for value in DEFAULT_DAC:
            outb(ctx, PORT_DAC_DATA, value)


def set_mode(ctx, mode: int) -> None:
    """AH=00h.  AL bit 7 set: keep the contents of video memory."""
    keep = bool(mode & 0x80)
    mode &= 0x7F
    if mode == 7:
        once(ctx, "int 10h: mode 7 (monochrome text) is shown as colour text mode 3")
        mode = 3
    elif mode not in TEXT_MODES:
        once(ctx, f"int 10h: video mode {mode:#04x} is not emulated; staying in text mode 3")
        mode = 3
    m = ctx.mem
    if not m[BDA_VGA_FLAGS]:
        m[BDA_VGA_FLAGS] = VGA_FLAGS_DEFAULT
    _program_mode3(ctx)
    m[BDA_VIDEO_MODE] = mode
    wr16(m, BDA_VIDEO_COLUMNS, COLUMNS)
    wr16(m, BDA_VIDEO_PAGE_SIZE, PAGE_SIZE)
    m[BDA_VIDEO_ROWS] = ROWS - 1
    wr16(m, BDA_CHAR_HEIGHT, CHAR_HEIGHT)
    ctl = m[BDA_VIDEO_CTL] & VIDEO_CTL_NO_EMULATION if m[BDA_VIDEO_CTL] else 0
    m[BDA_VIDEO_CTL] = VIDEO_CTL_DEFAULT | ctl | (VIDEO_CTL_NOCLEAR if keep else 0)
    m[BDA_VIDEO_SWITCHES] = VIDEO_SWITCHES_DEFAULT
    m[BDA_CRT_MODE_REG] = CRT_MODE_REG_MODE3
    m[BDA_CRT_PALETTE] = CRT_PALETTE_MODE3
    m[BDA_DCC_INDEX] = 0x0B
    for page in range(PAGES):
        wr16(m, BDA_CURSOR_POS + 2 * page, 0)
    if not keep:
        m[VIDEO_TEXT_BASE:VIDEO_TEXT_BASE + TEXT_WINDOW] = BLANK.to_bytes(2, "little") * (TEXT_WINDOW // 2)
    set_active_page(ctx, 0)
    set_cursor_shape(ctx, DEFAULT_CURSOR)


# -- text operations -------------------------------------------------------------------------


def _cell(page: int, row: int, col: int) -> int:
    return _page_base(page) + (row * COLUMNS + col) * 2


def scroll(ctx, lines: int, attr: int, top: int, left: int, bottom: int, right: int,
           up: bool = True, page: int | None = None) -> None:
    """AH=06h/07h: move the window's rows by ``lines`` (0 = clear the
    window) and fill the vacated rows with blanks of ``attr``."""
    if page is None:
        page = active_page(ctx)
    bottom, right = min(bottom, ROWS - 1), min(right, COLUMNS - 1)
    if top > bottom or left > right:
        return
    height = bottom - top + 1
    if lines == 0 or lines > height:
        lines = height
    m = ctx.mem
    width = (right - left + 1) * 2
    rows = range(top, bottom - lines + 1) if up else range(bottom, top + lines - 1, -1)
    for r in rows:
        src = _cell(page, r + lines if up else r - lines, left)
        dst = _cell(page, r, left)
        m[dst:dst + width] = bytes(m[src:src + width])
    blank = bytes((0x20, attr & 0xFF)) * (right - left + 1)
    cleared = range(bottom - lines + 1, bottom + 1) if up else range(top, top + lines)
    for r in cleared:
        dst = _cell(page, r, left)
        m[dst:dst + width] = blank


def teletype(ctx, ch: int, page: int, attr: int | None = None) -> None:
    """AH=0Eh on ``page``: BEL, BS, CR and LF move the cursor, other
    characters are written (attribute kept unless ``attr`` is given) and
    advance it; past the last column it wraps, past the last row the page
    scrolls up one line, filled with the attribute found at the cursor."""
    row, col = cursor(ctx, page)
    if ch == 0x07:
        pass                      # BEL: no speaker is emulated
    elif ch == 0x08:
        if col > 0:
            col -= 1
    elif ch == 0x0D:
        col = 0
    elif ch == 0x0A:
        row += 1
    else:
        at = _cell(page, row, col)
        ctx.mem[at] = ch
        if attr is not None:
            ctx.mem[at + 1] = attr
        col += 1
    if col >= COLUMNS:
        col = 0
        row += 1
    if row >= ROWS:
        row = ROWS - 1
        fill = ctx.mem[_cell(page, row, col) + 1]
        scroll(ctx, 1, fill, 0, 0, ROWS - 1, COLUMNS - 1, up=True, page=page)
    set_cursor(ctx, page, row, col)


def write_chars(ctx, page: int, ch: int, count: int, attr: int | None) -> None:
    """AH=09h/0Ah: ``count`` copies at the cursor, cursor not moved; the
    run continues on the following rows and stops at the end of the page."""
    row, col = cursor(ctx, page)
    start = (row * COLUMNS + col)
    count = max(0, min(count, ROWS * COLUMNS - start))
    at = _cell(page, row, col)
    m = ctx.mem
    if attr is None:
        for i in range(count):
            m[at + 2 * i] = ch
    else:
        m[at:at + 2 * count] = bytes((ch, attr & 0xFF)) * count


def write_string(ctx) -> None:
    """AH=13h: AL bit 0 = leave the cursor after the string, bit 1 = the
    string alternates characters and attributes; BH page, BL attribute,
    CX length, DH/DL row/column, ES:BP the string.  BEL, BS, CR and LF act
    as in teletype output (IBM VGA BIOS)."""
    r = ctx.regs
    page, mode = r.bh % PAGES, r.al
    saved = cursor(ctx, page)
    set_cursor(ctx, page, r.dh, r.dl)
    step = 2 if mode & 0x02 else 1
    for i in range(r.cx):
        a = real_addr(ctx, r.es, r.bp + i * step)
        ch = ctx.mem[a]
        attr = ctx.mem[real_addr(ctx, r.es, r.bp + i * step + 1)] if step == 2 else r.bl
        teletype(ctx, ch, page, attr if ch not in (7, 8, 10, 13) else None)
    if not mode & 0x01:
        set_cursor(ctx, page, *saved)


# -- palette (AH=10h) ----------------------------------------------------------------------------


def _palette(ctx) -> None:
    r = ctx.regs
    fn = r.al
    m = ctx.mem
    if fn == 0x00:                        # set one palette register
        _attr_out(ctx, r.bl & 0x1F, r.bh)
    elif fn == 0x01:                      # set overscan (border) colour
        _attr_out(ctx, ATTR_OVERSCAN, r.bh)
    elif fn == 0x02:                      # set all 16 palette registers + overscan from ES:DX
        base = real_addr(ctx, r.es, r.dx)
        for i in range(16):
            _attr_out(ctx, i, m[base + i])
        _attr_out(ctx, ATTR_OVERSCAN, m[base + 16])
    elif fn == 0x03:                      # BL=0: bright backgrounds, BL=1: blink
        v = _attr_in(ctx, ATTR_MODE_CONTROL)
        v = (v | AMC_BLINK) if r.bl & 1 else (v & ~AMC_BLINK)
        _attr_out(ctx, ATTR_MODE_CONTROL, v)
        m[BDA_CRT_MODE_REG] = (m[BDA_CRT_MODE_REG] | 0x20) if r.bl & 1 else (m[BDA_CRT_MODE_REG] & ~0x20)
    elif fn == 0x07:                      # read one palette register
        r.bh = _attr_in(ctx, r.bl & 0x1F)
    elif fn == 0x08:                      # read overscan
        r.bh = _attr_in(ctx, ATTR_OVERSCAN)
    elif fn == 0x10:                      # set DAC register BX to DH/CH/CL
        outb(ctx, PORT_DAC_WRITE, r.bl)
        for v in (r.dh, r.ch, r.cl):
            outb(ctx, PORT_DAC_DATA, v)
    elif fn == 0x12:                      # set CX DAC registers from BX, data at ES:DX
        base = real_addr(ctx, r.es, r.dx)
        outb(ctx, PORT_DAC_WRITE, r.bl)
        for i in range(3 * min(r.cx, 256)):
            outb(ctx, PORT_DAC_DATA, m[base + i])
    elif fn == 0x15:                      # read DAC register BX into DH/CH/CL
        outb(ctx, PORT_DAC_READ, r.bl)
        r.dh, r.ch, r.cl = (inb(ctx, PORT_DAC_DATA) for _ in range(3))
    elif fn == 0x17:                      # read CX DAC registers from BX to ES:DX
        base = real_addr(ctx, r.es, r.dx)
        outb(ctx, PORT_DAC_READ, r.bl)
        for i in range(3 * min(r.cx, 256)):
            m[base + i] = inb(ctx, PORT_DAC_DATA)
    else:
        once(ctx, f"int 10h AX={r.ax:#06x}: palette function not emulated")


# -- fonts (AH=11h) and alternate select (AH=12h) ------------------------------------------------


_FONT_POINTERS = {
    # BH -> (ROM offset, or an IVT vector whose contents are returned)
    0x02: rom.OFF_FONT14,
    0x03: rom.OFF_FONT8,
    0x04: rom.OFF_FONT8_HIGH,
    0x06: rom.OFF_FONT16,
}


def _font(ctx) -> None:
    r = ctx.regs
    fn = r.al
    if fn == 0x30:
        # Font information: ES:BP -> the selected font, CX = bytes per
        # character of the current font, DL = rows - 1.
        sel = r.bh
        if sel in (0x00, 0x01):
            vector = 0x1F if sel == 0 else 0x43
            off = rd16(ctx.mem, 4 * vector)
            seg = rd16(ctx.mem, 4 * vector + 2)
        elif sel in _FONT_POINTERS:
            seg, off = ROM_SEGMENT, _FONT_POINTERS[sel]
        elif sel in (0x05, 0x07):
            # 9-dot alternate glyph tables: an empty list (terminating 00h).
            seg, off = ROM_SEGMENT, rom.OFF_FONT_ALT_EMPTY
        else:
            once(ctx, f"int 10h AX=1130h: font pointer BH={sel:#04x} unknown")
            return
        r.es, r.bp = seg, off
        r.cx = rd16(ctx.mem, BDA_CHAR_HEIGHT) or CHAR_HEIGHT
        r.dl = ctx.mem[BDA_VIDEO_ROWS]
    elif fn in (0x04, 0x14, 0x03):
        pass                              # 8x16 ROM font / block select: what is shown already
    elif fn in (0x00, 0x10):
        once(ctx, "int 10h AH=11h: user font loaded but not shown (the VGA renders CP437 itself)")
    else:
        once(ctx, f"int 10h AX={r.ax:#06x}: font/geometry change not emulated (stays 80x25)")


def _alternate_select(ctx) -> None:
    r = ctx.regs
    m = ctx.mem
    fn = r.bl
    if fn == 0x10:
        # EGA information: BH = 0 colour mode, BL = 3 (256 KiB), CH =
        # feature bits, CL = switch settings.
        r.bh = 0x01 if rd16(m, BDA_CRTC_PORT) == 0x3B4 else 0x00
        r.bl = 0x03
        r.ch = 0x00
        r.cl = m[BDA_VIDEO_SWITCHES] & 0x0F
    elif fn == 0x30:                      # scan lines for text modes: only 400 is emulated
        if r.al == 0x02:
            r.al = 0x12
        else:
            once(ctx, f"int 10h AH=12h BL=30h: {('200', '350')[r.al & 1]} scan lines not emulated")
    elif fn == 0x31:                      # default palette loading on mode set
        m[BDA_VGA_FLAGS] = (m[BDA_VGA_FLAGS] | VGA_FLAGS_NO_PALETTE) if r.al else (m[BDA_VGA_FLAGS] & ~VGA_FLAGS_NO_PALETTE)
        r.al = 0x12
    elif fn == 0x32:                      # video addressing enable/disable: accepted
        r.al = 0x12
    elif fn == 0x33:                      # grey-scale summing flag (recorded only)
        m[BDA_VGA_FLAGS] = (m[BDA_VGA_FLAGS] & ~VGA_FLAGS_GREY) | (0 if r.al else VGA_FLAGS_GREY)
        r.al = 0x12
    elif fn == 0x34:                      # cursor emulation: AL=0 on, 1 off
        m[BDA_VIDEO_CTL] = (m[BDA_VIDEO_CTL] | VIDEO_CTL_NO_EMULATION) if r.al else (m[BDA_VIDEO_CTL] & ~VIDEO_CTL_NO_EMULATION)
        r.al = 0x12
    elif fn == 0x36:                      # screen on/off (sequencer clocking bit 5)
        outb(ctx, PORT_SEQ, 0x01)
        v = inb(ctx, PORT_SEQ + 1)
        outb(ctx, PORT_SEQ + 1, (v | 0x20) if r.al else (v & ~0x20))
        r.al = 0x12
    else:
        once(ctx, f"int 10h AH=12h BL={fn:#04x}: not emulated")


# -- the service --------------------------------------------------------------------------------


def int10(ctx) -> None:
    r = ctx.regs
    fn = r.ah
    if fn == 0x00:
        set_mode(ctx, r.al)
    elif fn == 0x01:
        set_cursor_shape(ctx, r.cx)
    elif fn == 0x02:
        set_cursor(ctx, r.bh, r.dh, r.dl)
    elif fn == 0x03:
        r.dh, r.dl = cursor(ctx, r.bh)
        r.cx = rd16(ctx.mem, BDA_CURSOR_TYPE)
    elif fn == 0x05:
        set_active_page(ctx, r.al)
    elif fn in (0x06, 0x07):
        scroll(ctx, r.al, r.bh, r.ch, r.cl, r.dh, r.dl, up=fn == 0x06)
    elif fn == 0x08:
        row, col = cursor(ctx, r.bh)
        at = _cell(r.bh, row, col)
        r.al, r.ah = ctx.mem[at], ctx.mem[at + 1]
    elif fn == 0x09:
        write_chars(ctx, r.bh, r.al, r.cx, r.bl)
    elif fn == 0x0A:
        write_chars(ctx, r.bh, r.al, r.cx, None)
    elif fn == 0x0E:
        # RBIL documents BH as the page; IBM's BIOS (and SeaBIOS) write to
        # the active page, which is what software relies on.
        teletype(ctx, r.al, active_page(ctx))
    elif fn == 0x0F:
        r.al = ctx.mem[BDA_VIDEO_MODE] | (ctx.mem[BDA_VIDEO_CTL] & VIDEO_CTL_NOCLEAR)
        r.ah = rd16(ctx.mem, BDA_VIDEO_COLUMNS)
        r.bh = active_page(ctx)
    elif fn == 0x10:
        _palette(ctx)
    elif fn == 0x11:
        _font(ctx)
    elif fn == 0x12:
        _alternate_select(ctx)
    elif fn == 0x13:
        write_string(ctx)
    elif fn == 0x1A:
        if r.al == 0x00:
            r.al, r.bl, r.bh = 0x1A, DCC_VGA_COLOUR, 0x00
        elif r.al == 0x01:
            r.al = 0x1A
    elif fn in (0x0B, 0x0C, 0x0D):
        once(ctx, f"int 10h AH={fn:#04x}: graphics functions are not emulated")
    elif fn in (0xFE, 0xFF):
        pass                              # TopView/DESQview shadow buffer probes: not present
    else:
        once(ctx, f"int 10h AH={fn:#04x}: function not emulated")
