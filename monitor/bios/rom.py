"""The 64 KiB system ROM at F000:0000 (physical 0xF0000-0xFFFFF).

Built in Python at import time, no assembler at run time.  Every
BIOS-provided interrupt vector points at a small stub of real x86 code, so a
guest can hook a vector and chain to the old handler with ``pushf ; call far``
exactly as on a PC.  Where the BIOS's work is done in Python, the stub
executes the callout ``0F 0B nn`` (asm.py); the monitor runs
``Bios.service(nn, ctx)`` and the stub continues.

Entry points sit at the offsets of the IBM PC/AT BIOS (IBM PC/AT Technical
Reference, BIOS listing; the same "compatibility entry points" SeaBIOS keeps
in romlayout.S), because old software jumps to some of them directly: POST
at E05B, int 13h at EC59, int 16h at E82E, int 09h at E987, int 10h at F065,
int 12h at F841, int 11h at F84D, int 15h at F859, int 1Ah at FE6E, int 08h
at FEA5, the dummy ``iret`` at FF53, int 05h at FF54, the reset vector at
FFF0, the BIOS date at FFF5 and the model byte at FFFE.

Return flags: the function-call stubs are ``callout nn ; iret``.  A service
reports CF/ZF by setting them in ``ctx.regs.eflags``; ``Bios.service``
copies those two bits into the FLAGS word of the interrupt frame on the
stack (SS:SP+4), so ``iret`` returns the caller's own IF, TF, DF and IOPL
with the service's CF and ZF (this is what SeaBIOS does; the alternative
``retf 2`` would return the handler's IF instead of the caller's).  The
int 16h stub executes ``sti`` before its callout so the keyboard interrupt
can arrive while int 16h waits for a key (see context.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .asm import Asm16
from .memory import ROM_SEGMENT, ROM_SIZE

# --- callout service numbers (the byte after 0F 0B) ---------------------------------
# Interrupt services use their vector number; POST is F0h.
SVC_PRINT_SCREEN = 0x05
SVC_TIMER = 0x08       # IRQ0 tick: BDA ticks, midnight flag, floppy motor time-out
SVC_KEYBOARD = 0x09    # IRQ1: scan code in AL -> BDA buffer and shift state
SVC_VIDEO = 0x10
SVC_DISK = 0x13
SVC_SERIAL = 0x14
SVC_SYSTEM = 0x15
SVC_KEYBOARD_FN = 0x16
SVC_PRINTER = 0x17
SVC_NO_BASIC = 0x18
SVC_BOOTSTRAP = 0x19
SVC_TIME = 0x1A
SVC_POST = 0xF0

# --- fixed offsets within segment F000 -----------------------------------------------
OFF_IDENT = 0xE000
OFF_POST = 0xE05B
OFF_INT13_HD = 0xE3FE      # AT fixed-disk entry: jumps to the common int 13h stub
OFF_INT19 = 0xE6F2
OFF_CONFIG_TABLE = 0xE6F5  # int 15h AH=C0h system configuration table
OFF_BAUD_TABLE = 0xE729
OFF_INT14 = 0xE739
OFF_INT16 = 0xE82E
OFF_INT09 = 0xE987
OFF_INT13 = 0xEC59
OFF_INT0E = 0xEF57
OFF_DISKETTE_TABLE = 0xEFC7  # int 1Eh: parameters of a 1.44M drive
OFF_INT17 = 0xEFD2
OFF_INT10 = 0xF065
OFF_VIDEO_PARMS = 0xF0A4   # int 1Dh: 6845 parameter table (CGA/MDA)
OFF_INT12 = 0xF841
OFF_INT11 = 0xF84D
OFF_INT15 = 0xF859
OFF_FONT8_LOW = 0xFA6E     # 8x8 glyphs 00h-7Fh
OFF_INT1A = 0xFE6E
OFF_INT08 = 0xFEA5
OFF_DUMMY_IRET = 0xFF53
OFF_INT05 = 0xFF54
OFF_RESET = 0xFFF0
OFF_DATE = 0xFFF5
OFF_MODEL = 0xFFFE

# Freely placed blocks (below E000 and in the gaps).
OFF_FONT16 = 0xB000        # 8x16, 256 glyphs (4 KiB)
OFF_FONT8 = 0xC000         # 8x8, 256 glyphs (int 43h); int 1Fh points at its upper half
OFF_FONT8_HIGH = OFF_FONT8 + 128 * 8
OFF_FONT14 = 0xC800        # 8x14, 256 glyphs (3.5 KiB)
OFF_FONT_ALT_EMPTY = 0xE0F0  # an empty 9-dot alternate glyph list (one 00h)
OFF_FLOPPY_TABLES = 0xE100 # one diskette parameter table per CMOS drive type 1-5
OFF_STUBS = 0xE140         # IRQ handlers, int 18h and int 19h bodies

BIOS_DATE = b"06/01/24"    # mm/dd/yy
MODEL_ID = 0xFC            # PC/AT and compatibles
SUBMODEL = 0x01
BIOS_REVISION = 0x00
IDENT = b"hybrid86 BIOS (c) hybrid86 developers\0"

# Diskette parameter table (int 1Eh; IBM PC/AT Technical Reference, "DISK_BASE";
# RBIL INT 1E), the values SeaBIOS uses.  Byte 4 (sectors per track) varies
# with the drive type.
#   0 specify 1: step rate F (ms), head unload F (x 16 ms)   6 data length (FFh)
#   1 specify 2: head load 1 (x 2 ms), DMA mode (bit 0 = 0)  7 format gap length
#   2 motor off delay in ticks (25h = 2 s)                   8 format fill byte
#   3 bytes per sector code (2 = 512)                        9 head settle time (ms)
#   4 sectors per track                                     10 motor start time (1/8 s)
#   5 gap length between sectors
def diskette_table(sectors: int, gap: int = 0x1B, format_gap: int = 0x6C) -> bytes:
    return bytes((0xAF, 0x02, 0x25, 0x02, sectors, gap, 0xFF, format_gap, 0xF6, 0x0F, 0x08))


# CMOS floppy drive type -> the parameters of its highest-capacity medium.
FLOPPY_TABLE_PARAMS = {
    1: (9, 0x2A, 0x50),     # 360K 5.25"
    2: (15, 0x1B, 0x54),    # 1.2M 5.25"
    3: (9, 0x1B, 0x6C),     # 720K 3.5"
    4: (18, 0x1B, 0x6C),    # 1.44M 3.5"
    5: (36, 0x1B, 0x53),    # 2.88M 3.5"
}
DISKETTE_TABLE_SIZE = 11

# IBM PC BIOS video parameter table (int 1Dh): the 6845 register sets for
# 40x25, 80x25, graphics and monochrome, then regen buffer lengths, columns
# per mode and the mode-control register value per mode.
VIDEO_PARMS = bytes((
    0x38, 0x28, 0x2D, 0x0A, 0x1F, 0x06, 0x19, 0x1C, 0x02, 0x07, 0x06, 0x07, 0, 0, 0, 0,
    0x71, 0x50, 0x5A, 0x0A, 0x1F, 0x06, 0x19, 0x1C, 0x02, 0x07, 0x06, 0x07, 0, 0, 0, 0,
    0x38, 0x28, 0x2D, 0x0A, 0x7F, 0x06, 0x64, 0x70, 0x02, 0x01, 0x06, 0x07, 0, 0, 0, 0,
    0x61, 0x50, 0x52, 0x0F, 0x19, 0x06, 0x19, 0x19, 0x02, 0x0D, 0x0B, 0x0C, 0, 0, 0, 0,
    0x00, 0x08, 0x00, 0x10, 0x00, 0x40, 0x00, 0x40,   # dw 0800h, 1000h, 4000h, 4000h
    40, 40, 80, 80, 40, 40, 80, 80,
    0x2C, 0x28, 0x2D, 0x29, 0x2A, 0x2E, 0x1E, 0x29,
))

# int 15h AH=C0h configuration table (RBIL INT 15/AH=C0h, table 00509).
FEATURE1 = (
    0x40    # bit 6: second 8259 present
    | 0x20  # bit 5: real-time clock present
    | 0x10  # bit 4: int 09h calls int 15h AH=4Fh
    | 0x04  # bit 2: extended BIOS data area allocated
)
CONFIG_TABLE = bytes((8, 0, MODEL_ID, SUBMODEL, BIOS_REVISION, FEATURE1, 0, 0, 0, 0))

# Baud rate divisors 110 150 300 600 1200 2400 4800 9600 (int 14h AH=00h).
BAUD_DIVISORS = (0x417, 0x300, 0x180, 0xC0, 0x60, 0x30, 0x18, 0x0C)


def floppy_table_offset(cmos_type: int) -> int:
    """Offset in F000 of the diskette parameter table for a CMOS drive type."""
    if cmos_type not in FLOPPY_TABLE_PARAMS:
        return OFF_DISKETTE_TABLE
    return OFF_FLOPPY_TABLES + (cmos_type - 1) * DISKETTE_TABLE_SIZE


@dataclass
class Rom:
    image: bytes                      # the 64 KiB
    labels: dict[str, int]            # entry point / table name -> offset in F000
    vectors: dict[int, int]           # interrupt vector -> stub offset in F000 (POST's IVT)
    lines: list[tuple[int, int, str]] = field(repr=False, default_factory=list)

    def listing(self) -> str:
        out = []
        for off, n, text in sorted(self.lines):
            shown = self.image[off:off + min(n, 8)].hex(" ") + (" .." if n > 8 else "")
            out.append(f"F000:{off:04X}  {shown:<27} {text}")
        return "\n".join(out)



def _service_stub(a: Asm16, off: int, name: str, svc: int, what: str) -> None:
    a.at(off, name)
    a.callout(svc, what)
    a.iret()


def build_rom() -> Rom:
    a = Asm16(ROM_SIZE, fill=0x00)

    a.at(OFF_IDENT, "ident")
    a.db(IDENT, "identification string")

    # POST: reached from the reset vector with interrupts off.  The POST
    # service initialises the machine, loads the boot sector and loads
    # CS:IP = 0000:7C00; the halt loop is only reached if it returns.
    a.at(OFF_POST, "post")
    a.cli()
    a.cld()
    a.callout(SVC_POST, "POST and boot: sets CS:IP to the boot sector")
    a.label("post_halt")
    a.hlt()
    a.jshort("jmp", "post_halt")

    a.at(OFF_INT13_HD, "int13_hd")
    a.jmp_near("int13")

    a.at(OFF_INT19, "int19")
    a.jmp_near("int19_body")

    a.at(OFF_CONFIG_TABLE, "config_table")
    a.db(CONFIG_TABLE, "int 15h/C0h configuration table")

    a.at(OFF_BAUD_TABLE, "baud_table")
    a.dw(*BAUD_DIVISORS, text="baud rate divisors")

    _service_stub(a, OFF_INT14, "int14", SVC_SERIAL, "serial port services")

    # int 16h: interrupts on, so IRQ1 can fill the buffer while a read waits.
    a.at(OFF_INT16, "int16")
    a.sti()
    a.callout(SVC_KEYBOARD_FN, "keyboard services")
    a.iret()

    # IRQ1.  IBM PC/AT order: read the scan code, offer it to the int 15h
    # AH=4Fh keyboard intercept (CF=1 in = "process it"; a hook that returns
    # CF=0 has consumed it), translate, EOI.
    a.at(OFF_INT09, "int09")
    a.push("ax")
    a.in_al(0x60)
    a.mov_r8_imm("ah", 0x4F)
    a.stc()
    a.int_(0x15)
    a.jshort("jnc", "int09_eoi")
    a.callout(SVC_KEYBOARD, "scan code in AL -> BDA buffer / shift flags")
    a.label("int09_eoi")
    a.mov_r8_imm("al", 0x20)
    a.out_al(0x20)
    a.pop("ax")
    a.iret()

    _service_stub(a, OFF_INT13, "int13", SVC_DISK, "disk services")

    # IRQ6 (floppy controller): no FDC is emulated; acknowledge.
    a.at(OFF_INT0E, "int0e")
    a.push("ax")
    a.mov_r8_imm("al", 0x20)
    a.out_al(0x20)
    a.pop("ax")
    a.iret()

    a.at(OFF_DISKETTE_TABLE, "diskette_table")
    a.db(diskette_table(18), "1.44M diskette parameters")

    _service_stub(a, OFF_INT17, "int17", SVC_PRINTER, "printer services")
    _service_stub(a, OFF_INT10, "int10", SVC_VIDEO, "video services")

    a.at(OFF_VIDEO_PARMS, "video_parms")
    a.db(VIDEO_PARMS, "6845 video parameters")

    # int 12h / int 11h: read the BDA word, as the IBM BIOS does.
    for off, name, field_ in ((OFF_INT12, "int12", 0x13), (OFF_INT11, "int11", 0x10)):
        a.at(off, name)
        a.push("ds")
        a.mov_r16_imm("ax", 0x0040)
        a.mov_ds_ax()
        a.mov_ax_moffs(field_)
        a.pop("ds")
        a.iret()

    _service_stub(a, OFF_INT15, "int15", SVC_SYSTEM, "system services")

    # Fonts: reserved at the standard places, glyphs blank (docs/bios.md).
    a.at(OFF_FONT8_LOW, "font8_low")
    a.db(bytes(128 * 8), "8x8 glyphs 00h-7Fh (blank)")
    a.at(OFF_FONT8, "font8")
    a.db(bytes(256 * 8), "8x8 glyphs (blank)")
    a.at(OFF_FONT14, "font14")
    a.db(bytes(256 * 14), "8x14 glyphs (blank)")
    a.at(OFF_FONT16, "font16")
    a.db(bytes(256 * 16), "8x16 glyphs (blank)")

    _service_stub(a, OFF_INT1A, "int1a", SVC_TIME, "time of day services")

    # IRQ0: count the tick, call the user hook int 1Ch, EOI (IBM order).
    a.at(OFF_INT08, "int08")
    a.push("ax")
    a.callout(SVC_TIMER, "ticks, midnight flag, motor time-out")
    a.int_(0x1C)
    a.mov_r8_imm("al", 0x20)
    a.out_al(0x20)
    a.pop("ax")
    a.iret()

    a.at(OFF_DUMMY_IRET, "dummy_iret")
    a.iret()

    _service_stub(a, OFF_INT05, "int05", SVC_PRINT_SCREEN, "print screen")

    a.at(OFF_RESET, "reset")
    a.jmp_far(ROM_SEGMENT, OFF_POST)
    a.at(OFF_DATE, "date")
    a.db(BIOS_DATE, "BIOS date")
    a.at(OFF_MODEL, "model")
    a.db(bytes((MODEL_ID, 0x00)), "model byte, reserved")

    a.at(OFF_FONT_ALT_EMPTY, "font_alt_empty")
    a.db(b"\0", "end of the (empty) alternate glyph list")

    a.at(OFF_FLOPPY_TABLES, "floppy_tables")
    for t in sorted(FLOPPY_TABLE_PARAMS):
        a.db(diskette_table(*FLOPPY_TABLE_PARAMS[t]), f"diskette parameters, CMOS type {t}")

    # -- IRQ handlers and bodies without a fixed address ------------------------------
    a.at(OFF_STUBS, "irq_master")
    # IRQ2-5 (int 0Ah-0Dh): non-specific EOI to the master.
    a.push("ax")
    a.mov_r8_imm("al", 0x20)
    a.out_al(0x20)
    a.pop("ax")
    a.iret()

    # IRQ7 (int 0Fh): also the 8259's spurious vector.  Read the ISR (OCW3
    # 0Bh); only a real IRQ7 (ISR bit 7 set) gets an EOI, since an EOI for a
    # spurious one would end some other interrupt in service.  OCW3 0Ah
    # returns the read register to IRR.
    a.at(a.pos, "irq7")
    a.push("ax")
    a.mov_r8_imm("al", 0x0B)
    a.out_al(0x20)
    a.in_al(0x20)
    a.test_al_imm(0x80)
    a.jshort("jz", "irq7_spurious")
    a.mov_r8_imm("al", 0x20)
    a.out_al(0x20)
    a.label("irq7_spurious")
    a.mov_r8_imm("al", 0x0A)
    a.out_al(0x20)
    a.pop("ax")
    a.iret()

    # IRQ10-12, IRQ14 (int 72h-74h, 76h): EOI the slave, then the master
    # (whose IR2 is in service for every slave interrupt).
    a.at(a.pos, "irq_slave")
    a.push("ax")
    a.mov_r8_imm("al", 0x20)
    a.out_al(0xA0)
    a.out_al(0x20)
    a.pop("ax")
    a.iret()

    # IRQ8 (int 70h), the RTC: reading CMOS register C acknowledges the
    # chip's interrupt (IRQ8 stays asserted until it is read); an alarm
    # (C bit 5, AF) calls the user alarm hook int 4Ah (IBM PC/AT BIOS).
    a.at(a.pos, "irq8")
    a.push("ax")
    a.mov_r8_imm("al", 0x0C)
    a.out_al(0x70)
    a.in_al(0x71)
    a.test_al_imm(0x20)
    a.jshort("jz", "irq8_eoi")
    a.int_(0x4A)
    a.label("irq8_eoi")
    a.mov_r8_imm("al", 0x20)
    a.out_al(0xA0)
    a.out_al(0x20)
    a.pop("ax")
    a.iret()

    # IRQ9 (int 71h): on the AT the old IRQ2 line of the ISA bus arrives
    # here; the BIOS EOIs the slave and passes it to the IRQ2 vector int 0Ah,
    # whose handler EOIs the master (IBM PC/AT BIOS "RE_DIRECT").
    a.at(a.pos, "irq9")
    a.push("ax")
    a.mov_r8_imm("al", 0x20)
    a.out_al(0xA0)
    a.pop("ax")
    a.int_(0x0A)
    a.iret()

    # IRQ13 (int 75h), the x87 error line: clear the coprocessor busy latch
    # (port F0h), EOI both, and report it as NMI int 02h (IBM PC/AT BIOS).
    a.at(a.pos, "irq13")
    a.push("ax")
    a.mov_r8_imm("al", 0x00)
    a.out_al(0xF0)
    a.mov_r8_imm("al", 0x20)
    a.out_al(0xA0)
    a.out_al(0x20)
    a.pop("ax")
    a.int_(0x02)
    a.iret()

    # IRQ15 (int 77h): the slave's spurious vector.  EOI the slave only when
    # its ISR bit 7 is set; the master always has IR2 in service and gets one.
    a.at(a.pos, "irq15")
    a.push("ax")
    a.mov_r8_imm("al", 0x0B)
    a.out_al(0xA0)
    a.in_al(0xA0)
    a.test_al_imm(0x80)
    a.jshort("jz", "irq15_master")
    a.mov_r8_imm("al", 0x20)
    a.out_al(0xA0)
    a.label("irq15_master")
    a.mov_r8_imm("al", 0x0A)
    a.out_al(0xA0)
    a.mov_r8_imm("al", 0x20)
    a.out_al(0x20)
    a.pop("ax")
    a.iret()

    # int 19h: load and jump to a boot sector.  The service loads CS:IP
    # 0000:7C00 on success; if nothing boots it returns and int 18h runs.
    a.at(a.pos, "int19_body")
    a.callout(SVC_BOOTSTRAP, "bootstrap loader")
    a.int_(0x18)
    a.iret()

    # int 18h: no ROM BASIC.  Print why, wait for a key, try booting again.
    a.at(a.pos, "int18")
    a.callout(SVC_NO_BASIC, "print 'no bootable device'")
    a.sti()
    a.xor_r16("ax")
    a.int_(0x16)
    a.int_(0x19)
    a.jshort("jmp", "int18")

    image = a.finish()
    labels = dict(a.labels)

    vectors = {v: OFF_DUMMY_IRET for v in range(0x100)}
    vectors.update({
        0x05: OFF_INT05, 0x08: OFF_INT08, 0x09: OFF_INT09,
        0x0A: labels["irq_master"], 0x0B: labels["irq_master"], 0x0C: labels["irq_master"],
        0x0D: labels["irq_master"], 0x0E: OFF_INT0E, 0x0F: labels["irq7"],
        0x10: OFF_INT10, 0x11: OFF_INT11, 0x12: OFF_INT12, 0x13: OFF_INT13, 0x14: OFF_INT14,
        0x15: OFF_INT15, 0x16: OFF_INT16, 0x17: OFF_INT17, 0x18: labels["int18"],
        0x19: OFF_INT19, 0x1A: OFF_INT1A,
        0x1D: OFF_VIDEO_PARMS, 0x1E: OFF_DISKETTE_TABLE, 0x1F: OFF_FONT8_HIGH,
        0x40: OFF_INT13, 0x43: OFF_FONT8,
        0x70: labels["irq8"], 0x71: labels["irq9"], 0x72: labels["irq_slave"],
        0x73: labels["irq_slave"], 0x74: labels["irq_slave"], 0x75: labels["irq13"],
        0x76: labels["irq_slave"], 0x77: labels["irq15"],
    })
    return Rom(image=image, labels=labels, vectors=vectors, lines=a.lines)


#: Vectors POST leaves at 0000:0000: the user vectors 60h-67h (programs
#: look for a free one there) and 79h (SeaBIOS, for "Guardian Angel").
#: 41h and 46h (fixed-disk parameter tables) are set by POST from the disks.
NULL_VECTORS = tuple(range(0x60, 0x68)) + (0x79,)
