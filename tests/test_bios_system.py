"""int 15h: memory sizes, the E820 map and its continuation protocol, A20,
block move, configuration table; int 14h/17h/05h."""

import struct

import pytest
from hypothesis import given, settings, strategies as st

from monitor.bios import Bios
from monitor.bios import memory as bm
from monitor.bios import rom as R
from monitor.bios.post import post
from monitor.bios.standalone import make_machine
from monitor.bios.system import E820_RAM, E820_RESERVED, SMAP, e820_map

BIOS = Bios()
MB = 1 << 20


@pytest.fixture
def ctx():
    c = make_machine(memory_size=32 * MB)
    post(c)
    return c


def call(ctx, vector=0x15, **regs):
    for name, value in regs.items():
        setattr(ctx.regs, name, value)
    BIOS.service(vector, ctx)
    return ctx.regs


def e820_walk(ctx, size=20):
    entries, ebx = [], 0
    for _ in range(32):
        r = call(ctx, eax=0xE820, edx=SMAP, ebx=ebx, ecx=size, es=0x0100, di=0)
        assert not r.cf and r.eax == SMAP and r.ecx == size
        entries.append(struct.unpack_from("<QQI", ctx.mem, 0x1000))
        if size == 24:
            assert struct.unpack_from("<I", ctx.mem, 0x1014)[0] == 1
        ebx = r.ebx
        if ebx == 0:
            return entries
    raise AssertionError("E820 continuation never returned EBX=0")


def check_map(entries, memory_size):
    pos = 0
    for base, length, kind in entries:
        assert base == pos and length > 0 and kind in (E820_RAM, E820_RESERVED)
        pos = base + length
    assert pos == max(memory_size, MB)


def test_e820_through_the_service(ctx):
    entries = e820_walk(ctx)
    check_map(entries, 32 * MB)
    assert entries[0] == (0, 0x9FC00, E820_RAM)
    assert entries[-1] == (MB, 31 * MB, E820_RAM)
    reserved = [(b, n) for b, n, t in entries if t == E820_RESERVED]
    assert (0x9FC00, 0x400) in reserved and (0xF0000, 0x10000) in reserved
    assert e820_walk(ctx, size=24) == entries


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 4095).map(lambda n: n * MB // 4 + MB))
def test_e820_map_covers_memory(size):
    check_map(e820_map(size), size)


def test_e820_errors(ctx):
    assert call(ctx, eax=0xE820, edx=0x12345678, ebx=0, ecx=20, es=0x100, di=0).cf
    assert call(ctx, eax=0xE820, edx=SMAP, ebx=0, ecx=16, es=0x100, di=0).cf
    r = call(ctx, eax=0xE820, edx=SMAP, ebx=99, ecx=20, es=0x100, di=0)
    assert r.cf and r.ah == 0x86


def test_memory_sizes(ctx):
    assert call(ctx, ah=0x88).ax == 31 * 1024
    r = call(ctx, ax=0xE801)
    assert (r.ax, r.cx, r.bx, r.dx) == (15 * 1024, 15 * 1024, 16 * 16, 16 * 16)
    big = make_machine(memory_size=80 * MB)
    post(big)
    assert call(big, ah=0x88).ax == 0xFFFF                   # capped
    assert call(big, ax=0xE801).ax == 0x3C00
    assert bm.rd16(ctx.mem, bm.BDA_MEMORY_KB) == 639


def test_a20(ctx):
    r = call(ctx, ax=0x2403)
    assert not r.cf and r.bx == 3
    call(ctx, ax=0x2400)
    assert ctx.a20 is False and call(ctx, ax=0x2402).al == 0
    assert bm.real_addr(ctx, 0xFFFF, 0x10) == 0
    call(ctx, ax=0x2401)
    assert ctx.a20 is True and call(ctx, ax=0x2402).al == 1
    assert bm.real_addr(ctx, 0xFFFF, 0x10) == 0x100000


def test_config_table_and_ebda(ctx):
    r = call(ctx, ah=0xC0)
    assert not r.cf and r.ah == 0 and (r.es, r.bx) == (0xF000, R.OFF_CONFIG_TABLE)
    assert ctx.mem[0xF0000 + R.OFF_CONFIG_TABLE + 2] == 0xFC
    assert call(ctx, ah=0xC1).es == 0x9FC0


def test_unsupported_functions(ctx):
    for ax in (0x5300, 0xC200, 0x8900, 0x4100):
        r = call(ctx, ax=ax)
        assert r.cf and r.ah == 0x86, hex(ax)
    r = call(ctx, ax=0x4F1E)
    assert r.cf and r.al == 0x1E                           # intercept: process the key
    r = call(ctx, ah=0x86, cx=0, dx=1000)
    assert not r.cf


def test_block_move(ctx):
    src, dst = 0x200000, 0x10000
    ctx.mem[src:src + 64] = bytes(range(64))
    gdt = bytearray(0x30)
    for slot, base in ((0x10, src), (0x18, dst)):
        gdt[slot:slot + 8] = struct.pack("<HHBBBB", 0xFFFF, base & 0xFFFF, (base >> 16) & 0xFF,
                                         0x93, 0, base >> 24)
    ctx.mem[0x3000:0x3030] = gdt
    r = call(ctx, ah=0x87, cx=32, es=0x0300, si=0)
    assert not r.cf and r.ah == 0
    assert bytes(ctx.mem[dst:dst + 64]) == bytes(range(64))
    # A destination outside RAM fails instead of writing nowhere.
    gdt[0x18:0x20] = struct.pack("<HHBBBB", 0xFFFF, 0, 0, 0x93, 0, 0x40)
    ctx.mem[0x3000:0x3030] = gdt
    assert call(ctx, ah=0x87, cx=32, es=0x0300, si=0).cf


def test_serial_printer_print_screen():
    from devices.uart16550 import Uart16550
    ctx = make_machine()
    sent = []
    ctx.devices.uarts = [Uart16550(ctx.clock, write=sent.append)]
    post(ctx)
    assert bm.rd16(ctx.mem, bm.BDA_COM_PORTS) == 0x3F8
    assert (bm.rd16(ctx.mem, bm.BDA_EQUIPMENT) >> 9) & 7 == 1
    r = call(ctx, vector=0x14, ah=0x00, al=0xE3, dx=0)     # 9600 8N1
    assert r.ah & 0x60 == 0x60                              # THR and transmitter empty
    assert ctx.devices.uarts[0].divisor() == 12
    r = call(ctx, vector=0x14, ah=0x01, al=ord("Z"), dx=0)
    assert not r.ah & 0x80
    ctx.clock.advance_by(10_000_000)
    assert b"".join(sent) == b"Z"
    r = call(ctx, vector=0x14, ah=0x02, dx=0)
    assert r.ah & 0x80                                      # nothing received: time-out
    r = call(ctx, vector=0x14, ah=0x03, dx=1)
    assert r.ah == 0x80                                     # COM2 absent
    assert call(ctx, vector=0x17, ah=0x02, dx=0).ah == 0x01
    call(ctx, vector=0x05)
    assert ctx.mem[bm.PRINT_SCREEN_STATUS] == 0xFF
