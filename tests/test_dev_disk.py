"""Raw disk images: copy-on-write, geometry, CHS/LBA, boot signature, typed errors."""

import json
import os
import stat

import pytest

from devices.disk import (
    BootSectorError, DiskState, EmptyImageError, ImageNotFoundError, ImageUnreadableError,
    RawImage, SectorRangeError, TruncatedImageError, UnknownFloppySizeError, check_boot_sector,
    floppy_geometry,
)


def make_image(path, sectors, boot=True, fill=None):
    data = bytearray(sectors * 512)
    for lba in range(sectors):
        data[lba * 512: lba * 512 + 4] = lba.to_bytes(4, "little")  # sector tag
    if boot:
        data[510:512] = b"\x55\xAA"
    if fill:
        fill(data)
    path.write_bytes(bytes(data))
    return path


def test_cow_write_reads_back_and_leaves_the_file_unchanged(tmp_path):
    path = make_image(tmp_path / "floppy.img", 2880)
    before = path.read_bytes()
    mtime = os.stat(path).st_mtime_ns
    with RawImage(path) as img:
        img.write(100, b"\xAB" * 1024)
        assert img.read(100, 2) == b"\xAB" * 1024
        assert img.read(99)[:4] == (99).to_bytes(4, "little")
        mixed = img.read(99, 3)
        assert mixed[512:1536] == b"\xAB" * 1024 and mixed[:4] == (99).to_bytes(4, "little")
    assert path.read_bytes() == before
    assert os.stat(path).st_mtime_ns == mtime


def test_read_only_file_is_opened_without_write_access(tmp_path):
    path = make_image(tmp_path / "ro.img", 720)
    os.chmod(path, stat.S_IRUSR)
    try:
        with RawImage(path) as img:
            img.write(0, bytes(512))
            assert img.read(0) == bytes(512)
    finally:
        os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)


def test_writable_image_writes_the_file(tmp_path):
    path = make_image(tmp_path / "rw.img", 2880)
    with RawImage(path, writable=True) as img:
        img.write_chs(0, 1, 1, b"\x11" * 512)  # head 1 sector 1 = LBA 18
    assert path.read_bytes()[18 * 512: 19 * 512] == b"\x11" * 512


@pytest.mark.parametrize("kb,name,chs", [
    (160, "160K", (40, 1, 8)), (180, "180K", (40, 1, 9)), (320, "320K", (40, 2, 8)),
    (360, "360K", (40, 2, 9)), (720, "720K", (80, 2, 9)), (1200, "1.2M", (80, 2, 15)),
    (1440, "1.44M", (80, 2, 18)), (1680, "1.68M DMF", (80, 2, 21)), (1722, "1.72M", (82, 2, 21)),
    (2880, "2.88M", (80, 2, 36)),
])
def test_floppy_geometry_from_size(kb, name, chs):
    g = floppy_geometry(kb * 1024)
    assert (g.cylinders, g.heads, g.sectors) == chs and g.name == name
    assert g.total_sectors * 512 == kb * 1024


def test_unknown_floppy_size(tmp_path):
    with pytest.raises(UnknownFloppySizeError, match="1000 sectors|512000 bytes"):
        floppy_geometry(1000 * 512)
    path = make_image(tmp_path / "odd.img", 1000)
    with pytest.raises(UnknownFloppySizeError):
        RawImage(path, media="floppy")
    with RawImage(path) as img:  # auto: not a floppy size, so a hard disk
        assert img.geometry.kind == "hdd"


def test_chs_addressing_on_a_floppy(tmp_path):
    with RawImage(make_image(tmp_path / "f.img", 2880)) as img:
        assert img.is_floppy and img.geometry.cmos_type == 4
        assert img.chs_to_lba(1, 1, 18) == 1 * 36 + 18 + 17
        assert img.read_chs(2, 0, 1)[:4] == (72).to_bytes(4, "little")
        assert img.lba_to_chs(2879) == (79, 1, 18)
        # A multi-sector read crosses from head 0 to head 1 in LBA order.
        data = img.read_chs(0, 0, 18, 2)
        assert data[512:516] == (18).to_bytes(4, "little")
        with pytest.raises(SectorRangeError):
            img.chs_to_lba(0, 0, 0)
        with pytest.raises(SectorRangeError):
            img.read(2880)
        with pytest.raises(SectorRangeError):
            img.read(2879, 2)


