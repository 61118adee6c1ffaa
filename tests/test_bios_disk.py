"""int 13h on generated floppy and hard disk images."""

import struct

import pytest

from devices.disk import RawImage
from monitor.bios import Bios
from monitor.bios import memory as bm
from monitor.bios import rom as R
from monitor.bios.post import post
from monitor.bios.standalone import make_machine

BIOS = Bios()
SECTOR = 512


def stamp(lba):
    """Sector contents that say which sector they are."""
    return struct.pack("<I", lba) * 128


def make_image(path, sectors, boot=True):
    with open(path, "wb") as f:
        for lba in range(sectors):
            data = bytearray(stamp(lba))
            if lba == 0 and boot:
                data[510:512] = b"\x55\xaa"
            f.write(data)
    return path


@pytest.fixture
def floppy(tmp_path):
    return RawImage(make_image(tmp_path / "a.img", 2880))          # 1.44M: 80/2/18


@pytest.fixture
def hdd(tmp_path):
    return RawImage(make_image(tmp_path / "c.img", 16 * 63 * 4))   # 4/16/63, default geometry


@pytest.fixture
def ctx(floppy, hdd):
    c = make_machine(floppies=[floppy], disks=[hdd])
    post(c)
    return c


def call(ctx, **regs):
    for name, value in regs.items():
        setattr(ctx.regs, name, value)
    BIOS.service(0x13, ctx)
    return ctx.regs


def lba_of(c, h, s, heads=2, spt=18):
    return (c * heads + h) * spt + s - 1


def test_read_chs_floppy(ctx):
    ctx.written.clear()
    r = call(ctx, ah=0x02, al=3, ch=1, cl=17, dh=1, dl=0, es=0x1000, bx=0x0010)
    assert not r.cf and r.ah == 0 and r.al == 3
    first = lba_of(1, 1, 17)
    data = bytes(ctx.mem[0x10010:0x10010 + 3 * SECTOR])
    # The transfer runs on across the track and cylinder boundary in LBA order.
    assert data == stamp(first) + stamp(first + 1) + stamp(first + 2)
    assert ctx.mem[bm.BDA_FLOPPY_STATUS] == 0
    assert (0x10010, 3 * SECTOR) in ctx.written        # the translator is told


def test_write_goes_to_the_overlay(ctx, floppy):
    ctx.mem[0x20000:0x20000 + SECTOR] = b"\xab" * SECTOR
    r = call(ctx, ah=0x03, al=1, ch=0, cl=5, dh=0, dl=0, es=0x2000, bx=0)
    assert not r.cf and r.al == 1
    assert floppy.overlay[4] == b"\xab" * SECTOR
    with open(floppy.path, "rb") as f:                    # the file is untouched
        f.seek(4 * SECTOR)
        assert f.read(SECTOR) == stamp(4)
    call(ctx, ah=0x02, al=1, ch=0, cl=5, dh=0, dl=0, es=0x3000, bx=0)
    assert bytes(ctx.mem[0x30000:0x30000 + SECTOR]) == b"\xab" * SECTOR


@pytest.mark.parametrize("regs,status", [
    (dict(al=1, ch=80, cl=1, dh=0), 0x04),     # cylinder 80 of 0-79
    (dict(al=1, ch=0, cl=19, dh=0), 0x04),     # sector 19 of 1-18
    (dict(al=1, ch=0, cl=0, dh=0), 0x04),      # sector 0 does not exist
    (dict(al=1, ch=0, cl=1, dh=2), 0x04),      # head 2 of 0-1
    (dict(al=0, ch=0, cl=1, dh=0), 0x01),      # zero sectors
])
def test_read_errors(ctx, regs, status):
    r = call(ctx, ah=0x02, dl=0, es=0x1000, bx=0, **regs)
    assert r.cf and r.ah == status and r.al == 0
    assert ctx.mem[bm.BDA_FLOPPY_STATUS] == status
    r = call(ctx, ah=0x01, dl=0)                       # last status
    assert r.ah == status and r.cf


def test_read_past_the_end_transfers_what_exists(ctx):
    r = call(ctx, ah=0x02, al=4, ch=79, cl=17, dh=1, dl=0, es=0x1000, bx=0)
    assert r.cf and r.ah == 0x04 and r.al == 2
    assert bytes(ctx.mem[0x10000:0x10400]) == stamp(2878) + stamp(2879)


def test_missing_drives(ctx):
    r = call(ctx, ah=0x02, al=1, cx=1, dh=0, dl=1, es=0x1000, bx=0)     # B: absent
    assert r.cf and r.ah == 0x80
    r = call(ctx, ah=0x02, al=1, cx=1, dh=0, dl=0x81, es=0x1000, bx=0)  # second disk absent
    assert r.cf and r.ah == 0x01
    assert ctx.mem[bm.BDA_HD_STATUS] == 0x01
    r = call(ctx, ah=0x15, dl=0x81)
    assert not r.cf and r.ah == 0


