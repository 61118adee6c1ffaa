"""The cpio "newc" format (SVR4 without CRC), the one the kernel unpacks as
an initramfs (Documentation/driver-api/early-userspace/buffer-format.rst).

Each entry is a 110-byte ASCII header, the NUL-terminated name, padding to a
multiple of 4 bytes, the data, padding to a multiple of 4 again::

    c_magic "070701"  then 13 fields of 8 hex digits:
    c_ino c_mode c_uid c_gid c_nlink c_mtime c_filesize
    c_devmajor c_devminor c_rdevmajor c_rdevminor c_namesize c_check

``c_namesize`` counts the terminating NUL; ``c_check`` is 0 (no CRC).  The
archive ends with an entry named ``TRAILER!!!``; like GNU cpio, the writer
pads the whole archive to a multiple of 512 bytes (the kernel skips zero
padding between and after entries).

Only what an initramfs needs: directories, regular files, symbolic links and
device nodes.  Names are stored without a leading "/".  Timestamps are 0 by
default so that an archive depends on its contents only.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass

MAGIC = b"070701"
HEADER_SIZE = 110
TRAILER = "TRAILER!!!"
BLOCK = 512


class CpioError(ValueError):
    """Bytes that are not a well-formed newc archive."""


@dataclass
class Entry:
    name: str
    mode: int                 # file type and permission bits (stat.S_IF* | 0o755 ...)
    data: bytes = b""
    uid: int = 0
    gid: int = 0
    nlink: int = 1
    mtime: int = 0
    rdevmajor: int = 0
    rdevminor: int = 0
    ino: int = 0

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)

    @property
    def is_file(self) -> bool:
        return stat.S_ISREG(self.mode)


def directory(name: str, perm: int = 0o755) -> Entry:
    return Entry(name, stat.S_IFDIR | perm, nlink=2)


def file(name: str, data: bytes, perm: int = 0o644) -> Entry:
    return Entry(name, stat.S_IFREG | perm, data)


def symlink(name: str, target: str) -> Entry:
    return Entry(name, stat.S_IFLNK | 0o777, target.encode())


def char_device(name: str, major: int, minor: int, perm: int = 0o600) -> Entry:
    return Entry(name, stat.S_IFCHR | perm, rdevmajor=major, rdevminor=minor)


def _pad4(n: int) -> int:
    return (4 - n % 4) % 4


def _header(e: Entry, name: bytes, size: int) -> bytes:
    fields = (e.ino, e.mode, e.uid, e.gid, e.nlink, e.mtime, size,
              0, 0, e.rdevmajor, e.rdevminor, len(name) + 1, 0)
    for value in fields:
        if not 0 <= value <= 0xFFFFFFFF:
            raise CpioError(f"{e.name}: field value {value} does not fit in 8 hex digits")
    return MAGIC + b"".join(b"%08X" % v for v in fields)


def write(entries: list[Entry]) -> bytes:
    """The archive holding ``entries`` in order (inode numbers assigned from 1
    where an entry has none), then the trailer, padded to 512 bytes."""
    out = bytearray()
    seen: set[str] = set()
    for ino, e in enumerate(list(entries) + [Entry(TRAILER, 0)], start=1):
        name = e.name.lstrip("/")
        if not name or "\0" in name:
            raise CpioError(f"bad entry name {e.name!r}")
        if name in seen:
            raise CpioError(f"{name}: twice in the archive")
        seen.add(name)
        raw = name.encode()
        trailer = name == TRAILER
        hdr = Entry(**{**e.__dict__, "ino": 0 if trailer else (e.ino or ino)})
        out += _header(hdr, raw, len(e.data)) + raw + b"\0"
        out += b"\0" * _pad4(HEADER_SIZE + len(raw) + 1)
        out += e.data + b"\0" * _pad4(len(e.data))
    out += b"\0" * ((BLOCK - len(out) % BLOCK) % BLOCK)
    return bytes(out)


def read(data: bytes) -> list[Entry]:
    """Parse a newc archive back into entries (trailer excluded).  Zero
    padding between entries is skipped, as the kernel does."""
    entries: list[Entry] = []
    pos = 0
    while True:
        while pos < len(data) and data[pos] == 0 and pos % 4 == 0 and data[pos:pos + 4] == b"\0\0\0\0":
            pos += 4
        if pos >= len(data):
            raise CpioError("archive ends without a TRAILER!!! entry")
        if data[pos:pos + 6] != MAGIC:
            raise CpioError(f"offset {pos}: no newc magic 070701 (found {bytes(data[pos:pos + 6])!r})")
        if pos + HEADER_SIZE > len(data):
            raise CpioError(f"offset {pos}: truncated header")
        try:
            f = [int(data[pos + 6 + 8 * i:pos + 14 + 8 * i], 16) for i in range(13)]
        except ValueError as exc:
            raise CpioError(f"offset {pos}: header field is not hex") from exc
        ino, mode, uid, gid, nlink, mtime, size, _dmaj, _dmin, rmaj, rmin, namesize, _check = f
        name_at = pos + HEADER_SIZE
        if namesize < 1 or name_at + namesize > len(data) or data[name_at + namesize - 1] != 0:
            raise CpioError(f"offset {pos}: bad name size {namesize}")
        name = bytes(data[name_at:name_at + namesize - 1]).decode()
        data_at = name_at + namesize + _pad4(HEADER_SIZE + namesize)
        if data_at + size > len(data):
            raise CpioError(f"{name}: data runs past the end of the archive")
        if name == TRAILER:
            return entries
        entries.append(Entry(name, mode, bytes(data[data_at:data_at + size]), uid, gid, nlink, mtime,
                             rmaj, rmin, ino))
        pos = data_at + size + _pad4(size)
