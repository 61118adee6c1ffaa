"""Intel 8254 programmable interval timer (three channels at ports 0x40-0x43).

Reference: Intel 8254 Programmable Interval Timer data sheet (order no.
231164-005); PC wiring from the IBM PC/AT Technical Reference: all three
clocks are 1.193182 MHz (14.31818 MHz / 12), channel 0 OUT drives IRQ0,
channel 1 was DRAM refresh, channel 2 drives the speaker and is gated by
port 0x61 bit 0 (see ``port61.py``, which also shows OUT2 at bit 5).

Emulated: modes 0-5 (6 and 7 alias 2 and 3), binary and BCD counting,
lsb / msb / lsb-then-msb access with the read and write flip-flops, the
counter-latch command, the read-back command with the status byte (OUT, null
count, access, mode, BCD), the gate input (suspend in modes 0/4, restart in
modes 2/3, trigger in modes 1/5) and the OUT pin.

How time works: a counter is never ticked.  Each channel remembers the
absolute input-clock tick at which it last (re)started counting, and its
count and OUT are computed from the virtual clock when read.  Channel 0
schedules a clock event at its next OUT transition and drives IRQ0 with the
new level there, so the PIC sees exactly one rising edge per period.

Not emulated: the first-clock load delay of the counting element beyond
"null count is set until the next input clock", the exact count sequence of
mode 3 with an odd reload value (the period and duty cycle are exact, the
values read back are approximated), and a new count written in mode 3
taking effect at the next half cycle (it takes effect at the end of the
current full period, like mode 2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from .base import Device, DeviceState, SnapshotFormatError, no_irq
from .clock import NS_PER_SEC, TimerHandle, VirtualClock

PIT_BASE = 0x40
PIT_FREQ_HZ = 1_193_182  # input clock of all three channels

# --- control word (port 0x43) -----------------------------------------------
CW_SC_SHIFT = 6       # bits 7-6: counter select (3 = read-back command)
CW_SC_READBACK = 3
CW_RW_SHIFT = 4       # bits 5-4: read/write access
RW_LATCH = 0          #   00 counter latch command
RW_LSB = 1            #   01 lsb only
RW_MSB = 2            #   10 msb only
RW_LSB_MSB = 3        #   11 lsb then msb
CW_MODE_SHIFT = 1     # bits 3-1: mode (x10 = 2, x11 = 3)
CW_BCD = 0x01         # bit 0: BCD counting (4 decades)

# --- read-back command (port 0x43, SC = 11) -----------------------------------
RB_NOT_COUNT = 0x20   # bit 5 = 0: latch the count of the selected counters
RB_NOT_STATUS = 0x10  # bit 4 = 0: latch the status of the selected counters
RB_CNT0 = 0x02        # bits 3-1 select counters 2, 1, 0 (bit 1 = counter 0)

# --- status byte (read-back) -----------------------------------------------------
ST_OUT = 0x80         # state of the OUT pin
ST_NULL_COUNT = 0x40  # a count was written but is not yet in the counting element
# bits 5-0 echo RW, mode and BCD from the last control word


def _tick_at(ns: int) -> int:
    """Absolute input-clock tick index at virtual time ``ns`` (ticks since 0)."""
    return ns * PIT_FREQ_HZ // NS_PER_SEC


def _ns_of_tick(tick: int) -> int:
    """The first virtual nanosecond at which ``_tick_at`` reaches ``tick``."""
    return -((-tick * NS_PER_SEC) // PIT_FREQ_HZ)


def _bcd_to_int(v: int) -> int:
    return ((v >> 12) & 0xF) * 1000 + ((v >> 8) & 0xF) * 100 + ((v >> 4) & 0xF) * 10 + (v & 0xF)


def _int_to_bcd(v: int) -> int:
    return ((v // 1000) % 10) << 12 | ((v // 100) % 10) << 8 | ((v // 10) % 10) << 4 | (v % 10)


@dataclass
class ChannelState(DeviceState):
    KIND = "pit8254.channel"
    VERSION = 1
    mode: int                  # 0-5 (6/7 folded to 2/3 at write time)
    access: int                # RW_LSB, RW_MSB or RW_LSB_MSB
    bcd: bool                  # BCD counting
    reload: int                # count register as written (raw 16-bit, BCD if bcd)
    n: int                     # reload in counting units: 1..65536 (binary) or 1..10000 (BCD)
    armed: bool                # a complete count has been written since the control word
    running: bool              # counting element is decrementing
    triggered: bool            # modes 1/5: a gate trigger has occurred
    base_tick: int             # absolute input tick at which the current run started
    elapsed_before: int        # ticks counted before the current run (gate pauses in modes 0/4)
    pending_n: Optional[int]   # modes 2/3: new count waiting for the end of the period
    pending_reload: int        # raw register value that goes with pending_n
    pending_tick: int          # absolute tick at which pending_n takes over
    write_msb_next: bool       # write flip-flop (lsb-then-msb access)
    write_lsb: int             # lsb already written, waiting for the msb
    read_msb_next: bool        # read flip-flop for live (unlatched) reads
    latched: Optional[int]     # counter-latch output latch (16-bit raw), None if not latched
    latch_msb_next: bool       # flip-flop for reading the latch in lsb-then-msb access
    status_latched: Optional[int]  # read-back status byte waiting to be read
    null_count: bool           # status bit 6
    null_clear_tick: Optional[int]  # tick at which null_count clears (None: on trigger)
    gate: bool                 # gate input level
    out_driven: bool           # OUT level last driven onto the IRQ line (channel 0)


@dataclass
class PitState(DeviceState):
    KIND = "pit8254"
    VERSION = 1
    channels: list[ChannelState]  # counters 0, 1, 2


class _Channel:
    def __init__(self, pit: "Pit8254", index: int) -> None:
        self.pit = pit
        self.index = index
        self.power_on()

    def power_on(self) -> None:
        self.mode = 0
        self.access = RW_LSB_MSB
        self.bcd = False
        self.reload = 0
        self.n = 0x10000
        self.armed = False
        self.running = False
        self.triggered = False
        self.base_tick = 0
        self.elapsed_before = 0
        self.pending_n: Optional[int] = None
        self.pending_reload = 0
        self.pending_tick = 0
        self.write_msb_next = False
        self.write_lsb = 0
        self.read_msb_next = False
        self.latched: Optional[int] = None
        self.latch_msb_next = False
        self.status_latched: Optional[int] = None
        self.null_count = True
        self.null_clear_tick: Optional[int] = None
        self.gate = self.index != 2  # channels 0 and 1 have GATE tied high
        self.out_driven = False

    # -- the counting model --------------------------------------------------

    def _modulus(self) -> int:
        return 10000 if self.bcd else 0x10000

    def _sync(self, tick: int) -> None:
        """Apply a mode 2/3 count change whose period boundary has passed."""
        if self.pending_n is not None and tick >= self.pending_tick:
            self.n = self.pending_n
            self.reload = self.pending_reload
            self.base_tick = self.pending_tick
            self.elapsed_before = 0
            self.pending_n = None
        if self.null_count and self.null_clear_tick is not None and tick >= self.null_clear_tick:
            self.null_count = False

    def _elapsed(self, tick: int) -> int:
        if self.running:
            return self.elapsed_before + tick - self.base_tick
        return self.elapsed_before

    def out(self, tick: int) -> bool:
        """Level of the OUT pin at absolute input tick ``tick``."""
        self._sync(tick)
        mode, n = self.mode, self.n
        if not self.armed:
            return mode != 0  # after a control word: mode 0 OUT low, others high
        k = self._elapsed(tick)
        if mode == 0:
            return k >= n
        if mode == 1:
            return (not self.triggered) or k >= n
        if mode == 2:
            return not self.running or (k % n) != n - 1
        if mode == 3:
            return not self.running or (k % n) < (n + 1) // 2
        if mode == 4:
            return k != n
        # mode 5
        return (not self.triggered) or k != n

    def count(self, tick: int) -> int:
        """Value of the counting element (in counting units, 1..modulus)."""
        self._sync(tick)
        mode, n = self.mode, self.n
        if not self.armed or (mode in (1, 5) and not self.triggered):
            return n
        k = self._elapsed(tick)
        if mode == 2:
            return n - (k % n) if self.running else n
        if mode == 3:
            if not self.running:
                return n
            j = k % n
            half = (n + 1) // 2
            v = (n & ~1) - 2 * (j if j < half else j - half)
            return v if v > 0 else 2
        return (n - k) % self._modulus() or self._modulus()

    def count_raw(self, tick: int) -> int:
        v = self.count(tick)
        if self.bcd:
            return _int_to_bcd(v % 10000)
        return v & 0xFFFF

    def ticks_to_transition(self, tick: int) -> Optional[int]:
        """Input ticks from ``tick`` until OUT next changes, or None if never."""
        self._sync(tick)
        if not self.armed or not self.running:
            return None
        mode, n = self.mode, self.n
        k = self._elapsed(tick)
        if mode == 0:
            return n - k if k < n else None
        if mode == 1:
            return n - k if self.triggered and k < n else None
        if mode == 2:
            j = k % n
            step = (n - 1 - j) if j < n - 1 else 1
        elif mode == 3:
            j = k % n
            half = (n + 1) // 2
            step = half - j if j < half else n - j
        else:  # modes 4 and 5: one low tick at terminal count
            if mode == 5 and not self.triggered:
                return None
            if k < n:
                return n - k
            return 1 if k == n else None
        if self.pending_n is not None:
            step = min(step, self.pending_tick - tick)
        return max(step, 1)

    def status(self, tick: int) -> int:
        out = ST_OUT if self.out(tick) else 0
        null = ST_NULL_COUNT if self.null_count else 0
        return out | null | (self.access << CW_RW_SHIFT) | (self.mode << CW_MODE_SHIFT) | int(self.bcd)

    # -- guest programming ------------------------------------------------------

    def control(self, value: int, tick: int) -> None:
        access = (value >> CW_RW_SHIFT) & 3
        if access == RW_LATCH:
            # Counter latch: freeze the count in the output latch until read;
            # a second latch before the first is read is ignored.
            if self.latched is None:
                self.latched = self.count_raw(tick)
                self.latch_msb_next = False
            return
        mode = (value >> CW_MODE_SHIFT) & 7
        if mode >= 6:
            mode -= 4  # 110 and 111 are modes 2 and 3
        # A control word resets the counter's logic: OUT to its initial
        # level, counting stops until a new count is written.
        self.mode = mode
        self.access = access
        self.bcd = bool(value & CW_BCD)
        self.armed = False
        self.running = False
        self.triggered = False
        self.elapsed_before = 0
        self.pending_n = None
        self.write_msb_next = False
        self.read_msb_next = False
        self.latched = None
        self.status_latched = None
        self.null_count = True
        self.null_clear_tick = None

    def write_count(self, value: int, tick: int) -> None:
        if self.access == RW_LSB:
            raw = value
        elif self.access == RW_MSB:
            raw = value << 8
        elif not self.write_msb_next:
            self.write_lsb = value
            self.write_msb_next = True
            if self.mode == 0:
                # Mode 0: writing the first byte stops the count (and OUT
                # goes low) until the second byte completes the new count.
                if self.armed:
                    self.elapsed_before = self._elapsed(tick)
                self.running = False
                self.armed = False
            return
        else:
            raw = self.write_lsb | (value << 8)
            self.write_msb_next = False
        self._load(raw, tick)

    def _load(self, raw: int, tick: int) -> None:
        n = _bcd_to_int(raw) if self.bcd else raw
        if n == 0:
            n = self._modulus()
        mode = self.mode
        if mode in (2, 3) and n == 1:
            n = 2  # a count of 1 is illegal in modes 2 and 3
            self.pit.oddity(f"count 1 in mode {mode}")
        self.null_count = True
        if mode in (2, 3) and self.armed and self.running:
            # Periodic modes: a new count takes effect at the end of the
            # current period, without disturbing it.
            k = self._elapsed(tick)
            rest = self.n - (k % self.n)
            self.pending_n = n
            self.pending_reload = raw
            self.pending_tick = tick + rest
            self.null_clear_tick = self.pending_tick
            return
        self.reload = raw
        self.n = n
        self.armed = True
        self.pending_n = None
        self.elapsed_before = 0
        self.base_tick = tick
        if mode in (1, 5):
            # Hardware-triggered modes wait for a rising edge on GATE.
            self.running = self.triggered
            if not self.triggered:
                self.null_clear_tick = None
            else:
                self.null_clear_tick = tick + 1
        else:
            self.running = self.gate
            self.null_clear_tick = tick + 1

    def set_gate(self, level: bool, tick: int) -> None:
        if level == self.gate:
            return
        self._sync(tick)
        self.gate = level
        mode = self.mode
        if mode in (0, 4):
            # Gate low suspends counting; high resumes it.
            if not level:
                self.elapsed_before = self._elapsed(tick)
                self.running = False
            elif self.armed:
                self.base_tick = tick
                self.running = True
        elif mode in (2, 3):
            # Gate low stops counting and forces OUT high; the rising edge
            # reloads the count and starts a new period.
            if not level:
                self.running = False
                if self.pending_n is not None:
                    self.n, self.reload, self.pending_n = self.pending_n, self.pending_reload, None
            elif self.armed:
                self.elapsed_before = 0
                self.base_tick = tick
                self.running = True
        elif level and self.armed:
            # Modes 1 and 5: a rising edge (re)triggers the count.
            self.triggered = True
            self.running = True
            self.elapsed_before = 0
            self.base_tick = tick
            if self.null_count:
                self.null_clear_tick = tick + 1

    def read(self, tick: int) -> int:
        if self.status_latched is not None:
            value = self.status_latched
            self.status_latched = None
            return value
        if self.latched is not None:
            latched = self.latched
            if self.access == RW_LSB:
                self.latched = None
                return latched & 0xFF
            if self.access == RW_MSB:
                self.latched = None
                return latched >> 8
            if not self.latch_msb_next:
                self.latch_msb_next = True
                return latched & 0xFF
            self.latched = None
            self.latch_msb_next = False
            return latched >> 8
        raw = self.count_raw(tick)
        if self.access == RW_LSB:
            return raw & 0xFF
        if self.access == RW_MSB:
            return raw >> 8
        msb = self.read_msb_next
        self.read_msb_next = not msb
        return raw >> 8 if msb else raw & 0xFF

    def save(self) -> ChannelState:
        return ChannelState(**{name: getattr(self, name) for name in ChannelState.__dataclass_fields__})

    def restore(self, s: ChannelState) -> None:
        for name in ChannelState.__dataclass_fields__:
            setattr(self, name, getattr(s, name))


class Pit8254(Device):
    """The PC's 8254: ``irq`` is IRQ0 (driven with channel 0's OUT level)."""

    name = "pit"

    def __init__(self, clock: VirtualClock, irq: Callable[[bool], None] = no_irq) -> None:
        super().__init__()
        self.clock = clock
        self._irq = irq
        self.channels = [_Channel(self, i) for i in range(3)]
        self._timer: Optional[TimerHandle] = None
        #: IRQ0 rising edges produced (statistics).
        self.irq0_edges = 0

    def port_ranges(self):
        return [(self, PIT_BASE, 4)]

    def _tick(self) -> int:
        return _tick_at(self.clock.now_ns)

    # -- ports -----------------------------------------------------------------

    def io_read(self, offset: int, size: int) -> int:
        if offset == 3:
            # The control register is write-only; an 8254 does not drive
            # the bus on this read.
            self.oddity("read of the control word register")
            return 0xFF
        return self.channels[offset].read(self._tick())

    def io_write(self, offset: int, size: int, value: int) -> None:
        tick = self._tick()
        if offset < 3:
            self.channels[offset].write_count(value, tick)
            if offset == 0:
                self._reschedule()
            return
        sc = value >> CW_SC_SHIFT
        if sc == CW_SC_READBACK:
            self._read_back(value, tick)
            return
        self.channels[sc].control(value, tick)
        if sc == 0:
            self._reschedule()

    def _read_back(self, value: int, tick: int) -> None:
        # Read-back: latch count and/or status of each selected counter.  A
        # counter whose count or status is already latched keeps the older
        # value (the data sheet's "only the first latch is effective").
        for i, ch in enumerate(self.channels):
            if not value & (RB_CNT0 << i):
                continue
            if not value & RB_NOT_STATUS and ch.status_latched is None:
                ch.status_latched = ch.status(tick)
            if not value & RB_NOT_COUNT and ch.latched is None:
                ch.latched = ch.count_raw(tick)
                ch.latch_msb_next = False

    def bios_init(self) -> None:
        """Program channel 0 as the PC BIOS does at POST: mode 3, count 0
        (65536: 18.2 Hz IRQ0), through the ports."""
        self.io_write(3, 1, 0x36)
        self.io_write(0, 1, 0x00)
        self.io_write(0, 1, 0x00)

    # -- host side (port 0x61, speaker) -------------------------------------------

    def set_gate(self, channel: int, level: bool) -> None:
        """Drive the GATE input of ``channel`` (only channel 2's is wired)."""
        self.channels[channel].set_gate(bool(level), self._tick())
        if channel == 0:
            self._reschedule()

    def gate(self, channel: int) -> bool:
        return self.channels[channel].gate

    def out(self, channel: int) -> bool:
        """Current level of the OUT pin of ``channel``."""
        return self.channels[channel].out(self._tick())

    # -- channel 0 -> IRQ0 -------------------------------------------------------

    def _reschedule(self) -> None:
        """Drive IRQ0 with OUT0's level now and schedule its next change."""
        self.clock.cancel(self._timer)
        self._timer = None
        ch = self.channels[0]
        tick = self._tick()
        self._drive(ch.out(tick))
        delta = ch.ticks_to_transition(tick)
        if delta is not None:
            self._timer = self.clock.schedule(_ns_of_tick(tick + delta), self._on_transition)

    def _on_transition(self) -> None:
        self._timer = None
        self._reschedule()

    def _drive(self, level: bool) -> None:
        ch = self.channels[0]
        if level != ch.out_driven:
            ch.out_driven = level
            if level:
                self.irq0_edges += 1
            self._irq(level)

    # -- lifecycle ----------------------------------------------------------------

    def reset(self) -> None:
        for ch in self.channels:
            ch.power_on()
        self.clock.cancel(self._timer)
        self._timer = None
        self._irq(False)

    def save(self) -> PitState:
        return PitState(channels=[ch.save() for ch in self.channels])

    def restore(self, state: PitState) -> None:
        self._check_state(state, PitState)
        if len(state.channels) != 3:
            raise SnapshotFormatError(f"pit: snapshot has {len(state.channels)} channels, not 3")
        for ch, s in zip(self.channels, state.channels):
            ch.restore(s)
        # The IRQ0 level is in the PIC's own snapshot; only the timer is
        # host-side and must be re-armed.
        self.clock.cancel(self._timer)
        self._timer = None
        ch0 = self.channels[0]
        tick = self._tick()
        delta = ch0.ticks_to_transition(tick)
        if delta is not None:
            self._timer = self.clock.schedule(_ns_of_tick(tick + delta), self._on_transition)
