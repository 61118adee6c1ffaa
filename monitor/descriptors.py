"""x86 segment descriptors: encoding and decoding (Intel SDM vol. 3, 3.4.5)."""

from __future__ import annotations

import struct
from dataclasses import dataclass

# Access byte bits.
ACC_ACCESSED = 0x01
ACC_RW = 0x02          # data: writable; code: readable
ACC_DC = 0x04          # data: expand-down; code: conforming
ACC_CODE = 0x08
ACC_S = 0x10           # 1 = code/data, 0 = system
ACC_PRESENT = 0x80
# Flags nibble.
FLAG_DB = 0x4          # default operand size 32 (code) / big stack (data)
FLAG_G = 0x8           # limit in 4 KiB units


@dataclass(frozen=True)
class Descriptor:
    base: int
    limit: int             # byte-granular limit (after G scaling)
    access: int
    flags: int             # G D/B L AVL nibble

    @property
    def dpl(self) -> int:
        return (self.access >> 5) & 3

    def encode(self) -> bytes:
        limit, flags = self.limit, self.flags
        if limit > 0xFFFFF:
            limit, flags = limit >> 12, flags | FLAG_G
        elif flags & FLAG_G:
            limit >>= 12
        return struct.pack(
            "<HHBBBB", limit & 0xFFFF, self.base & 0xFFFF, (self.base >> 16) & 0xFF,
            self.access, ((limit >> 16) & 0xF) | (flags << 4), (self.base >> 24) & 0xFF,
        )

    @classmethod
    def decode(cls, raw: bytes) -> "Descriptor":
        lo, base_lo, base_mid, access, flags_lim, base_hi = struct.unpack("<HHBBBB", raw[:8])
        flags = flags_lim >> 4
        limit = lo | ((flags_lim & 0xF) << 16)
        if flags & FLAG_G:
            limit = (limit << 12) | 0xFFF
        return cls(base_lo | (base_mid << 16) | (base_hi << 24), limit, access, flags)


def code32(base=0, limit=0xFFFFFFFF, dpl=0) -> Descriptor:
    return Descriptor(base, limit, ACC_PRESENT | ACC_S | ACC_CODE | ACC_RW | ACC_ACCESSED | (dpl << 5), FLAG_DB)


def data32(base=0, limit=0xFFFFFFFF, dpl=0) -> Descriptor:
    return Descriptor(base, limit, ACC_PRESENT | ACC_S | ACC_RW | ACC_ACCESSED | (dpl << 5), FLAG_DB)


def data16(base: int, limit: int = 0xFFFF, dpl=0) -> Descriptor:
    """A real-mode-like segment: 16-bit stack size (SP, not ESP)."""
    return Descriptor(base, limit, ACC_PRESENT | ACC_S | ACC_RW | ACC_ACCESSED | (dpl << 5), 0)


def code16(base=0, limit=0xFFFF, dpl=0) -> Descriptor:
    return Descriptor(base, limit, ACC_PRESENT | ACC_S | ACC_CODE | ACC_RW | ACC_ACCESSED | (dpl << 5), 0)
