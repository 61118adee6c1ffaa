"""IRQ0 (int 08h) tick counting and int 1Ah time-of-day services.

The BIOS keeps the time of day as IRQ0 ticks since midnight in the BDA
dword 0x46C: the PIT runs channel 0 in mode 3 with count 0 (65536), so a
tick is 65536 / 1193182 s (18.2065 Hz) and a day is 1800B0h ticks.  At
midnight the count restarts and 0x470 is set; int 1Ah AH=00h returns and
clears that flag (DOS adds a day when it sees it).  The real-time clock
functions read and write the MC146818 through the CMOS device.

References: IBM PC/AT Technical Reference (TIMER_INT, TIME_OF_DAY);
Ralf Brown's Interrupt List (INT 08, INT 1A AH=00h-07h); Motorola MC146818A
data sheet (the SET bit, BCD mode, the alarm registers).

Not emulated: the floppy motor control port (no FDC; only the BDA motor
bits are cleared), AH=08h and later (PS/2 and vendor extensions).
"""

from __future__ import annotations

from devices.cmos_rtc import (
    RB_24H, RB_AIE, RB_DM_BINARY, RB_DSE, RB_SET, REG_B, REG_CENTURY, REG_DAY_OF_MONTH,
    REG_HOURS, REG_HOURS_ALARM, REG_MINUTES, REG_MINUTES_ALARM, REG_MONTH, REG_SECONDS,
    REG_SECONDS_ALARM, REG_YEAR,
)
from .memory import (
    BDA_FLOPPY_MOTOR, BDA_FLOPPY_MOTOR_TIMEOUT, BDA_TIMER_ROLLOVER, BDA_TIMER_TICKS,
    TICKS_PER_DAY, once, rd32, wr32,
)
from .ports import inb, outb

def ticks_for(seconds_since_midnight: int) -> int:
    """The BDA tick count at a time of day.  The day is 1800B0h ticks (IBM's
    figure, which DOS divides by to get the time), so the scale is that,
    not the exact 1193182/65536 Hz (which would give 1800B2h)."""
    return seconds_since_midnight * TICKS_PER_DAY // 86400


def irq0(ctx) -> None:
    """Service 08h: one timer tick."""
    m = ctx.mem
    ticks = rd32(m, BDA_TIMER_TICKS) + 1
    if ticks >= TICKS_PER_DAY:
        ticks = 0
        m[BDA_TIMER_ROLLOVER] = 1
    wr32(m, BDA_TIMER_TICKS, ticks)
    # Floppy motor time-out: count down, and at zero the motors are off.
    if m[BDA_FLOPPY_MOTOR_TIMEOUT]:
        m[BDA_FLOPPY_MOTOR_TIMEOUT] -= 1
        if not m[BDA_FLOPPY_MOTOR_TIMEOUT]:
            m[BDA_FLOPPY_MOTOR] &= 0xF0


# -- RTC register access ------------------------------------------------------------------


