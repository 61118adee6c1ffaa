"""POST field by field, the boot loader, int 19h/18h and the dispatcher."""

import pytest

from devices.disk import RawImage
from monitor.bios import Bios, BiosConfigError, NoBootableDevice, boot
from monitor.bios import memory as bm
from monitor.bios import rom as R
from monitor.bios.post import post, the_rom
from monitor.bios.standalone import DEFAULT_START, make_machine
from monitor.bios.timeofday import ticks_for

BIOS = Bios()
ROM = the_rom()


def image(path, sectors, boot_sig=True, fill=0x90):
    data = bytearray([fill]) * (sectors * 512)
    data[0:2] = b"\xeb\xfe"                         # jmp $
    if boot_sig:
        data[510:512] = b"\x55\xaa"
    path.write_bytes(bytes(data))
    return RawImage(path)


@pytest.fixture
def floppy(tmp_path):
    return image(tmp_path / "a.img", 2880)


@pytest.fixture
def hdd(tmp_path):
    return image(tmp_path / "c.img", 16 * 63 * 2, fill=0x33)


def test_rom_and_ivt(floppy):
    ctx = make_machine(floppies=[floppy])
    post(ctx)
    m = ctx.mem
    assert bytes(m[0xF0000:0x100000]) == ROM.image
    assert (0xF0000, 0x10000) in ctx.written           # translations of F0000 are dropped
    for vector in range(256):
        seg, off = bm.get_vector(m, vector)
        if vector in R.NULL_VECTORS or vector in (0x41, 0x46):
            assert (seg, off) == (0, 0), hex(vector)
        else:
            assert (seg, off) == (0xF000, ROM.vectors[vector]), hex(vector)
    assert bm.get_vector(m, 0x13) == (0xF000, 0xEC59)
    assert bm.get_vector(m, 0x1C) == (0xF000, 0xFF53)  # the dummy iret
    assert bm.get_vector(m, 0x1E) == (0xF000, R.OFF_DISKETTE_TABLE)


def test_bda_fields(floppy, hdd):
    ctx = make_machine(memory_size=4 << 20, floppies=[floppy], disks=[hdd])
    post(ctx)
    m = ctx.mem
    eq = bm.rd16(m, bm.BDA_EQUIPMENT)
    assert eq & bm.EQ_FLOPPY and (eq >> 6) & 3 == 0 and eq & bm.EQ_FPU
    assert (eq >> 4) & 3 == 0                           # EGA/VGA
    assert (eq >> 9) & 7 == 0                           # no serial ports wired
    assert bm.rd16(m, bm.BDA_MEMORY_KB) == 639
    assert bm.rd16(m, bm.BDA_EBDA_SEGMENT) == 0x9FC0 and m[0x9FC00] == 1
    assert bm.rd16(m, bm.BDA_KBD_HEAD) == bm.rd16(m, bm.BDA_KBD_TAIL) == 0x1E
    assert (bm.rd16(m, bm.BDA_KBD_START), bm.rd16(m, bm.BDA_KBD_END)) == (0x1E, 0x3E)
    assert m[bm.BDA_KBD_FLAGS3] & bm.KF3_101KEY
    assert m[bm.BDA_HD_COUNT] == 1
    t = DEFAULT_START
    assert bm.rd32(m, bm.BDA_TIMER_TICKS) == ticks_for(t.hour * 3600 + t.minute * 60 + t.second)
    assert m[bm.BDA_VIDEO_MODE] == 3 and bm.rd16(m, bm.BDA_VIDEO_COLUMNS) == 80
    assert bm.rd16(m, bm.BDA_CRTC_PORT) == 0x3D4
    assert m[bm.BDA_LPT_TIMEOUT] == 0x14
    assert bm.get_vector(m, 0x41) == (0x9FC0, 0x3D)


def test_devices_programmed(floppy):
    ctx = make_machine(floppies=[floppy])
    post(ctx)
    pic, pit, cmos = ctx.devices.pic, ctx.devices.pit, ctx.devices.cmos
    assert pic.master.vector_base == 0x08 and pic.slave.vector_base == 0x70
    assert pic.master.imr == 0xF8 and pic.slave.imr == 0xFF
    ch0 = pit.channels[0]
    assert ch0.mode == 3
    ctx.clock.advance_by(1_000_000_000)
    assert 17 <= pit.irq0_edges <= 19                   # 18.2 Hz
    assert cmos.read_register(0x10) >> 4 == 4           # drive A: 1.44M
    assert cmos.read_register(0x15) | cmos.read_register(0x16) << 8 == 640
    assert cmos.read_register(0x17) | cmos.read_register(0x18) << 8 == 1024   # 2 MiB machine
    assert ctx.devices.vga.screen_dump().strip() == ""


