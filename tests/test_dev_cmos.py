"""MC146818 RTC/CMOS through ports 0x70/0x71 with exact virtual time."""

import json
from datetime import datetime

import pytest

from devices.base import PortBus
from devices.clock import ClockState, VirtualClock
from devices.cmos_rtc import FLOPPY_1_44M, FLOPPY_NONE, CmosRtc, RtcState
from irqprobe import Irq

SEC = 1_000_000_000
START = datetime(2024, 2, 29, 23, 59, 58)  # a Thursday, leap day


@pytest.fixture
def m():
    clock = VirtualClock()
    bus = PortBus()
    irq = Irq()
    rtc = bus.attach(CmosRtc(clock, irq, start_time=START))
    return clock, bus, rtc, irq


def rd(bus, reg):
    bus.write(0x70, 1, reg)
    return bus.read(0x71, 1)


def wr(bus, reg, value):
    bus.write(0x70, 1, reg)
    bus.write(0x71, 1, value)


def time_regs(bus):
    return [rd(bus, r) for r in (0, 2, 4, 6, 7, 8, 9, 0x32)]


def test_start_time_in_bcd_24h(m):
    _, bus, _, _ = m
    # sec, min, hour, weekday (Thu = 5), day, month, year, century
    assert time_regs(bus) == [0x58, 0x59, 0x23, 0x05, 0x29, 0x02, 0x24, 0x20]
    assert rd(bus, 0x0D) == 0x80  # valid RAM and time
    assert rd(bus, 0x0A) & 0x7F == 0x26
    assert rd(bus, 0x0B) == 0x02


def test_time_advances_with_the_virtual_clock_across_month_end(m):
    clock, bus, rtc, _ = m
    clock.advance_to(2 * SEC - 1)
    assert rd(bus, 0) == 0x59
    clock.advance_to(2 * SEC)
    assert time_regs(bus) == [0x00, 0x00, 0x00, 0x06, 0x01, 0x03, 0x24, 0x20]
    assert rtc.now() == datetime(2024, 3, 1, 0, 0, 0)


def test_binary_and_12_hour_formats(m):
    _, bus, _, _ = m
    wr(bus, 0x0B, 0x06)  # binary, 24h
    assert time_regs(bus) == [58, 59, 23, 5, 29, 2, 24, 20]
    wr(bus, 0x0B, 0x04)  # binary, 12h: 23h = 11 PM
    assert rd(bus, 4) == 0x80 | 11
    wr(bus, 0x0B, 0x00)  # BCD, 12h
    assert rd(bus, 4) == 0x80 | 0x11


def test_guest_sets_the_time_with_set_bit(m):
    clock, bus, rtc, _ = m
    wr(bus, 0x0B, 0x82)  # SET: updates inhibited
    for reg, value in ((0, 0x30), (2, 0x15), (4, 0x08), (7, 0x04), (8, 0x07), (9, 0x99), (0x32, 0x19)):
        wr(bus, reg, value)
    clock.advance_to(5 * SEC)
    assert rd(bus, 0) == 0x30  # frozen while SET
    wr(bus, 0x0B, 0x02)        # release: runs from the written time
    clock.advance_to(8 * SEC)
    assert rtc.now() == datetime(1999, 7, 4, 8, 15, 33)
    assert rd(bus, 9) == 0x99 and rd(bus, 0x32) == 0x19


