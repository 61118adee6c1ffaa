"""Disk image back ends: raw (flat) images with floppy and hard-disk geometry.

Not a chip: the storage behind the BIOS int 13h services (and later the
floppy controller and ATA devices).  References: the IBM PC floppy formats
(IBM PC DOS Technical Reference), Microsoft's DMF format, the MBR partition
table layout (IBM PC/AT BIOS, "fixed disk partition table").

``RawImage(path, writable=False)`` reads sectors from the file.  Writes go
to an in-memory copy-on-write overlay of whole sectors, so a read-only
user image is never modified (it is opened read-only); with
``writable=True`` writes go to the file.  The overlay is part of the
snapshot; the contents of a writable file are not.

Geometry: an image whose size is a standard floppy format gets that format's
cylinders/heads/sectors (160K to 2.88M, DMF 1.68M and 1.72M); anything else
is a hard disk, whose CHS geometry is read from the MBR partition table
(the end head and end sector of a partition entry) when one is present and
consistent, else 16 heads and 63 sectors per track.

Errors are typed and say what is wrong in one line: a missing, unreadable,
empty or truncated (not a multiple of 512 bytes) file, a size no floppy
format fits, a sector outside the image, a missing 0x55AA boot signature.

Not emulated: sparse/differential formats (VMDK, qcow), ISO 9660 (2048-byte
sectors), write-through of the overlay to the file ("commit").
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Optional

from .base import DeviceError, DeviceState, SnapshotFormatError

log = logging.getLogger("hybrid86.devices.disk")

SECTOR_SIZE = 512
BOOT_SIGNATURE = b"\x55\xAA"
BOOT_SIGNATURE_OFFSET = 510
MBR_PARTITION_TABLE = 0x1BE
MBR_ENTRY_SIZE = 16
# MBR partition entry fields (offsets within the 16-byte entry)
PE_STATUS = 0         # 0x80 = active
PE_CHS_FIRST = 1      # head, sector | cyl bits 9-8 << 6, cyl bits 7-0
PE_TYPE = 4           # partition type, 0 = unused
PE_CHS_LAST = 5       # head, sector | cyl bits 9-8 << 6, cyl bits 7-0
PE_LBA_FIRST = 8      # little-endian dword
PE_SECTORS = 12       # little-endian dword

DEFAULT_HEADS = 16
DEFAULT_SECTORS = 63
MAX_CYLINDERS = 16383  # ATA identify limit for CHS translation

# CMOS drive types (see cmos_rtc.FLOPPY_*): the drive a format needs.
_CMOS_360K, _CMOS_1_2M, _CMOS_720K, _CMOS_1_44M, _CMOS_2_88M = 1, 2, 3, 4, 5


class DiskError(DeviceError):
    """Base of the disk image errors."""


class ImageNotFoundError(DiskError):
    """The image file does not exist."""


class ImageUnreadableError(DiskError):
    """The image exists but cannot be opened or read (permissions, a directory, I/O)."""


class EmptyImageError(DiskError):
    """The image file has no data."""


class TruncatedImageError(DiskError):
    """The image size is not a whole number of 512-byte sectors."""


class UnknownFloppySizeError(DiskError):
    """No floppy format has the image's size."""


class BootSectorError(DiskError):
    """The first sector does not end with the 0x55AA boot signature."""


class SectorRangeError(DiskError):
    """A sector address outside the image (the BIOS reports it as an int 13h error)."""


@dataclass(frozen=True)
class Geometry:
    cylinders: int
    heads: int
    sectors: int       # sectors per track (numbered from 1)
    kind: str          # "floppy" or "hdd"
    name: str = ""     # floppy format name, e.g. "1.44M"
    cmos_type: int = 0 # CMOS drive type for floppies (0 for hard disks)
    source: str = ""   # where the geometry came from: "size", "mbr", "default"

    @property
    def total_sectors(self) -> int:
        return self.cylinders * self.heads * self.sectors