def test_hard_disk_default_geometry(tmp_path):
    path = make_image(tmp_path / "hd.img", 16 * 63 * 20, boot=False)
    with RawImage(path) as img:
        g = img.geometry
        assert (g.cylinders, g.heads, g.sectors, g.source) == (20, 16, 63, "default")
        assert img.sector_count == 16 * 63 * 20


def test_hard_disk_geometry_from_mbr_partition_table(tmp_path):
    heads, spt, cyls = 255, 63, 10

    def mbr(data):
        e = bytearray(16)
        e[0] = 0x80
        e[1:4] = bytes((1, 1, 0))                   # start CHS 0/1/1
        e[4] = 0x0C                                 # FAT32 LBA
        e[5] = heads - 1                            # end head
        e[6] = spt | (((cyls - 1) >> 8) << 6)       # end sector
        e[7] = (cyls - 1) & 0xFF                    # end cylinder
        e[8:12] = (63).to_bytes(4, "little")
        e[12:16] = (cyls * heads * spt - 63).to_bytes(4, "little")
        data[0x1BE:0x1CE] = e

    path = make_image(tmp_path / "mbr.img", cyls * heads * spt, fill=mbr)
    with RawImage(path) as img:
        g = img.geometry
        assert (g.cylinders, g.heads, g.sectors, g.source) == (cyls, heads, spt, "mbr")
        img.check_bootable()


def test_boot_signature_checker(tmp_path):
    check_boot_sector(b"\x00" * 510 + b"\x55\xAA")
    with pytest.raises(BootSectorError, match="55 aa.*found 00 00"):
        check_boot_sector(bytes(512), "x.img")
    with RawImage(make_image(tmp_path / "nb.img", 720, boot=False)) as img:
        with pytest.raises(BootSectorError, match="nb.img"):
            img.check_bootable()


def test_typed_errors_for_bad_files(tmp_path):
    with pytest.raises(ImageNotFoundError, match="not found"):
        RawImage(tmp_path / "missing.img")
    (tmp_path / "empty.img").write_bytes(b"")
    with pytest.raises(EmptyImageError, match="empty"):
        RawImage(tmp_path / "empty.img")
    (tmp_path / "trunc.img").write_bytes(bytes(1474560 - 100))
    with pytest.raises(TruncatedImageError, match="not a multiple of 512"):
        RawImage(tmp_path / "trunc.img")
    with pytest.raises(ImageUnreadableError, match="not a regular file"):
        RawImage(tmp_path)
    if os.geteuid() != 0:  # root reads anything
        path = make_image(tmp_path / "noperm.img", 720)
        os.chmod(path, 0)
        with pytest.raises(ImageUnreadableError, match="permission"):
            RawImage(path)
    for exc in (ImageNotFoundError, EmptyImageError, TruncatedImageError):
        try:
            RawImage(tmp_path / {"ImageNotFoundError": "missing.img", "EmptyImageError": "empty.img",
                                 "TruncatedImageError": "trunc.img"}[exc.__name__])
        except exc as e:
            assert "\n" not in str(e)


def test_snapshot_carries_the_cow_overlay(tmp_path):
    path = make_image(tmp_path / "snap.img", 2880)
    img = RawImage(path)
    img.write(5, b"\x55" * 512)
    img.write(7, b"\x77" * 512)
    data = json.loads(json.dumps(img.save().to_dict()))
    img.close()
    img2 = RawImage(path)
    assert img2.read(5)[:4] == (5).to_bytes(4, "little")
    img2.restore(DiskState.from_dict(data))
    assert img2.read(5) == b"\x55" * 512 and img2.read(7) == b"\x77" * 512
    other = RawImage(make_image(tmp_path / "other.img", 720))
    from devices.base import SnapshotFormatError

    with pytest.raises(SnapshotFormatError, match="368640"):
        other.restore(DiskState.from_dict(data))
    img2.close()
    other.close()
