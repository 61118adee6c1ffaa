"""Motorola MC146818A real-time clock with its CMOS RAM (ports 0x70-0x71, IRQ8).

Reference: Motorola MC146818A data sheet (rev. 1984/1990, "Real-Time Clock
Plus RAM"); PC conventions (NMI mask in port 0x70 bit 7, century at 0x32,
BIOS configuration bytes 0x10-0x3F) from the IBM PC/AT Technical Reference
and Ralf Brown's CMOS.LST.

Emulated: the index register with the NMI-disable bit, 128 bytes of CMOS
RAM, the time, calendar and alarm registers in BCD or binary (register B DM)
and 12/24-hour format (register B 24/12), register A's divider control and
periodic rate (rates 1-15, with the 1 -> 256 Hz and 2 -> 128 Hz quirk) and
its update-in-progress flag, register B's SET/PIE/AIE/UIE bits, register C's
PF/AF/UF/IRQF flags with read-to-clear, register D's valid-RAM bit, the
alarm "don't care" codes (0xC0-0xFF), and the century byte (0x32) kept with
the year.

Time: the RTC holds a broken-down local time, fixed when the machine starts
(a constructor argument; default: the host's local time at construction) and
advancing with the ``VirtualClock``.  Registers are computed from virtual
time when read, so nothing ticks per second except an update event (1 Hz of
virtual time) that raises UF/AF.  UIP reads 1 during the 244 us before each
update; the registers change at the update.  A guest that sets the time
(SET=1, write registers, SET=0) moves the RTC's base time.

Not emulated: daylight-saving switching (DSE, warned once), the square-wave
output pin (SQWE is stored), divider time bases other than 32.768 kHz (the
clock stops, as with the divider held in reset), and the on-chip "bad value
in a time register" behaviour beyond keeping what the guest wrote.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable, Optional

from .base import Device, DeviceState, SnapshotFormatError, no_irq
from .clock import NS_PER_SEC, TimerHandle, VirtualClock

RTC_BASE = 0x70

# --- port 0x70 -------------------------------------------------------------------
IDX_NMI_DISABLE = 0x80  # bit 7: 1 = NMI masked (a PC convention, not the chip's)
IDX_MASK = 0x7F         # bits 6-0: CMOS address

# --- register indices ----------------------------------------------------------------
REG_SECONDS = 0x00
REG_SECONDS_ALARM = 0x01
REG_MINUTES = 0x02
REG_MINUTES_ALARM = 0x03
REG_HOURS = 0x04
REG_HOURS_ALARM = 0x05
REG_DAY_OF_WEEK = 0x06  # 1 = Sunday
REG_DAY_OF_MONTH = 0x07
REG_MONTH = 0x08
REG_YEAR = 0x09
REG_A = 0x0A
REG_B = 0x0B
REG_C = 0x0C
REG_D = 0x0D
REG_CENTURY = 0x32  # IBM PC/AT convention (ACPI FADT "century" points here)
TIME_REGS = (REG_SECONDS, REG_MINUTES, REG_HOURS, REG_DAY_OF_WEEK,
             REG_DAY_OF_MONTH, REG_MONTH, REG_YEAR, REG_CENTURY)

# --- register A ---------------------------------------------------------------------
RA_UIP = 0x80          # update in progress (read-only)
RA_DV_MASK = 0x70      # divider chain select:
RA_DV_32K = 0x20       #   010 = 32.768 kHz time base, running
RA_DV_RESET = 0x60     #   11x = divider held in reset
RA_RS_MASK = 0x0F      # periodic rate select (0 = off)

# --- register B ---------------------------------------------------------------------
RB_SET = 0x80          # inhibit updates so software can set the time
RB_PIE = 0x40          # periodic interrupt enable
RB_AIE = 0x20          # alarm interrupt enable
RB_UIE = 0x10          # update-ended interrupt enable
RB_SQWE = 0x08         # square-wave output enable (pin not emulated)
RB_DM_BINARY = 0x04    # data mode: 1 = binary, 0 = BCD
RB_24H = 0x02          # 1 = 24-hour mode, 0 = 12-hour with PM in hour bit 7
RB_DSE = 0x01          # daylight-saving enable (not emulated)

# --- register C (read-only, cleared by reading) --------------------------------------
RC_IRQF = 0x80         # = PF&PIE | AF&AIE | UF&UIE; drives IRQ8
RC_PF = 0x40           # periodic interrupt flag
RC_AF = 0x20           # alarm flag
RC_UF = 0x10           # update-ended flag

# --- register D ----------------------------------------------------------------------
RD_VRT = 0x80          # valid RAM and time (battery good)

HOUR_PM = 0x80         # 12-hour mode: PM flag in the hours register
ALARM_DONT_CARE = 0xC0 # an alarm byte with both top bits set matches any value

UIP_WINDOW_NS = 244_000  # UIP is set this long before each update

# --- BIOS configuration bytes (IBM PC/AT) ---------------------------------------
CMOS_SHUTDOWN = 0x0F
CMOS_FLOPPY_TYPES = 0x10  # high nibble drive A, low nibble drive B
CMOS_HD_TYPES = 0x12
CMOS_EQUIPMENT = 0x14
CMOS_BASE_MEM_LO = 0x15   # base memory in KiB
CMOS_BASE_MEM_HI = 0x16
CMOS_EXT_MEM_LO = 0x17    # memory above 1 MiB in KiB (max 0xFFFF)
CMOS_EXT_MEM_HI = 0x18
CMOS_CHECKSUM_HI = 0x2E   # sum of bytes 0x10-0x2D, big-endian
CMOS_CHECKSUM_LO = 0x2F
CMOS_EXT_MEM2_LO = 0x30   # copy of 0x17/0x18 as found by POST
CMOS_EXT_MEM2_HI = 0x31
CMOS_MEM_16M_LO = 0x34    # memory above 16 MiB in 64 KiB blocks (max 0xFFFF)
CMOS_MEM_16M_HI = 0x35

# Floppy drive types in CMOS 0x10.
FLOPPY_NONE = 0
FLOPPY_360K = 1
FLOPPY_1_2M = 2
FLOPPY_720K = 3
FLOPPY_1_44M = 4
FLOPPY_2_88M = 5

# Equipment byte 0x14.
EQ_FLOPPY = 0x01         # at least one floppy drive
EQ_FPU = 0x02            # math coprocessor present
EQ_DISPLAY_VGA = 0x00    # bits 5-4: 00 = EGA/VGA (has its own BIOS)
EQ_DISPLAY_CGA80 = 0x20  #           10 = CGA 80 columns
EQ_DISPLAY_MONO = 0x30   #           11 = monochrome
EQ_FLOPPY_COUNT_SHIFT = 6  # bits 7-6: number of floppy drives - 1

_EPOCH = datetime(1970, 1, 1)


def _to_bcd(v: int) -> int:
    return ((v // 10) << 4) | (v % 10)


def _from_bcd(v: int) -> int:
    return (v >> 4) * 10 + (v & 0x0F)


@dataclass
class RtcState(DeviceState):
    KIND = "cmos_rtc"
    VERSION = 1
    cmos: bytes            # the 128 bytes (time registers as last stored)
    index: int             # selected CMOS address (port 0x70 bits 6-0)
    nmi_disabled: bool     # port 0x70 bit 7
    base_seconds: int      # RTC time (seconds since 1970-01-01, local) at base_ns
    base_ns: int           # virtual time at which second base_seconds began
    pf_checked_ns: int     # PF has been accounted for up to this virtual time
    irq_level: bool        # level driven on IRQ8


class CmosRtc(Device):
    name = "cmos_rtc"

    def __init__(
        self,
        clock: VirtualClock,
        irq: Callable[[bool], None] = no_irq,
        start_time: Optional[datetime] = None,
    ) -> None:
        super().__init__()
        self.clock = clock
        self._irq = irq
        if start_time is None:
            start_time = datetime.now()  # host local time, fixed at machine start
        self.start_time = start_time.replace(microsecond=0, tzinfo=None)
        self._update_timer: Optional[TimerHandle] = None
        self._periodic_timer: Optional[TimerHandle] = None
        self.cmos = bytearray(128)
        self._power_on()

    def port_ranges(self):
        return [(self, RTC_BASE, 2)]

    # -- time keeping ------------------------------------------------------------

    @property
    def running(self) -> bool:
        """The divider runs and updates are not inhibited by SET."""
        return (self.cmos[REG_A] & RA_DV_MASK) == RA_DV_32K and not self.cmos[REG_B] & RB_SET

    def _divider_running(self) -> bool:
        return (self.cmos[REG_A] & RA_DV_MASK) == RA_DV_32K

    def now(self) -> datetime:
        """The RTC's current time (what the registers say, as a datetime)."""
        if self.running:
            secs = self.base_seconds + (self.clock.now_ns - self.base_ns) // NS_PER_SEC
            return _EPOCH + timedelta(seconds=secs)
        decoded = self._decode_registers()
        return decoded if decoded is not None else _EPOCH + timedelta(seconds=self.base_seconds)

    def _encode(self, v: int) -> int:
        return v if self.cmos[REG_B] & RB_DM_BINARY else _to_bcd(v)

    def _decode(self, v: int) -> int:
        return v if self.cmos[REG_B] & RB_DM_BINARY else _from_bcd(v)

    def _encode_hour(self, hour: int) -> int:
        if self.cmos[REG_B] & RB_24H:
            return self._encode(hour)
        h12 = hour % 12 or 12
        return self._encode(h12) | (HOUR_PM if hour >= 12 else 0)

    def _decode_hour(self, v: int) -> int:
        if self.cmos[REG_B] & RB_24H:
            return self._decode(v)
        h12 = self._decode(v & ~HOUR_PM)
        return (h12 % 12) + (12 if v & HOUR_PM else 0)

    def _store_time(self, t: datetime) -> None:
        c = self.cmos
        c[REG_SECONDS] = self._encode(t.second)
        c[REG_MINUTES] = self._encode(t.minute)
        c[REG_HOURS] = self._encode_hour(t.hour)
        c[REG_DAY_OF_WEEK] = self._encode(t.isoweekday() % 7 + 1)
        c[REG_DAY_OF_MONTH] = self._encode(t.day)
        c[REG_MONTH] = self._encode(t.month)
        c[REG_YEAR] = self._encode(t.year % 100)
        c[REG_CENTURY] = self._encode(t.year // 100)

    def _decode_registers(self) -> Optional[datetime]:
        c = self.cmos
        try:
            year = self._decode(c[REG_CENTURY]) * 100 + self._decode(c[REG_YEAR])
            return datetime(
                year, self._decode(c[REG_MONTH]), self._decode(c[REG_DAY_OF_MONTH]),
                self._decode_hour(c[REG_HOURS]), self._decode(c[REG_MINUTES]),
                self._decode(c[REG_SECONDS]),
            )
        except ValueError:
            return None

    def _refresh_registers(self) -> None:
        if self.running:
            self._store_time(self.now())

    def _rebase_from_registers(self) -> None:
        """The guest wrote the time: make the registers the new base time,
        keeping the divider's sub-second phase."""
        t = self._decode_registers()
        if t is None:
            self.oddity("invalid date/time written to the clock registers")
            return
        now = self.clock.now_ns
        self.base_ns = now - (now - self.base_ns) % NS_PER_SEC
        self.base_seconds = int((t - _EPOCH).total_seconds())

    def _uip(self) -> bool:
        if not self.running:
            return False
        phase = (self.clock.now_ns - self.base_ns) % NS_PER_SEC
        return phase >= NS_PER_SEC - UIP_WINDOW_NS

    # -- periodic interrupt ---------------------------------------------------------

    def _period_shift(self) -> int:
        """Periodic interrupt period is 2**shift / 32768 s; 0 when disabled."""
        rate = self.cmos[REG_A] & RA_RS_MASK
        if rate == 0 or not self._divider_running():
            return 0
        if rate < 3:
            rate += 7  # rates 1 and 2 alias 256 Hz and 128 Hz
        return rate - 1

    def _periodic_index(self, t_ns: int, shift: int) -> int:
        """How many periodic ticks lie in (base_ns, t_ns] (the divider's grid)."""
        return ((t_ns - self.base_ns) * 32768) // ((1 << shift) * NS_PER_SEC)

    def _periodic_time(self, index: int, shift: int) -> int:
        return self.base_ns - ((-index * (1 << shift) * NS_PER_SEC) // 32768)

    def periodic_hz(self) -> float:
        shift = self._period_shift()
        return 32768 / (1 << shift) if shift else 0.0

    def _account_pf(self) -> None:
        """Set PF if a periodic tick passed since the last accounting."""
        now = self.clock.now_ns
        shift = self._period_shift()
        if shift and self._periodic_index(now, shift) > self._periodic_index(self.pf_checked_ns, shift):
            self.cmos[REG_C] |= RC_PF
        self.pf_checked_ns = now

    # -- interrupts ----------------------------------------------------------------

    def _update_irq(self) -> None:
        c, b = self.cmos[REG_C], self.cmos[REG_B]
        pending = (c & RC_PF and b & RB_PIE) or (c & RC_AF and b & RB_AIE) or (c & RC_UF and b & RB_UIE)
        if pending:
            self.cmos[REG_C] |= RC_IRQF
        level = bool(self.cmos[REG_C] & RC_IRQF)
        if level != self.irq_level:
            self.irq_level = level
            self._irq(level)

    def _schedule(self) -> None:
        """(Re)arm the update event and, with PIE set, the periodic event."""
        clock = self.clock
        clock.cancel(self._update_timer)
        clock.cancel(self._periodic_timer)
        self._update_timer = self._periodic_timer = None
        now = clock.now_ns
        if self.running:
            # Next second boundary strictly after now.
            nxt = self.base_ns + ((now - self.base_ns) // NS_PER_SEC + 1) * NS_PER_SEC
            self._update_timer = clock.schedule(nxt, self._on_update)
        shift = self._period_shift()
        if shift and self.cmos[REG_B] & RB_PIE:
            nxt = self._periodic_time(self._periodic_index(now, shift) + 1, shift)
            self._periodic_timer = clock.schedule(nxt, self._on_periodic)

    def _on_update(self) -> None:
        # The update cycle: registers advance (they are computed from the
        # clock), UF is set, and the alarm bytes are compared with the new
        # time in the current data format.
        self._update_timer = None
        self._refresh_registers()
        c = self.cmos
        c[REG_C] |= RC_UF
        if all(
            (c[alarm] & ALARM_DONT_CARE) == ALARM_DONT_CARE or c[alarm] == c[reg]
            for alarm, reg in ((REG_SECONDS_ALARM, REG_SECONDS), (REG_MINUTES_ALARM, REG_MINUTES),
                               (REG_HOURS_ALARM, REG_HOURS))
        ):
            c[REG_C] |= RC_AF
        self._account_pf()
        self._update_irq()
        self._schedule()

    def _on_periodic(self) -> None:
        self._periodic_timer = None
        self._account_pf()
        self.cmos[REG_C] |= RC_PF
        self._update_irq()
        self._schedule()

    # -- ports --------------------------------------------------------------------

    @property
    def nmi_masked(self) -> bool:
        """Port 0x70 bit 7 as last written (the monitor gates NMI with it)."""
        return self.nmi_disabled

    def io_read(self, offset: int, size: int) -> int:
        if offset == 0:
            # The index register is write-only on a PC/AT.
            return 0xFF
        return self.read_register(self.index)

    def io_write(self, offset: int, size: int, value: int) -> None:
        if offset == 0:
            self.index = value & IDX_MASK
            self.nmi_disabled = bool(value & IDX_NMI_DISABLE)
            return
        self.write_register(self.index, value)

    def read_register(self, reg: int) -> int:
        c = self.cmos
        if reg in TIME_REGS:
            self._refresh_registers()
            return c[reg]
        if reg == REG_A:
            return (c[REG_A] & ~RA_UIP) | (RA_UIP if self._uip() else 0)
        if reg == REG_C:
            # Reading C returns the flags and clears them, releasing IRQ8.
            self._account_pf()
            value = c[REG_C]
            c[REG_C] = 0
            self._update_irq()
            return value
        if reg == REG_D:
            return RD_VRT
        return c[reg]

    def write_register(self, reg: int, value: int) -> None:
        c = self.cmos
        if reg in TIME_REGS:
            self._refresh_registers()
            c[reg] = value
            if self.running:
                self._rebase_from_registers()
                self._schedule()
            return
        if reg == REG_A:
            was_running = self._divider_running()
            self._account_pf()
            c[REG_A] = value & ~RA_UIP
            dv = value & RA_DV_MASK
            if dv != RA_DV_32K and (dv & RA_DV_RESET) != RA_DV_RESET:
                self.oddity(f"divider select {dv >> 4:03b} (only 32.768 kHz is emulated)", loud=True)
            if not was_running and self._divider_running():
                # Leaving divider reset: the first update comes 500 ms later.
                now = self.clock.now_ns
                t = self._decode_registers()
                if t is not None:
                    self.base_seconds = int((t - _EPOCH).total_seconds())
                self.base_ns = now - NS_PER_SEC // 2
                self.pf_checked_ns = now
            elif was_running and not self._divider_running():
                self._store_time(self.now())
            self._schedule()
            return
        if reg == REG_B:
            old = c[REG_B]
            if value & RB_SET and not old & RB_SET:
                # Setting SET freezes the registers at the current time and
                # clears UIE (data sheet: "UIE is cleared when SET is set").
                self._refresh_registers()
                value &= ~RB_UIE
            if value & RB_DSE:
                self.oddity("daylight-saving enable (DSE)", loud=True)
            self._account_pf()
            c[REG_B] = value
            if old & RB_SET and not value & RB_SET and self._divider_running():
                self._rebase_from_registers()
            self._update_irq()
            self._schedule()
            return
        if reg in (REG_C, REG_D):
            self.oddity(f"write to read-only register {reg:#x}")
            return
        c[reg] = value

    # -- BIOS configuration ------------------------------------------------------------

    def fill_bios_defaults(
        self,
        memory_bytes: int,
        floppy_a: int = FLOPPY_NONE,
        floppy_b: int = FLOPPY_NONE,
        fpu: bool = True,
        display: int = EQ_DISPLAY_VGA,
    ) -> None:
        """Write the configuration bytes a PC BIOS setup program would.

        ``memory_bytes`` is all guest RAM; ``floppy_a``/``floppy_b`` are
        ``FLOPPY_*`` drive types.  Fills 0x10, 0x14, 0x15-0x18, 0x30-0x31,
        0x34-0x35, the century (0x32) and the checksum (0x2E-0x2F).
        """
        c = self.cmos
        c[CMOS_FLOPPY_TYPES] = (floppy_a & 0xF) << 4 | (floppy_b & 0xF)
        drives = (floppy_a != FLOPPY_NONE) + (floppy_b != FLOPPY_NONE)
        equipment = display | (EQ_FPU if fpu else 0)
        if drives:
            equipment |= EQ_FLOPPY | ((drives - 1) << EQ_FLOPPY_COUNT_SHIFT)
        c[CMOS_EQUIPMENT] = equipment
        base_kb = min(memory_bytes // 1024, 640)
        c[CMOS_BASE_MEM_LO], c[CMOS_BASE_MEM_HI] = base_kb & 0xFF, base_kb >> 8
        ext_kb = max(0, min(memory_bytes // 1024 - 1024, 0xFFFF))
        c[CMOS_EXT_MEM_LO], c[CMOS_EXT_MEM_HI] = ext_kb & 0xFF, ext_kb >> 8
        c[CMOS_EXT_MEM2_LO], c[CMOS_EXT_MEM2_HI] = ext_kb & 0xFF, ext_kb >> 8
        above16 = max(0, min((memory_bytes - (16 << 20)) // 65536, 0xFFFF))
        c[CMOS_MEM_16M_LO], c[CMOS_MEM_16M_HI] = above16 & 0xFF, above16 >> 8
        self._store_time(self.now())  # also sets the century byte
        self.update_checksum()

    def update_checksum(self) -> None:
        total = sum(self.cmos[0x10:0x2E]) & 0xFFFF
        self.cmos[CMOS_CHECKSUM_HI], self.cmos[CMOS_CHECKSUM_LO] = total >> 8, total & 0xFF

    # -- lifecycle ---------------------------------------------------------------------

    def _power_on(self) -> None:
        """Battery installed: the time is the start time, the control
        registers hold what a PC BIOS programs at POST."""
        self.index = 0
        self.nmi_disabled = False
        self.irq_level = False
        c = self.cmos
        c[:] = bytes(128)
        c[REG_A] = RA_DV_32K | 0x06  # 32.768 kHz, 1024 Hz periodic rate (BIOS default)
        c[REG_B] = RB_24H            # 24-hour BCD, all interrupts off
        c[REG_C] = 0
        c[REG_D] = RD_VRT
        self.base_seconds = int((self.start_time - _EPOCH).total_seconds())
        self.base_ns = self.clock.now_ns
        self.pf_checked_ns = self.clock.now_ns
        self._store_time(self.start_time)
        self._schedule()

    def reset(self) -> None:
        """System reset.  The RTC is battery-backed: time and RAM survive;
        the chip's RESET input clears PIE, AIE, UIE, SQWE and register C."""
        self.index = 0
        self.nmi_disabled = False
        self._refresh_registers()
        self.cmos[REG_B] &= ~(RB_PIE | RB_AIE | RB_UIE | RB_SQWE)
        self.cmos[REG_C] = 0
        self._update_irq()
        self._schedule()

    def save(self) -> RtcState:
        self._refresh_registers()
        return RtcState(
            cmos=bytes(self.cmos), index=self.index, nmi_disabled=self.nmi_disabled,
            base_seconds=self.base_seconds, base_ns=self.base_ns,
            pf_checked_ns=self.pf_checked_ns, irq_level=self.irq_level,
        )

    def restore(self, state: RtcState) -> None:
        self._check_state(state, RtcState)
        if len(state.cmos) != 128:
            raise SnapshotFormatError(f"cmos_rtc: snapshot has {len(state.cmos)} CMOS bytes, not 128")
        self.cmos[:] = state.cmos
        self.index = state.index
        self.nmi_disabled = state.nmi_disabled
        self.base_seconds = state.base_seconds
        self.base_ns = state.base_ns
        self.pf_checked_ns = state.pf_checked_ns
        self.irq_level = state.irq_level
        self._schedule()