# size -> (name, cylinders, heads, sectors per track, CMOS drive type)
FLOPPY_FORMATS: dict[int, tuple[str, int, int, int, int]] = {
    160 * 1024: ("160K", 40, 1, 8, _CMOS_360K),
    180 * 1024: ("180K", 40, 1, 9, _CMOS_360K),
    320 * 1024: ("320K", 40, 2, 8, _CMOS_360K),
    360 * 1024: ("360K", 40, 2, 9, _CMOS_360K),
    720 * 1024: ("720K", 80, 2, 9, _CMOS_720K),
    1200 * 1024: ("1.2M", 80, 2, 15, _CMOS_1_2M),
    1440 * 1024: ("1.44M", 80, 2, 18, _CMOS_1_44M),
    80 * 2 * 21 * SECTOR_SIZE: ("1.68M DMF", 80, 2, 21, _CMOS_1_44M),
    82 * 2 * 21 * SECTOR_SIZE: ("1.72M", 82, 2, 21, _CMOS_1_44M),
    2880 * 1024: ("2.88M", 80, 2, 36, _CMOS_2_88M),
}


def floppy_geometry(size: int) -> Geometry:
    """The floppy format of an image of ``size`` bytes."""
    fmt = FLOPPY_FORMATS.get(size)
    if fmt is None:
        known = ", ".join(f"{n} ({s})" for s, (n, *_rest) in sorted(FLOPPY_FORMATS.items()))
        raise UnknownFloppySizeError(
            f"no floppy format is {size} bytes; known formats: {known}"
        )
    name, cyls, heads, spt, cmos = fmt
    return Geometry(cyls, heads, spt, "floppy", name, cmos, "size")


def mbr_geometry(sector0: bytes, total_sectors: int) -> Optional[Geometry]:
    """CHS geometry implied by an MBR partition table, or None.

    The partitioning tool wrote each partition's end as (cylinder, head,
    sector) in the geometry it used; a partition ending on a cylinder
    boundary reveals the heads and sectors per track.
    """
    if len(sector0) < SECTOR_SIZE or sector0[BOOT_SIGNATURE_OFFSET:SECTOR_SIZE] != BOOT_SIGNATURE:
        return None
    for i in range(4):
        e = sector0[MBR_PARTITION_TABLE + i * MBR_ENTRY_SIZE: MBR_PARTITION_TABLE + (i + 1) * MBR_ENTRY_SIZE]
        nsects = int.from_bytes(e[PE_SECTORS:PE_SECTORS + 4], "little")
        if e[PE_TYPE] == 0 or nsects == 0 or e[PE_STATUS] not in (0x00, 0x80):
            continue
        heads = e[PE_CHS_LAST] + 1
        sectors = e[PE_CHS_LAST + 1] & 0x3F
        if sectors == 0 or heads > 255:
            continue
        cylinders = total_sectors // (heads * sectors)
        if 1 <= cylinders <= MAX_CYLINDERS:
            return Geometry(cylinders, heads, sectors, "hdd", source="mbr")
    return None