def test_post_needs_1mb():
    ctx = make_machine()
    ctx.mem, ctx.memory_size = ctx.mem[:512 * 1024], 512 * 1024
    with pytest.raises(BiosConfigError, match="at least 1 MiB"):
        post(ctx)


def test_boot_floppy(floppy):
    ctx = make_machine(floppies=[floppy], boot_order="ac")
    post(ctx)
    ctx.written.clear()
    r = boot(ctx, "ac")
    assert r is ctx.regs
    assert bytes(ctx.mem[0x7C00:0x7E00]) == floppy.read(0)
    assert (0x7C00, 512) in ctx.written
    assert (r.cs, r.ip, r.ss, r.sp, r.dl, r.ds, r.es) == (0, 0x7C00, 0, 0x7C00, 0x00, 0, 0)
    assert r.if_ and not r.df


def test_boot_falls_through_to_the_hard_disk(tmp_path, hdd):
    blank = image(tmp_path / "blank.img", 2880, boot_sig=False)
    ctx = make_machine(floppies=[blank], disks=[hdd])
    post(ctx)
    r = boot(ctx, "ac")
    assert r.dl == 0x80 and ctx.mem[0x7C10] == 0x33


def test_no_bootable_device_is_one_clear_line(tmp_path):
    blank = image(tmp_path / "blank.img", 2880, boot_sig=False)
    ctx = make_machine(floppies=[blank])
    post(ctx)
    with pytest.raises(NoBootableDevice) as info:
        boot(ctx, "ac")
    msg = str(info.value)
    assert "\n" not in msg
    assert "a: " in msg and "no boot signature" in msg and "c: no disk" in msg
    with pytest.raises(BiosConfigError, match="unknown drive 'x'"):
        boot(ctx, "x")


def test_post_service_from_the_reset_vector(floppy):
    ctx = make_machine(floppies=[floppy])
    ctx.regs.cs, ctx.regs.eip = 0xF000, R.OFF_POST + 5     # just past the POST callout
    BIOS.service(R.SVC_POST, ctx)
    assert (ctx.regs.cs, ctx.regs.ip, ctx.regs.dl) == (0, 0x7C00, 0)
    assert ctx.mem[0x7DFE:0x7E00] == b"\x55\xaa"


def test_post_service_raises_without_a_boot_disk():
    ctx = make_machine()
    with pytest.raises(NoBootableDevice):
        BIOS.service(R.SVC_POST, ctx)


def test_int19_and_int18_when_nothing_boots():
    ctx = make_machine()
    post(ctx)
    r = ctx.regs
    r.cs, r.ip = 0xF000, ROM.labels["int19_body"] + 3
    BIOS.service(R.SVC_BOOTSTRAP, ctx)
    assert (r.cs, r.ip) == (0xF000, ROM.labels["int19_body"] + 3)   # on to int 18h
    BIOS.service(R.SVC_NO_BASIC, ctx)
    assert "No bootable device" in ctx.devices.vga.screen_dump()


def test_int19_reboots_the_disk(floppy):
    ctx = make_machine(floppies=[floppy])
    post(ctx)
    ctx.mem[0x7C00:0x7E00] = bytes(512)
    r = ctx.regs
    r.cs, r.ip, r.sp = 0xF000, 0x1234, 0x100
    BIOS.service(R.SVC_BOOTSTRAP, ctx)
    assert (r.cs, r.ip, r.sp) == (0, 0x7C00, 0x7C00)
    assert ctx.mem[0x7DFF] == 0xAA


def test_cf_return_keeps_the_callers_if(floppy):
    """The dispatcher writes CF into the iret frame, leaving IF/DF alone."""
    ctx = make_machine(floppies=[floppy])
    post(ctx)
    r = ctx.regs
    r.ss, r.sp = 0, 0x6000
    bm.wr16(ctx.mem, 0x6004, 0x0602)                   # caller: IF=1, DF=1, CF=0
    r.cs, r.ip = 0xF000, 0xEC5C
    r.ah, r.dl = 0x02, 0x05                            # read from a drive that does not exist
    r.al, r.cx = 1, 1
    BIOS.service(R.SVC_DISK, ctx)
    assert bm.rd16(ctx.mem, 0x6004) == 0x0603
    r.ah, r.dl = 0x00, 0x00                            # reset drive A: succeeds
    BIOS.service(R.SVC_DISK, ctx)
    assert bm.rd16(ctx.mem, 0x6004) == 0x0602
    assert BIOS.calls[R.SVC_DISK] >= 2
