"""IBM VGA in 80x25 colour text mode (mode 3): registers and a text renderer.

Reference: IBM Personal System/2 Display Adapter / VGA Technical Reference
(registers), FreeVGA "VGA Hardware" pages (the same register set, with the
attribute flip-flop and input status 1 behaviour), the mode 3 register
values of the IBM VGA BIOS parameter table.

Emulated: the CRT controller index/data ports (0x3D4/0x3D5, or 0x3B4/0x3B5
when misc output bit 0 selects mono addressing) with the 25 registers and
the write protection of registers 0-7 (CRTC 0x11 bit 7); input status 1
(0x3DA / 0x3BA) whose display-enable and vertical-retrace bits cycle on
successive reads so polling loops finish, and whose read resets the
attribute controller flip-flop; the attribute controller (0x3C0 index/data
flip-flop, 0x3C1 read) with the palette, mode control (blink vs. bright
background), overscan, plane enable, panning and colour select registers;
misc output (write 0x3C2, read 0x3CC), feature control, VGA enable (0x3C3),
the sequencer (0x3C4/0x3C5) and graphics controller (0x3CE/0x3CF) registers
as storage, and the DAC (0x3C6 pel mask, 0x3C7/0x3C8 indices, 0x3C9 data)
with the standard 64-colour EGA palette at power-on.

Text memory is guest RAM at 0xB8000, passed in as a writable buffer (a
``memoryview`` or ``bytearray`` of at least 4000 bytes, normally the 32 KiB
window 0xB8000-0xBFFFF).  The device never copies it; the renderers read it
through the CRTC start address (wrapping within the window).

Not emulated: graphics modes, other text geometries (the renderer always
shows 80x25), fonts and character generator RAM (CP437 glyphs are used),
the planar memory organisation behind text mode (odd/even, plane 2 fonts),
split screen, and the mono (MDA) attribute rendering.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .base import Device, DeviceState, SnapshotFormatError

VGA_PORT_BASE = 0x3B0
VGA_PORT_COUNT = 0x30  # 0x3B0-0x3DF
TEXT_COLUMNS = 80
TEXT_ROWS = 25
TEXT_MEMORY_ADDR = 0xB8000

# --- ports (absolute) ------------------------------------------------------------------
PORT_CRTC_INDEX_MONO = 0x3B4
PORT_CRTC_DATA_MONO = 0x3B5
PORT_STATUS1_MONO = 0x3BA
PORT_ATTR_ADDR_DATA = 0x3C0   # write: index / data (flip-flop); read: index
PORT_ATTR_DATA_READ = 0x3C1
PORT_MISC_WRITE = 0x3C2       # read: input status 0
PORT_VGA_ENABLE = 0x3C3
PORT_SEQ_INDEX = 0x3C4
PORT_SEQ_DATA = 0x3C5
PORT_DAC_MASK = 0x3C6
PORT_DAC_READ_INDEX = 0x3C7   # read: DAC state
PORT_DAC_WRITE_INDEX = 0x3C8
PORT_DAC_DATA = 0x3C9
PORT_FEATURE_READ = 0x3CA
PORT_MISC_READ = 0x3CC
PORT_GC_INDEX = 0x3CE
PORT_GC_DATA = 0x3CF
PORT_CRTC_INDEX = 0x3D4
PORT_CRTC_DATA = 0x3D5
PORT_STATUS1 = 0x3DA          # read: input status 1; write: feature control

# --- misc output register ------------------------------------------------------------------
MISC_COLOR_IO = 0x01          # 1: CRTC at 0x3Dx (colour), 0: 0x3Bx (mono)
MISC_RAM_ENABLE = 0x02
MISC_CLOCK_SEL = 0x0C
MISC_PAGE_HIGH = 0x20
MISC_HSYNC_NEG = 0x40
MISC_VSYNC_NEG = 0x80
MISC_MODE3 = 0x67

# --- input status 1 ------------------------------------------------------------------------
ST1_DISPLAY_DISABLED = 0x01   # in horizontal or vertical blanking
ST1_VRETRACE = 0x08           # in vertical retrace

# --- CRTC registers ---------------------------------------------------------------------------
CRTC_COUNT = 0x19
CRTC_CURSOR_START = 0x0A      # bits 4-0 start scan line, bit 5 cursor off
CRTC_CURSOR_END = 0x0B        # bits 4-0 end scan line, bits 6-5 skew
CRTC_START_HIGH = 0x0C        # display start address (in character cells)
CRTC_START_LOW = 0x0D
CRTC_CURSOR_HIGH = 0x0E       # cursor location (in character cells)
CRTC_CURSOR_LOW = 0x0F
CRTC_VRETRACE_END = 0x11      # bit 7: protect registers 0-7
CRTC_OFFSET = 0x13
CURSOR_DISABLE = 0x20
CURSOR_SCANLINE = 0x1F
CRTC_PROTECT = 0x80

# --- attribute controller --------------------------------------------------------------------
ATTR_COUNT = 0x15
ATTR_INDEX_MASK = 0x1F
ATTR_PAS = 0x20               # palette address source: 1 = video enabled
ATTR_MODE_CONTROL = 0x10      # bit 3: blink enable (attribute bit 7 blinks)
ATTR_OVERSCAN = 0x11
ATTR_PLANE_ENABLE = 0x12
ATTR_PANNING = 0x13
ATTR_COLOR_SELECT = 0x14
AMC_BLINK = 0x08
AMC_P54S = 0x80               # palette bits 5-4 come from colour select bits 1-0

SEQ_COUNT = 5
GC_COUNT = 9

# Mode 3 register values (IBM VGA BIOS parameter table, mode 03h).
MODE3_CRTC = bytes((
    0x5F, 0x4F, 0x50, 0x82, 0x55, 0x81, 0xBF, 0x1F, 0x00, 0x4F, 0x0D, 0x0E, 0x00, 0x00,
    0x00, 0x00, 0x9C, 0x8E, 0x8F, 0x28, 0x1F, 0x96, 0xB9, 0xA3, 0xFF,
))
MODE3_SEQ = bytes((0x03, 0x00, 0x03, 0x00, 0x02))
MODE3_GC = bytes((0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x0E, 0x00, 0xFF))
MODE3_ATTR = bytes((
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x14, 0x07, 0x38, 0x39, 0x3A, 0x3B, 0x3C, 0x3D,
    0x3E, 0x3F, 0x0C, 0x00, 0x0F, 0x08, 0x00,
))


def _ega_dac() -> bytes:
    """DAC entries 0-63 as the BIOS loads them: the EGA rgbRGB colours (6-bit
    components: primary bit = 2/3, secondary bit = 1/3 intensity)."""
    out = bytearray(768)
    for i in range(64):
        r = ((i >> 2) & 1) * 42 + ((i >> 5) & 1) * 21
        g = ((i >> 1) & 1) * 42 + ((i >> 4) & 1) * 21
        b = (i & 1) * 42 + ((i >> 3) & 1) * 21
        out[3 * i: 3 * i + 3] = bytes((r, g, b))
    return bytes(out)


DEFAULT_DAC = _ega_dac()

# Code page 437 as displayed: the control range shows the IBM glyphs.
_CP437_LOW = (
    " ☺☻♥♦♣♠•◘○◙♂♀♪♫☼►◄↕‼¶§▬↨↑↓→←∟↔▲▼"
)
CP437 = tuple(
    _CP437_LOW[i] if i < 0x20 else ("⌂" if i == 0x7F else bytes((i,)).decode("cp437"))
    for i in range(256)
)


@dataclass
class VgaState(DeviceState):
    KIND = "vga_text"
    VERSION = 1
    misc: int             # misc output register
    feature: int          # feature control
    vga_enable: int       # port 0x3C3
    crtc_index: int
    crtc: bytes           # CRT controller registers 0x00-0x18
    seq_index: int
    seq: bytes            # sequencer registers 0-4
    gc_index: int
    gc: bytes             # graphics controller registers 0-8
    attr_index: int       # attribute address register (index | PAS)
    attr_flipflop: bool   # True: the next 0x3C0 write is data
    attr: bytes           # attribute controller registers 0x00-0x14
    dac: bytes            # 256 x (r, g, b), 6-bit components
    dac_write_index: int
    dac_read_index: int
    dac_component: int    # 0-2: next r, g or b within the current entry
    dac_reading: bool     # the last index written was the read index
    pel_mask: int
    status_reads: int     # input status 1 reads (drives the retrace bits)


class VgaText(Device):
    name = "vga"

    def __init__(self, text_memory: Any) -> None:
        super().__init__()
        mem = memoryview(text_memory)
        if mem.readonly:
            raise ValueError("vga: text memory must be a writable buffer (guest RAM at 0xB8000)")
        if mem.nbytes < TEXT_COLUMNS * TEXT_ROWS * 2:
            raise ValueError(f"vga: text memory of {mem.nbytes} bytes is smaller than one 80x25 page")
        self.mem = mem.cast("B") if mem.format != "B" else mem
        self.reset()

    def port_ranges(self):
        return [(self, VGA_PORT_BASE, VGA_PORT_COUNT)]

    # -- ports -------------------------------------------------------------------------

    def _crtc_ports(self) -> tuple[int, int, int]:
        if self.misc & MISC_COLOR_IO:
            return PORT_CRTC_INDEX, PORT_CRTC_DATA, PORT_STATUS1
        return PORT_CRTC_INDEX_MONO, PORT_CRTC_DATA_MONO, PORT_STATUS1_MONO

    def io_read(self, offset: int, size: int) -> int:
        port = VGA_PORT_BASE + offset
        crtc_index, crtc_data, status1 = self._crtc_ports()
        if port == crtc_index:
            return self.crtc_index
        if port == crtc_data:
            return self.crtc[self.crtc_index] if self.crtc_index < CRTC_COUNT else 0xFF
        if port == status1:
            return self._read_status1()
        if port == PORT_ATTR_ADDR_DATA:
            return self.attr_index
        if port == PORT_ATTR_DATA_READ:
            i = self.attr_index & ATTR_INDEX_MASK
            return self.attr[i] if i < ATTR_COUNT else 0xFF
        if port == PORT_MISC_WRITE:
            return 0x00  # input status 0: no switch sense, no CRT interrupt
        if port == PORT_VGA_ENABLE:
            return self.vga_enable
        if port == PORT_SEQ_INDEX:
            return self.seq_index
        if port == PORT_SEQ_DATA:
            return self.seq[self.seq_index] if self.seq_index < SEQ_COUNT else 0xFF
        if port == PORT_DAC_MASK:
            return self.pel_mask
        if port == PORT_DAC_READ_INDEX:
            return 0x03 if self.dac_reading else 0x00
        if port == PORT_DAC_WRITE_INDEX:
            return self.dac_write_index
        if port == PORT_DAC_DATA:
            return self._dac_read()
        if port == PORT_FEATURE_READ:
            return self.feature
        if port == PORT_MISC_READ:
            return self.misc
        if port == PORT_GC_INDEX:
            return self.gc_index
        if port == PORT_GC_DATA:
            return self.gc[self.gc_index] if self.gc_index < GC_COUNT else 0xFF
        # The CRTC/status ports of the other addressing mode, and holes.
        return 0xFF

    def io_write(self, offset: int, size: int, value: int) -> None:
        port = VGA_PORT_BASE + offset
        crtc_index, crtc_data, status1 = self._crtc_ports()
        if port == crtc_index:
            self.crtc_index = value & 0x3F
        elif port == crtc_data:
            self._crtc_write(value)
        elif port == status1:
            self.feature = value
        elif port == PORT_ATTR_ADDR_DATA:
            # The attribute controller has one port for index and data: a
            # flip-flop alternates between them (reset by reading status 1).
            if not self.attr_flipflop:
                self.attr_index = value & (ATTR_INDEX_MASK | ATTR_PAS)
            else:
                i = self.attr_index & ATTR_INDEX_MASK
                if i < ATTR_COUNT:
                    self.attr[i] = value
                else:
                    self.oddity(f"attribute register {i:#x}")
            self.attr_flipflop = not self.attr_flipflop
        elif port == PORT_MISC_WRITE:
            self.misc = value
        elif port == PORT_VGA_ENABLE:
            self.vga_enable = value
        elif port == PORT_SEQ_INDEX:
            self.seq_index = value & 0x07
        elif port == PORT_SEQ_DATA:
            if self.seq_index < SEQ_COUNT:
                self.seq[self.seq_index] = value
        elif port == PORT_DAC_MASK:
            self.pel_mask = value
        elif port == PORT_DAC_READ_INDEX:
            self.dac_read_index = value
            self.dac_component = 0
            self.dac_reading = True
        elif port == PORT_DAC_WRITE_INDEX:
            self.dac_write_index = value
            self.dac_component = 0
            self.dac_reading = False
        elif port == PORT_DAC_DATA:
            # Three writes (r, g, b; 6 bits each) per entry, then the write
            # index advances.
            self.dac[3 * self.dac_write_index + self.dac_component] = value & 0x3F
            self.dac_component += 1
            if self.dac_component == 3:
                self.dac_component = 0
                self.dac_write_index = (self.dac_write_index + 1) & 0xFF
        elif port == PORT_GC_INDEX:
            self.gc_index = value & 0x0F
        elif port == PORT_GC_DATA:
            if self.gc_index < GC_COUNT:
                self.gc[self.gc_index] = value
        else:
            self.oddity(f"write to port {port:#x}")

    def _crtc_write(self, value: int) -> None:
        i = self.crtc_index
        if i >= CRTC_COUNT:
            self.oddity(f"CRTC register {i:#x}")
            return
        if self.crtc[CRTC_VRETRACE_END] & CRTC_PROTECT and i <= 7:
            # Registers 0-7 are write-protected, except the line compare bit
            # (bit 4) of the overflow register 7.
            if i == 7:
                self.crtc[7] = (self.crtc[7] & ~0x10) | (value & 0x10)
            return
        self.crtc[i] = value

    def _read_status1(self) -> int:
        # Reading input status 1 resets the attribute flip-flop to "index".
        # The bits follow a short fixed cycle per read instead of the beam
        # position: display enable toggles on every read and the retrace bit
        # is set for 2 reads out of 8, so "wait for retrace start/end" loops
        # finish in a few reads whatever the run loop does with time.
        self.attr_flipflop = False
        self.status_reads = (self.status_reads + 1) & 0xFFFF
        phase = self.status_reads & 7
        value = 0
        if phase >= 6:
            value |= ST1_VRETRACE | ST1_DISPLAY_DISABLED
        elif phase & 1:
            value |= ST1_DISPLAY_DISABLED
        return value

    def _dac_read(self) -> int:
        value = self.dac[3 * self.dac_read_index + self.dac_component]
        self.dac_component += 1
        if self.dac_component == 3:
            self.dac_component = 0
            self.dac_read_index = (self.dac_read_index + 1) & 0xFF
        return value

    # -- screen contents -------------------------------------------------------------------

    def start_address(self) -> int:
        return (self.crtc[CRTC_START_HIGH] << 8) | self.crtc[CRTC_START_LOW]

    def cursor_address(self) -> int:
        return (self.crtc[CRTC_CURSOR_HIGH] << 8) | self.crtc[CRTC_CURSOR_LOW]

    def cursor(self) -> tuple[int, int]:
        """(row, col) of the hardware cursor relative to the displayed page;
        may lie outside 0-24 / 0-79 when a guest parks the cursor off screen."""
        rel = self.cursor_address() - self.start_address()
        return divmod(rel, TEXT_COLUMNS)

    def cursor_visible(self) -> bool:
        start, end = self.crtc[CRTC_CURSOR_START], self.crtc[CRTC_CURSOR_END]
        row, col = self.cursor()
        return (not start & CURSOR_DISABLE
                and (start & CURSOR_SCANLINE) <= (end & CURSOR_SCANLINE)
                and 0 <= row < TEXT_ROWS and 0 <= col < TEXT_COLUMNS)

    def _cells(self) -> list[list[tuple[int, int]]]:
        mem, size = self.mem, self.mem.nbytes
        base = self.start_address() * 2
        rows = []
        for r in range(TEXT_ROWS):
            row = []
            for c in range(TEXT_COLUMNS):
                off = (base + (r * TEXT_COLUMNS + c) * 2) % size
                row.append((mem[off], mem[(off + 1) % size]))
            rows.append(row)
        return rows

    def text_lines(self) -> list[str]:
        """The 25 displayed lines, 80 characters each, CP437 shown as Unicode."""
        return ["".join(CP437[ch] for ch, _ in row) for row in self._cells()]

    def screen_dump(self) -> str:
        """Plain text of the screen: trailing blanks removed, one line per row."""
        return "\n".join(line.rstrip() for line in self.text_lines()) + "\n"

    def _rgb(self, colour: int) -> tuple[int, int, int]:
        """Attribute colour (0-15) through palette, colour select and DAC to 8-bit RGB."""
        index = self.attr[colour & 0x0F] & 0x3F
        select = self.attr[ATTR_COLOR_SELECT]
        if self.attr[ATTR_MODE_CONTROL] & AMC_P54S:
            index = (index & 0x0F) | ((select & 0x03) << 4)
        index |= (select & 0x0C) << 4
        index &= self.pel_mask
        r, g, b = self.dac[3 * index: 3 * index + 3]
        return (r * 255 // 63, g * 255 // 63, b * 255 // 63)

    def render_ansi(self) -> str:
        """The screen for a 24-bit-colour terminal (SGR escapes per colour change)."""
        blink_enabled = bool(self.attr[ATTR_MODE_CONTROL] & AMC_BLINK)
        out = []
        for row in self._cells():
            last = None
            for ch, attr in row:
                if attr != last:
                    fg = self._rgb(attr & 0x0F)
                    bg_colour = (attr >> 4) & (0x07 if blink_enabled else 0x0F)
                    bg = self._rgb(bg_colour)
                    blink = ";5" if blink_enabled and attr & 0x80 else ""
                    out.append(f"\x1b[0;38;2;{fg[0]};{fg[1]};{fg[2]};48;2;{bg[0]};{bg[1]};{bg[2]}{blink}m")
                    last = attr
                out.append(CP437[ch])
            out.append("\x1b[0m\n")
        return "".join(out)

    # -- lifecycle --------------------------------------------------------------------------

    def reset(self) -> None:
        """Registers as the VGA BIOS leaves them after setting mode 3."""
        self.misc = MISC_MODE3
        self.feature = 0
        self.vga_enable = 1
        self.crtc_index = 0
        self.crtc = bytearray(MODE3_CRTC)
        self.seq_index = 0
        self.seq = bytearray(MODE3_SEQ)
        self.gc_index = 0
        self.gc = bytearray(MODE3_GC)
        self.attr_index = ATTR_PAS
        self.attr_flipflop = False
        self.attr = bytearray(MODE3_ATTR)
        self.dac = bytearray(DEFAULT_DAC)
        self.dac_write_index = 0
        self.dac_read_index = 0
        self.dac_component = 0
        self.dac_reading = False
        self.pel_mask = 0xFF
        self.status_reads = 0

    def save(self) -> VgaState:
        return VgaState(**{
            name: (bytes(v) if isinstance(v, bytearray) else v)
            for name in VgaState.__dataclass_fields__
            for v in (getattr(self, name),)
        })

    def restore(self, state: VgaState) -> None:
        self._check_state(state, VgaState)
        sizes = {"crtc": CRTC_COUNT, "seq": SEQ_COUNT, "gc": GC_COUNT, "attr": ATTR_COUNT, "dac": 768}
        for name, n in sizes.items():
            if len(getattr(state, name)) != n:
                raise SnapshotFormatError(
                    f"vga: snapshot field {name} has {len(getattr(state, name))} bytes, not {n}"
                )
        for name in VgaState.__dataclass_fields__:
            value = getattr(state, name)
            setattr(self, name, bytearray(value) if isinstance(value, bytes) else value)