def test_floppy_parameters(ctx):
    r = call(ctx, ah=0x08, dl=0)
    assert not r.cf and r.ah == 0
    assert (r.ch, r.cl, r.dh, r.dl, r.bl) == (79, 18, 1, 1, 4)
    assert (r.es, r.di) == (0xF000, R.floppy_table_offset(4))
    table = R.floppy_table_offset(4)
    assert ctx.mem[0xF0000 + table + 4] == 18
    r = call(ctx, ah=0x15, dl=0)
    assert r.ah == 0x02 and not r.cf                    # floppy with change line
    r = call(ctx, ah=0x16, dl=0)
    assert r.ah == 0 and not r.cf                       # not changed


def test_hard_disk_chs_and_parameters(ctx, hdd):
    r = call(ctx, ah=0x08, dl=0x80)
    assert not r.cf
    assert (r.ch, r.cl & 0x3F, r.cl >> 6, r.dh, r.dl) == (3, 63, 0, 15, 1)
    r = call(ctx, ah=0x15, dl=0x80)
    assert r.ah == 0x03 and (r.cx << 16 | r.dx) == hdd.sector_count
    r = call(ctx, ah=0x02, al=2, ch=2, cl=63, dh=15, dl=0x80, es=0x1000, bx=0)
    lba = (2 * 16 + 15) * 63 + 62
    assert not r.cf and bytes(ctx.mem[0x10000:0x10400]) == stamp(lba) + stamp(lba + 1)
    assert ctx.mem[bm.BDA_HD_STATUS] == 0


def test_edd(ctx, hdd):
    r = call(ctx, ah=0x41, bx=0x55AA, dl=0x80)
    assert not r.cf and r.bx == 0xAA55 and r.ah == 0x21 and r.cx & 1
    r = call(ctx, ah=0x41, bx=0x55AA, dl=0x00)
    assert r.cf                                          # no EDD for floppies
    # Disk address packet at 0000:0500: 3 sectors from LBA 1000 to 2000:0000.
    ctx.mem[0x500:0x510] = struct.pack("<BBHHHQ", 0x10, 0, 3, 0x0000, 0x2000, 1000)
    r = call(ctx, ah=0x42, dl=0x80, ds=0, si=0x500)
    assert not r.cf and r.ah == 0
    assert bytes(ctx.mem[0x20000:0x20600]) == stamp(1000) + stamp(1001) + stamp(1002)
    # Past the end: the count field says what was done.
    ctx.mem[0x500:0x510] = struct.pack("<BBHHHQ", 0x10, 0, 4, 0, 0x2000, hdd.sector_count - 1)
    r = call(ctx, ah=0x42, dl=0x80, ds=0, si=0x500)
    assert r.cf and r.ah == 0x04 and bm.rd16(ctx.mem, 0x502) == 1
    # Extended write.
    ctx.mem[0x30000:0x30200] = b"\x5a" * SECTOR
    ctx.mem[0x500:0x510] = struct.pack("<BBHHHQ", 0x10, 0, 1, 0, 0x3000, 7)
    r = call(ctx, ah=0x43, dl=0x80, ds=0, si=0x500)
    assert not r.cf and hdd.read(7) == b"\x5a" * SECTOR
    # Drive parameters.
    bm.wr16(ctx.mem, 0x600, 0x1E)
    r = call(ctx, ah=0x48, dl=0x80, ds=0, si=0x600)
    assert not r.cf
    size, flags, cyls, heads, spt, total, bps = struct.unpack_from("<HHIIIQH", ctx.mem, 0x600)
    assert (size, cyls, heads, spt, total, bps) == (0x1E, 4, 16, 63, hdd.sector_count, 512)
    assert bytes(ctx.mem[0x61A:0x61E]) == b"\xff" * 4
    # Malformed packet.
    ctx.mem[0x500] = 0x08
    assert call(ctx, ah=0x42, dl=0x80, ds=0, si=0x500).cf


def test_reset_verify_and_unknown(ctx):
    r = call(ctx, ah=0x00, dl=0)
    assert not r.cf and r.ah == 0
    r = call(ctx, ah=0x04, al=5, ch=0, cl=1, dh=0, dl=0)
    assert not r.cf and r.al == 5
    r = call(ctx, ah=0x99, dl=0x80)
    assert r.cf and r.ah == 0x01


def test_fixed_disk_parameter_table(ctx):
    seg, off = bm.get_vector(ctx.mem, 0x41)
    assert seg == bm.EBDA_SEGMENT
    table = bytes(ctx.mem[(seg << 4) + off:(seg << 4) + off + 16])
    cyls, heads = struct.unpack_from("<HB", table)
    assert (cyls, heads, table[14], table[8] & 0x08) == (4, 16, 63, 0x08)
    assert bm.get_vector(ctx.mem, 0x46) == (0, 0)        # no second disk
