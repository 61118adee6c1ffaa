"""IRQ0 ticks and int 1Ah against an RTC started at a fixed time."""

from datetime import datetime

import pytest

from devices.clock import NS_PER_SEC
from devices.cmos_rtc import RB_24H, RB_AIE, RB_DM_BINARY, REG_B, REG_HOURS
from monitor.bios import Bios
from monitor.bios import memory as bm
from monitor.bios.post import post
from monitor.bios.standalone import make_machine
from monitor.bios.timeofday import ticks_for

BIOS = Bios()
START = datetime(2024, 6, 1, 12, 34, 56)


@pytest.fixture
def ctx():
    c = make_machine(start_time=START)
    post(c)
    return c


def call(ctx, **regs):
    for name, value in regs.items():
        setattr(ctx.regs, name, value)
    BIOS.service(0x1A, ctx)
    return ctx.regs


def test_post_sets_ticks_from_the_rtc(ctx):
    assert bm.rd32(ctx.mem, bm.BDA_TIMER_TICKS) == ticks_for(12 * 3600 + 34 * 60 + 56)
    assert ticks_for(86400) == bm.TICKS_PER_DAY        # 1800B0h ticks per day


def test_tick_and_read(ctx):
    base = bm.rd32(ctx.mem, bm.BDA_TIMER_TICKS)
    for _ in range(3):
        BIOS.service(0x08, ctx)
    r = call(ctx, ah=0x00)
    assert (r.cx << 16 | r.dx) == base + 3 and r.al == 0 and not r.cf


def test_midnight_rollover_flag_is_read_once(ctx):
    bm.wr32(ctx.mem, bm.BDA_TIMER_TICKS, bm.TICKS_PER_DAY - 1)
    BIOS.service(0x08, ctx)
    r = call(ctx, ah=0x00)
    assert (r.cx, r.dx, r.al) == (0, 0, 1)
    assert call(ctx, ah=0x00).al == 0


def test_set_ticks(ctx):
    call(ctx, ah=0x01, cx=0x0012, dx=0x3456)
    assert bm.rd32(ctx.mem, bm.BDA_TIMER_TICKS) == 0x123456


def test_motor_timeout(ctx):
    ctx.mem[bm.BDA_FLOPPY_MOTOR] = 0x01
    ctx.mem[bm.BDA_FLOPPY_MOTOR_TIMEOUT] = 2
    BIOS.service(0x08, ctx)
    assert ctx.mem[bm.BDA_FLOPPY_MOTOR] == 0x01
    BIOS.service(0x08, ctx)
    assert ctx.mem[bm.BDA_FLOPPY_MOTOR] == 0x00


def test_rtc_time_and_date(ctx):
    r = call(ctx, ah=0x02)
    assert not r.cf and (r.ch, r.cl, r.dh, r.dl) == (0x12, 0x34, 0x56, 0)
    ctx.clock.advance_by(65 * NS_PER_SEC)
    r = call(ctx, ah=0x02)
    assert (r.ch, r.cl, r.dh) == (0x12, 0x36, 0x01)
    r = call(ctx, ah=0x04)
    assert not r.cf and (r.ch, r.cl, r.dh, r.dl) == (0x20, 0x24, 0x06, 0x01)


def test_set_time_and_date(ctx):
    call(ctx, ah=0x03, ch=0x23, cl=0x59, dh=0x58, dl=0)
    call(ctx, ah=0x05, ch=0x19, cl=0x99, dh=0x12, dl=0x31)
    assert ctx.devices.cmos.now() == datetime(1999, 12, 31, 23, 59, 58)
    ctx.clock.advance_by(3 * NS_PER_SEC)
    r = call(ctx, ah=0x04)
    assert (r.ch, r.cl, r.dh, r.dl) == (0x20, 0x00, 0x01, 0x01)


def test_binary_and_12_hour_modes_still_answer_bcd(ctx):
    cmos = ctx.devices.cmos
    cmos.write_register(REG_B, (cmos.read_register(REG_B) | RB_DM_BINARY) & ~RB_24H)
    assert cmos.read_register(REG_HOURS) == 0x80 | 12        # 12 PM, binary
    r = call(ctx, ah=0x02)
    assert (r.ch, r.cl, r.dh) == (0x12, 0x34, 0x56)
    call(ctx, ah=0x03, ch=0x15, cl=0x00, dh=0x00, dl=0)
    assert cmos.read_register(REG_HOURS) == 0x80 | 3         # 3 PM
    assert cmos.now().hour == 15


def test_alarm(ctx):
    cmos = ctx.devices.cmos
    r = call(ctx, ah=0x06, ch=0x12, cl=0x35, dh=0x00)
    assert not r.cf and cmos.read_register(REG_B) & RB_AIE
    assert not ctx.devices.pic.slave.imr & 0x01              # IRQ8 unmasked
    assert call(ctx, ah=0x06, ch=0x12, cl=0x35, dh=0x00).cf  # already set
    call(ctx, ah=0x07)
    assert not cmos.read_register(REG_B) & RB_AIE


def test_stopped_clock_sets_cf(ctx):
    cmos = ctx.devices.cmos
    cmos.write_register(REG_B, cmos.read_register(REG_B) | 0x80)   # SET: updates inhibited
    assert call(ctx, ah=0x02).cf