def test_update_in_progress_flag_timing(m):
    clock, bus, _, _ = m
    clock.advance_to(SEC // 2)
    assert not rd(bus, 0x0A) & 0x80
    clock.advance_to(SEC - 244_000 - 1)
    assert not rd(bus, 0x0A) & 0x80
    clock.advance_to(SEC - 244_000)
    assert rd(bus, 0x0A) & 0x80
    assert rd(bus, 0) == 0x58  # registers still show the old second
    clock.advance_to(SEC)
    assert not rd(bus, 0x0A) & 0x80
    assert rd(bus, 0) == 0x59


@pytest.mark.parametrize("rate,hz", [(6, 1024), (15, 2), (1, 256), (2, 128), (3, 8192)])
def test_periodic_interrupt_rate(m, rate, hz):
    clock, bus, rtc, irq = m
    count = 0

    def handler(level):
        # The guest's IRQ8 handler: count and acknowledge by reading C.
        nonlocal count
        irq(level)
        if level:
            count += 1
            assert rtc.read_register(0x0C) & 0xC0 == 0xC0  # IRQF | PF

    rtc._irq = handler
    wr(bus, 0x0A, 0x20 | rate)
    wr(bus, 0x0B, 0x42)  # PIE
    clock.advance_to(SEC)
    assert count == hz
    assert rtc.periodic_hz() == hz


def test_pf_is_set_even_without_pie_and_read_clears(m):
    clock, bus, _, irq = m
    clock.advance_to(SEC // 1024 + 1)
    assert rd(bus, 0x0C) == 0x40  # PF but not IRQF
    assert rd(bus, 0x0C) == 0x00
    assert irq.rising == 0


def test_update_ended_interrupt_once_per_second(m):
    clock, bus, _, irq = m
    wr(bus, 0x0B, 0x12)  # UIE
    clock.advance_to(SEC)
    assert irq.level and irq.rising == 1
    assert rd(bus, 0x0C) & 0x90 == 0x90  # IRQF | UF
    assert not irq.level
    clock.advance_to(3 * SEC)
    assert irq.rising == 2  # the line stays high until C is read
    rd(bus, 0x0C)
    clock.advance_to(4 * SEC)
    assert irq.rising == 3


def test_alarm_interrupt_with_dont_care_bytes(m):
    clock, bus, _, irq = m
    wr(bus, 1, 0x05)  # seconds = 05
    wr(bus, 3, 0xC0)  # any minute
    wr(bus, 5, 0xFF)  # any hour
    wr(bus, 0x0B, 0x22)  # AIE
    clock.advance_to(6 * SEC)  # 23:59:58 -> 00:00:04
    assert irq.rising == 0
    clock.advance_to(7 * SEC)  # 00:00:05
    assert irq.rising == 1
    assert rd(bus, 0x0C) & 0xA0 == 0xA0


def test_set_bit_clears_uie(m):
    _, bus, _, _ = m
    wr(bus, 0x0B, 0x12)
    wr(bus, 0x0B, 0x92)
    assert rd(bus, 0x0B) == 0x82


def test_nmi_mask_bit_and_cmos_ram(m):
    _, bus, rtc, _ = m
    bus.write(0x70, 1, 0x80 | 0x40)
    bus.write(0x71, 1, 0xA5)
    assert rtc.nmi_masked
    assert rd(bus, 0x40) == 0xA5
    assert not rtc.nmi_masked
    assert bus.read(0x70, 1) == 0xFF  # index register is write-only


def test_bios_defaults_and_checksum(m):
    _, bus, rtc, _ = m
    rtc.fill_bios_defaults(memory_bytes=32 << 20, floppy_a=FLOPPY_1_44M, floppy_b=FLOPPY_NONE)
    assert rd(bus, 0x10) == 0x40
    assert rd(bus, 0x14) == 0x03  # one floppy, FPU, VGA
    assert rd(bus, 0x15) | rd(bus, 0x16) << 8 == 640
    assert rd(bus, 0x17) | rd(bus, 0x18) << 8 == 31 * 1024
    assert rd(bus, 0x30) | rd(bus, 0x31) << 8 == 31 * 1024
    assert rd(bus, 0x34) | rd(bus, 0x35) << 8 == (16 << 20) // 65536
    assert rd(bus, 0x32) == 0x20
    total = sum(rd(bus, r) for r in range(0x10, 0x2E))
    assert rd(bus, 0x2E) << 8 | rd(bus, 0x2F) == total
    rtc.fill_bios_defaults(memory_bytes=512 << 20)
    assert rd(bus, 0x17) | rd(bus, 0x18) << 8 == 0xFFFF  # capped
    assert rd(bus, 0x14) & 0xC1 == 0


def test_snapshot_keeps_flags_irq_and_time(m):
    clock, bus, rtc, irq = m
    wr(bus, 0x0B, 0x12)
    wr(bus, 0x50, 0x77)
    clock.advance_to(SEC + SEC // 4)
    assert irq.level  # UF pending, not yet acknowledged
    bus.write(0x70, 1, 0x8C)  # NMI masked, index at C
    data = json.loads(json.dumps(rtc.save().to_dict()))
    clock_state = ClockState.from_dict(clock.save().to_dict())

    clock2 = VirtualClock()
    bus2 = PortBus()
    irq2 = Irq()
    rtc2 = bus2.attach(CmosRtc(clock2, irq2, start_time=datetime(2000, 1, 1)))
    clock2.restore(clock_state)
    rtc2.restore(RtcState.from_dict(data))
    assert rtc2.nmi_masked
    assert bus2.read(0x71, 1) & 0x90 == 0x90  # the pending UF is read from C
    assert rd(bus2, 0x50) == 0x77
    assert rtc2.now() == datetime(2024, 2, 29, 23, 59, 59)
    clock2.advance_to(2 * SEC)
    assert irq2.rising == 1  # the 1 Hz update event was rescheduled
    assert rtc2.now() == datetime(2024, 3, 1)


def test_default_start_time_is_host_local_time():
    before = datetime.now().replace(microsecond=0)
    rtc = CmosRtc(VirtualClock())
    after = datetime.now()
    assert before <= rtc.now() <= after