def hard_disk_geometry(sector0: bytes, total_sectors: int) -> Geometry:
    geo = mbr_geometry(sector0, total_sectors)
    if geo is not None:
        return geo
    cylinders = max(1, min(total_sectors // (DEFAULT_HEADS * DEFAULT_SECTORS), MAX_CYLINDERS))
    return Geometry(cylinders, DEFAULT_HEADS, DEFAULT_SECTORS, "hdd", source="default")


def check_boot_sector(sector0: bytes, what: str = "image") -> None:
    """Raise ``BootSectorError`` unless ``sector0`` ends with 0x55 0xAA."""
    sig = bytes(sector0[BOOT_SIGNATURE_OFFSET:SECTOR_SIZE])
    if sig != BOOT_SIGNATURE:
        found = sig.hex(" ") if len(sig) == 2 else "nothing"
        raise BootSectorError(
            f"{what}: no boot signature 55 aa at bytes 510-511 of sector 0 (found {found}); not bootable"
        )


@dataclass
class DiskState(DeviceState):
    KIND = "raw_image"
    VERSION = 1
    path: str                  # the image the overlay belongs to (checked on restore)
    size: int                  # its size in bytes (checked on restore)
    overlay_lbas: list[int]    # sectors written since open (copy-on-write), ascending
    overlay_data: bytes        # their contents, 512 bytes each, in the same order


class RawImage:
    """A flat disk image, sector-addressed by LBA or CHS."""

    def __init__(self, path: str | os.PathLike, writable: bool = False, media: str = "auto") -> None:
        if media not in ("auto", "floppy", "hdd"):
            raise ValueError(f"media must be 'auto', 'floppy' or 'hdd', not {media!r}")
        self.path = os.fspath(path)
        self.writable = writable
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise ImageNotFoundError(f"{self.path}: disk image not found") from None
        except OSError as exc:
            raise ImageUnreadableError(f"{self.path}: cannot access disk image: {exc.strerror}") from None
        if not os.path.isfile(self.path):
            raise ImageUnreadableError(f"{self.path}: not a regular file")
        self.size = st.st_size
        if self.size == 0:
            raise EmptyImageError(f"{self.path}: disk image is empty (0 bytes)")
        if self.size % SECTOR_SIZE:
            raise TruncatedImageError(
                f"{self.path}: size {self.size} is not a multiple of {SECTOR_SIZE} "
                f"({self.size % SECTOR_SIZE} bytes past the last whole sector); truncated image?"
            )
        try:
            self._file = open(self.path, "r+b" if writable else "rb")
        except PermissionError:
            mode = "read-write" if writable else "reading"
            raise ImageUnreadableError(f"{self.path}: permission denied opening for {mode}") from None
        except OSError as exc:
            raise ImageUnreadableError(f"{self.path}: cannot open disk image: {exc.strerror}") from None
        self.sector_count = self.size // SECTOR_SIZE
        #: Copy-on-write sectors: lba -> 512 bytes (only when not writable).
        self.overlay: dict[int, bytes] = {}
        sector0 = self._read_file(0, 1)
        if media == "floppy" or (media == "auto" and self.size in FLOPPY_FORMATS):
            self.geometry = floppy_geometry(self.size)
        else:
            self.geometry = hard_disk_geometry(sector0, self.sector_count)
        log.debug("%s: %d sectors, geometry %s", self.path, self.sector_count, self.geometry)

    # -- file access ------------------------------------------------------------------

    def _read_file(self, lba: int, count: int) -> bytes:
        try:
            self._file.seek(lba * SECTOR_SIZE)
            data = self._file.read(count * SECTOR_SIZE)
        except OSError as exc:
            raise ImageUnreadableError(f"{self.path}: read error at sector {lba}: {exc.strerror}") from None
        if len(data) != count * SECTOR_SIZE:
            raise TruncatedImageError(
                f"{self.path}: file shrank under us: sector {lba}+{count} is past its end"
            )
        return data

    def _check_range(self, lba: int, count: int) -> None:
        if count < 0 or lba < 0 or lba + count > self.sector_count:
            raise SectorRangeError(
                f"{self.path}: sectors {lba}..{lba + count - 1} outside 0..{self.sector_count - 1}"
            )

    @property
    def is_floppy(self) -> bool:
        return self.geometry.kind == "floppy"

    # -- LBA ----------------------------------------------------------------------------

    def read(self, lba: int, count: int = 1) -> bytes:
        """``count`` sectors starting at ``lba`` (overlay first, then the file)."""
        self._check_range(lba, count)
        if count == 0:
            return b""
        data = self._read_file(lba, count)
        if self.overlay:
            buf = bytearray(data)
            for i in range(count):
                sector = self.overlay.get(lba + i)
                if sector is not None:
                    buf[i * SECTOR_SIZE:(i + 1) * SECTOR_SIZE] = sector
            data = bytes(buf)
        return data

    def write(self, lba: int, data: bytes) -> None:
        """Write whole sectors at ``lba`` (to the overlay unless writable)."""
        data = bytes(data)
        if len(data) % SECTOR_SIZE:
            raise ValueError(f"write of {len(data)} bytes is not whole {SECTOR_SIZE}-byte sectors")
        count = len(data) // SECTOR_SIZE
        self._check_range(lba, count)
        if self.writable:
            try:
                self._file.seek(lba * SECTOR_SIZE)
                self._file.write(data)
            except OSError as exc:
                raise ImageUnreadableError(f"{self.path}: write error at sector {lba}: {exc.strerror}") from None
            return
        for i in range(count):
            self.overlay[lba + i] = data[i * SECTOR_SIZE:(i + 1) * SECTOR_SIZE]

    # -- CHS ------------------------------------------------------------------------------

    def chs_to_lba(self, cylinder: int, head: int, sector: int) -> int:
        g = self.geometry
        if not (0 <= cylinder < g.cylinders and 0 <= head < g.heads and 1 <= sector <= g.sectors):
            raise SectorRangeError(
                f"{self.path}: CHS {cylinder}/{head}/{sector} outside geometry "
                f"{g.cylinders}/{g.heads}/{g.sectors}"
            )
        return (cylinder * g.heads + head) * g.sectors + (sector - 1)

    def lba_to_chs(self, lba: int) -> tuple[int, int, int]:
        g = self.geometry
        cylinder, rest = divmod(lba, g.heads * g.sectors)
        head, sector = divmod(rest, g.sectors)
        return cylinder, head, sector + 1

    def read_chs(self, cylinder: int, head: int, sector: int, count: int = 1) -> bytes:
        """Sectors from a CHS address; multi-sector reads continue across
        tracks and heads in LBA order (as the BIOS does for multi-track reads)."""
        return self.read(self.chs_to_lba(cylinder, head, sector), count)

    def write_chs(self, cylinder: int, head: int, sector: int, data: bytes) -> None:
        self.write(self.chs_to_lba(cylinder, head, sector), data)

    # -- boot ----------------------------------------------------------------------------------

    def check_bootable(self) -> None:
        """Raise ``BootSectorError`` unless sector 0 has the 0x55AA signature."""
        check_boot_sector(self.read(0), self.path)

    # -- lifecycle ------------------------------------------------------------------------------

    def flush(self) -> None:
        if self.writable:
            self._file.flush()

    def close(self) -> None:
        if not self._file.closed:
            self.flush()
            self._file.close()

    def __enter__(self) -> "RawImage":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def save(self) -> DiskState:
        lbas = sorted(self.overlay)
        return DiskState(
            path=self.path, size=self.size, overlay_lbas=lbas,
            overlay_data=b"".join(self.overlay[lba] for lba in lbas),
        )

    def restore(self, state: DiskState) -> None:
        if not isinstance(state, DiskState):
            raise SnapshotFormatError(f"raw_image: restore() needs a DiskState, got {type(state).__name__}")
        if state.size != self.size:
            raise SnapshotFormatError(
                f"{self.path}: snapshot was taken with a {state.size}-byte image, this one is {self.size} bytes"
            )
        if len(state.overlay_data) != len(state.overlay_lbas) * SECTOR_SIZE:
            raise SnapshotFormatError(f"{self.path}: snapshot overlay data does not match its sector list")
        if state.path != self.path:
            log.warning("restoring the overlay of %s onto %s", state.path, self.path)
        if self.writable and state.overlay_lbas:
            raise SnapshotFormatError(f"{self.path}: snapshot has copy-on-write sectors but the image is writable")
        self.overlay = {
            lba: state.overlay_data[i * SECTOR_SIZE:(i + 1) * SECTOR_SIZE]
            for i, lba in enumerate(state.overlay_lbas)
        }
