"""8254 PIT and port 0x61, driven through ports 0x40-0x43 / 0x61 with exact virtual time."""

import json

import pytest

from devices.base import PortBus
from devices.clock import ClockState, VirtualClock
from devices.pit8254 import PIT_FREQ_HZ, PitState, Pit8254
from devices.port61 import Port61State, SystemControlPortB


def ns(ticks):
    """Virtual ns at which the PIT input clock has made ``ticks`` ticks since 0."""
    return -((-ticks * 1_000_000_000) // PIT_FREQ_HZ)


class Edges:
    """An IRQ0 sink that records levels and counts rising edges with their times."""

    def __init__(self, clock):
        self.clock = clock
        self.level = False
        self.rising = []

    def __call__(self, level):
        if level and not self.level:
            self.rising.append(self.clock.now_ns)
        self.level = level


@pytest.fixture
def m():
    clock = VirtualClock()
    bus = PortBus()
    edges = Edges(clock)
    pit = bus.attach(Pit8254(clock, edges))
    port61 = bus.attach(SystemControlPortB(pit))
    return clock, bus, pit, edges, port61


def program(bus, channel, mode, count, access=3, bcd=False):
    bus.write(0x43, 1, (channel << 6) | (access << 4) | (mode << 1) | int(bcd))
    if access in (1, 3):
        bus.write(0x40 + channel, 1, count & 0xFF)
    if access in (2, 3):
        bus.write(0x40 + channel, 1, (count >> 8) & 0xFF)


def read_back_status(bus, channel):
    bus.write(0x43, 1, 0xE0 | (2 << channel))  # read-back: latch status only
    return bus.read(0x40 + channel, 1)


def latch_count(bus, channel):
    bus.write(0x43, 1, channel << 6)  # counter latch command
    lo = bus.read(0x40 + channel, 1)
    hi = bus.read(0x40 + channel, 1)
    return lo | hi << 8


def test_mode2_rate_generator_gives_one_edge_per_period(m):
    clock, bus, pit, edges, _ = m
    program(bus, 0, 2, 1193)  # ~1000 Hz, as Linux programs it
    edges.rising.clear()      # the control word itself raised OUT (from power-on low)
    clock.advance_to(ns(1193 * 1000))
    assert len(edges.rising) == 1000
    # Each edge sits exactly on a multiple of the period in input ticks.
    assert edges.rising[:3] == [ns(1193), ns(2 * 1193), ns(3 * 1193)]
    clock.advance_to(ns(1193 * 1000 + 1192))
    assert len(edges.rising) == 1000


def test_mode2_out_is_low_for_exactly_one_tick(m):
    clock, bus, pit, _, _ = m
    program(bus, 0, 2, 100)
    clock.advance_to(ns(98))
    assert pit.out(0)
    clock.advance_to(ns(99))
    assert not pit.out(0)  # count = 1
    clock.advance_to(ns(100))
    assert pit.out(0)      # reload


def test_mode3_square_wave_duty_cycle_and_edges(m):
    clock, bus, pit, edges, _ = m
    program(bus, 0, 3, 1000)
    edges.rising.clear()
    clock.advance_to(ns(499))
    assert read_back_status(bus, 0) & 0x80       # high for the first half
    clock.advance_to(ns(500))
    assert not read_back_status(bus, 0) & 0x80   # low for the second half
    clock.advance_to(ns(10_000))
    assert edges.rising == [ns(1000 * k) for k in range(1, 11)]
    # The count runs down by two, twice per period.
    clock.advance_to(ns(10_000 + 100))
    assert latch_count(bus, 0) == 1000 - 200


def test_bios_default_18_2_hz(m):
    clock, bus, _, edges, _ = m
    program(bus, 0, 3, 0)  # count 0 = 65536
    edges.rising.clear()
    clock.advance_to(10 * 1_000_000_000)
    assert len(edges.rising) == 10 * PIT_FREQ_HZ // 65536  # 182


def test_counter_latch_freezes_the_value_until_read(m):
    clock, bus, _, _, _ = m
    program(bus, 0, 2, 5000)
    clock.advance_to(ns(1234))
    bus.write(0x43, 1, 0x00)  # latch channel 0
    clock.advance_to(ns(3000))
    bus.write(0x43, 1, 0x00)  # a second latch before reading is ignored
    lo = bus.read(0x40, 1)
    clock.advance_to(ns(4000))
    hi = bus.read(0x40, 1)
    assert lo | hi << 8 == 5000 - 1234
    assert latch_count(bus, 0) == 5000 - 4000  # latch released: a fresh value


def test_read_back_status_byte_and_null_count(m):
    clock, bus, _, _, _ = m
    bus.write(0x43, 1, 0b10_11_010_1)  # channel 2, lsb/msb, mode 2, BCD
    status = read_back_status(bus, 2)
    assert status & 0x3F == 0b11_010_1
    assert status & 0x40  # null count: no count yet
    bus.write(0x42, 1, 0x00)
    bus.write(0x42, 1, 0x10)  # BCD 1000
    assert read_back_status(bus, 2) & 0x40  # not yet loaded...
    bus.write(0x61, 1, 0x01)                # gate channel 2 on
    clock.advance_to(clock.now_ns + ns(2))
    assert not read_back_status(bus, 2) & 0x40  # ...loaded after a clock


def test_read_back_latches_count_and_status_together(m):
    clock, bus, _, _, _ = m
    program(bus, 0, 0, 300)
    clock.advance_to(ns(100))
    bus.write(0x43, 1, 0xC2)  # read-back, count and status, channel 0
    clock.advance_to(ns(200))
    status = bus.read(0x40, 1)
    assert status == 0b0_0_11_000_0  # OUT low, loaded, lsb/msb, mode 0, binary
    assert bus.read(0x40, 1) | bus.read(0x40, 1) << 8 == 200


def test_mode0_interrupt_on_terminal_count(m):
    clock, bus, pit, edges, _ = m
    program(bus, 0, 0, 1000)
    assert not pit.out(0)
    clock.advance_to(ns(999))
    assert edges.rising == []
    clock.advance_to(ns(5000))
    assert edges.rising == [ns(1000)]  # exactly one edge, OUT stays high
    assert pit.out(0)
    # The counter keeps counting down (wrapping) after terminal count.
    assert latch_count(bus, 0) == (1000 - 5000) % 65536


def test_mode0_first_byte_stops_counting(m):
    clock, bus, pit, edges, _ = m
    program(bus, 0, 0, 1000)
    clock.advance_to(ns(500))
    bus.write(0x40, 1, 0x10)  # lsb of a new count: counting stops
    clock.advance_to(ns(2000))
    assert edges.rising == []
    bus.write(0x40, 1, 0x00)  # msb: new count 16 starts now
    clock.advance_to(ns(2000) + ns(16) + 1000)
    assert len(edges.rising) == 1


def test_mode4_software_strobe_as_linux_oneshot(m):
    clock, bus, pit, edges, _ = m
    program(bus, 0, 4, 500)
    edges.rising.clear()
    clock.advance_to(ns(10_000))
    # OUT is low for one clock at terminal count, then high: one rising edge.
    assert edges.rising == [ns(501)]
    program(bus, 0, 4, 100)
    edges.rising.clear()
    clock.advance_to(ns(20_000))
    assert edges.rising == [ns(10_000 + 101)]


def test_bcd_counting(m):
    clock, bus, _, edges, _ = m
    program(bus, 0, 2, 0x1000, bcd=True)  # BCD 1000 -> period 1000 ticks
    edges.rising.clear()
    clock.advance_to(ns(5000))
    assert len(edges.rising) == 5
    clock.advance_to(ns(5000 + 1))
    assert latch_count(bus, 0) == 0x0999


def test_lsb_only_and_msb_only_access(m):
    clock, bus, _, _, _ = m
    program(bus, 1, 2, 0x12, access=1)
    assert bus.read(0x41, 1) == 0x12
    program(bus, 1, 0, 0x0200, access=2)
    clock.advance_to(ns(0x100))
    assert bus.read(0x41, 1) == 0x01  # msb of 0x0100


def test_new_count_in_mode2_takes_effect_at_the_end_of_the_period(m):
    clock, bus, _, edges, _ = m
    program(bus, 0, 2, 1000)
    edges.rising.clear()
    clock.advance_to(ns(400))
    bus.write(0x40, 1, 100)
    bus.write(0x40, 1, 0)
    clock.advance_to(ns(1300))
    assert edges.rising == [ns(1000), ns(1100), ns(1200), ns(1300)]


def test_channel2_gate_and_out_through_port61(m):
    clock, bus, pit, _, port61 = m
    program(bus, 2, 0, 100)
    clock.advance_to(ns(500))
    assert not bus.read(0x61, 1) & 0x20  # gate low: counting suspended
    bus.write(0x61, 1, 0x01)
    start = clock.now_ns
    clock.advance_to(start + ns(99))
    assert not bus.read(0x61, 1) & 0x20
    clock.advance_to(start + ns(101))
    assert bus.read(0x61, 1) & 0x20      # OUT2 high at terminal count
    assert bus.read(0x61, 1) & 0x01      # gate bit reads back
    assert not port61.speaker_on
    bus.write(0x61, 1, 0x03)
    assert port61.speaker_on


def test_port61_refresh_bit_toggles(m):
    _, bus, _, _, _ = m
    values = {bus.read(0x61, 1) & 0x10 for _ in range(4)}
    assert values == {0x00, 0x10}


def test_mode3_gate_low_forces_out_high_and_restarts(m):
    clock, bus, pit, _, _ = m
    bus.write(0x61, 1, 0x01)
    program(bus, 2, 3, 100)
    clock.advance_to(ns(60))
    assert not pit.out(2)
    bus.write(0x61, 1, 0x00)
    assert pit.out(2)
    bus.write(0x61, 1, 0x01)
    t = clock.now_ns
    clock.advance_to(t + ns(49))
    assert pit.out(2)


def test_mode1_one_shot_triggered_by_gate(m):
    clock, bus, pit, _, _ = m
    program(bus, 2, 1, 50)
    clock.advance_to(ns(1000))
    assert pit.out(2)  # waiting for a trigger
    bus.write(0x61, 1, 0x01)
    t0 = clock.now_ns
    clock.advance_to(t0 + ns(10))
    assert not pit.out(2)
    clock.advance_to(t0 + ns(60))
    assert pit.out(2)


def test_snapshot_keeps_latch_in_flight_and_timer_phase(m):
    clock, bus, pit, edges, port61 = m
    program(bus, 0, 2, 1000)
    bus.write(0x61, 1, 0x01)
    program(bus, 2, 0, 3000)
    clock.advance_to(ns(2500))
    bus.write(0x43, 1, 0x00)  # latch channel 0 ...
    assert bus.read(0x40, 1) == (500 & 0xFF)  # ... and read only the lsb
    pit_data = json.loads(json.dumps(pit.save().to_dict()))
    p61_data = json.loads(json.dumps(port61.save().to_dict()))
    clock_state = ClockState.from_dict(json.loads(json.dumps(clock.save().to_dict())))

    clock2 = VirtualClock()
    bus2 = PortBus()
    edges2 = Edges(clock2)
    pit2 = bus2.attach(Pit8254(clock2, edges2))
    p61b = bus2.attach(SystemControlPortB(pit2))
    clock2.restore(clock_state)
    pit2.restore(PitState.from_dict(pit_data))
    p61b.restore(Port61State.from_dict(p61_data))
    clock2.advance_to(ns(2900))
    assert bus2.read(0x40, 1) == 500 >> 8  # the latched msb survived
    clock2.advance_to(ns(5000))
    assert edges2.rising == [ns(3000), ns(4000), ns(5000)]
    assert bus2.read(0x61, 1) & 0x20  # channel 2 reached terminal count at 3000


def test_bios_init_helper_programs_18_2_hz(m):
    clock, bus, pit, edges, _ = m
    pit.bios_init()
    assert read_back_status(bus, 0) & 0x3F == 0b11_011_0
    edges.rising.clear()
    clock.advance_to(ns(65536 * 3))
    assert edges.rising == [ns(65536), ns(2 * 65536), ns(3 * 65536)]


def test_mode5_hardware_strobe_retriggers_on_gate(m):
    clock, bus, pit, _, _ = m
    program(bus, 2, 5, 30)
    clock.advance_to(ns(100))
    assert pit.out(2)              # no trigger yet: no strobe
    bus.write(0x61, 1, 0x01)       # rising gate edge starts the count
    t0 = clock.now_ns
    clock.advance_to(t0 + ns(30))
    assert not pit.out(2)          # one-clock strobe at terminal count
    clock.advance_to(t0 + ns(31))
    assert pit.out(2)
    bus.write(0x61, 1, 0x00)
    bus.write(0x61, 1, 0x01)       # retrigger
    t1 = clock.now_ns
    clock.advance_to(t1 + ns(30))
    assert not pit.out(2)