def _bcd(v: int) -> int:
    return ((v // 10) << 4) | (v % 10)


def _unbcd(v: int) -> int:
    return (v >> 4) * 10 + (v & 0x0F)


def _is_hours(reg: int) -> bool:
    return reg in (REG_HOURS, REG_HOURS_ALARM)


def _rtc_read(ctx, reg: int) -> int:
    """An RTC register as BCD (24-hour), whatever data mode the chip is in:
    a guest may have switched it to binary or 12-hour mode."""
    cmos = ctx.devices.cmos
    b = cmos.read_register(REG_B)
    raw = cmos.read_register(reg)
    pm = False
    if _is_hours(reg) and not b & RB_24H:
        pm, raw = bool(raw & 0x80), raw & 0x7F
    value = raw if b & RB_DM_BINARY else _unbcd(raw)
    if _is_hours(reg) and not b & RB_24H:
        value = value % 12 + (12 if pm else 0)
    return _bcd(value)


def _rtc_write(ctx, reg: int, bcd: int) -> None:
    """Store a BCD (24-hour) value in the chip's current data mode.  Alarm
    bytes of C0h-FFh ("don't care") are stored as they are."""
    cmos = ctx.devices.cmos
    b = cmos.read_register(REG_B)
    if bcd >= 0xC0:
        cmos.write_register(reg, bcd)
        return
    value, pm = _unbcd(bcd), 0
    if _is_hours(reg) and not b & RB_24H:
        pm = 0x80 if value >= 12 else 0
        value = value % 12 or 12
    cmos.write_register(reg, (value if b & RB_DM_BINARY else _bcd(value)) | pm)


def _set_registers(ctx, values: dict[int, int], dse: int | None = None) -> None:
    """Write time or date registers with updates inhibited (register B SET),
    as the data sheet prescribes."""
    cmos = ctx.devices.cmos
    b = cmos.read_register(REG_B)
    cmos.write_register(REG_B, b | RB_SET)
    for reg, bcd in values.items():
        _rtc_write(ctx, reg, bcd)
    b &= ~RB_SET
    if dse is not None:
        b = (b & ~RB_DSE) | (RB_DSE if dse else 0)
    cmos.write_register(REG_B, b)


# -- int 1Ah -------------------------------------------------------------------------------------


def int1a(ctx) -> None:
    r = ctx.regs
    m = ctx.mem
    fn = r.ah
    cmos = ctx.devices.cmos
    if fn == 0x00:
        # CX:DX = ticks since midnight, AL = midnight flag (then cleared).
        ticks = rd32(m, BDA_TIMER_TICKS)
        r.cx, r.dx = ticks >> 16, ticks & 0xFFFF
        r.al = m[BDA_TIMER_ROLLOVER]
        m[BDA_TIMER_ROLLOVER] = 0
        r.cf = False
    elif fn == 0x01:
        wr32(m, BDA_TIMER_TICKS, ((r.cx << 16) | r.dx) % TICKS_PER_DAY)
        m[BDA_TIMER_ROLLOVER] = 0
        r.cf = False
    elif fn == 0x02:
        # CH hours, CL minutes, DH seconds (BCD), DL = daylight saving flag.
        if not cmos.running:
            r.cf = True                   # clock not operating (SET or divider off)
            return
        r.ch = _rtc_read(ctx, REG_HOURS)
        r.cl = _rtc_read(ctx, REG_MINUTES)
        r.dh = _rtc_read(ctx, REG_SECONDS)
        r.dl = 1 if cmos.read_register(REG_B) & RB_DSE else 0
        r.cf = False
    elif fn == 0x03:
        _set_registers(ctx, {REG_HOURS: r.ch, REG_MINUTES: r.cl, REG_SECONDS: r.dh}, dse=r.dl & 1)
        r.cf = False
    elif fn == 0x04:
        # CH century, CL year, DH month, DL day (BCD).
        if not cmos.running:
            r.cf = True
            return
        r.ch = _rtc_read(ctx, REG_CENTURY)
        r.cl = _rtc_read(ctx, REG_YEAR)
        r.dh = _rtc_read(ctx, REG_MONTH)
        r.dl = _rtc_read(ctx, REG_DAY_OF_MONTH)
        r.cf = False
    elif fn == 0x05:
        _set_registers(ctx, {REG_CENTURY: r.ch, REG_YEAR: r.cl, REG_MONTH: r.dh,
                             REG_DAY_OF_MONTH: r.dl})
        r.cf = False
    elif fn == 0x06:
        # Set alarm CH:CL:DH; CF=1 if one is already set.  The alarm raises
        # IRQ8, whose handler calls int 4Ah, so IRQ8 is unmasked.
        b = cmos.read_register(REG_B)
        if b & RB_AIE:
            r.cf = True
            return
        _rtc_write(ctx, REG_HOURS_ALARM, r.ch)
        _rtc_write(ctx, REG_MINUTES_ALARM, r.cl)
        _rtc_write(ctx, REG_SECONDS_ALARM, r.dh)
        cmos.write_register(REG_B, b | RB_AIE)
        outb(ctx, 0xA1, inb(ctx, 0xA1) & ~0x01)
        r.cf = False
    elif fn == 0x07:
        cmos.write_register(REG_B, cmos.read_register(REG_B) & ~RB_AIE)
        r.cf = False
    else:
        once(ctx, f"int 1Ah AH={fn:#04x}: function not emulated")
        r.cf = True
