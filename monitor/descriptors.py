"""x86 descriptors and selectors: decoding and encoding (Intel SDM vol. 3, 3.4-3.5, 6.11, 7.2, 5.8).

An 8-byte descriptor in a GDT or LDT is one of:

* a **segment descriptor** (S=1): code or data, SDM vol. 3, 3.4.5, Table 3-1;
* a **system-segment descriptor** (S=0, type 1 2 3 9 11): 16-/32-bit TSS
  available or busy, LDT (SDM 3.5, Table 3-2; 7.2.2; 3.5.1);
* a **gate** (S=0, type 4 5 6 7 12 14 15): call gate (5.8.3), task gate (7.2.5),
  interrupt and trap gates (6.11);
* reserved (S=0, type 0 8 10 13): the CPU rejects it everywhere.

Segment and system-segment descriptors share one layout (base 31:0 split over
bytes 2-4 and 7, limit 19:0 over bytes 0-1 and the low nibble of byte 6, access
byte 5, the G D/B L AVL flags in the high nibble of byte 6) and are both
`Descriptor`.  Gates are `Gate`.  Both round-trip every 8-byte pattern bit for
bit (`decode(raw).encode() == raw`), which the shadow manager relies on when it
changes one field and must keep all others.

`Descriptor.limit` is byte-granular: with G=1 the 20-bit field is scaled as
``(raw << 12) | 0xFFF`` (SDM 3.4.5, "G flag").
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, replace

# Access byte bits.
ACC_ACCESSED = 0x01
ACC_RW = 0x02          # data: writable; code: readable
ACC_DC = 0x04          # data: expand-down; code: conforming
ACC_CODE = 0x08
ACC_S = 0x10           # 1 = code/data, 0 = system
ACC_DPL_SHIFT = 5
ACC_PRESENT = 0x80
# Flags nibble.
FLAG_AVL = 0x1
FLAG_L = 0x2           # 64-bit code (IA-32e only; must be 0 here)
FLAG_DB = 0x4          # default operand size 32 (code) / big stack, upper bound 4 GiB (data)
FLAG_G = 0x8           # limit in 4 KiB units

# System descriptor types (S=0), SDM vol. 3, Table 3-2 (32-bit modes).
SYS_RESERVED0 = 0x0
SYS_TSS16 = 0x1
SYS_LDT = 0x2
SYS_TSS16_BUSY = 0x3
SYS_CALL_GATE16 = 0x4
SYS_TASK_GATE = 0x5
SYS_INT_GATE16 = 0x6
SYS_TRAP_GATE16 = 0x7
SYS_RESERVED8 = 0x8
SYS_TSS32 = 0x9
SYS_RESERVED10 = 0xA
SYS_TSS32_BUSY = 0xB
SYS_CALL_GATE32 = 0xC
SYS_RESERVED13 = 0xD
SYS_INT_GATE32 = 0xE
SYS_TRAP_GATE32 = 0xF

GATE_TYPES = frozenset({SYS_CALL_GATE16, SYS_TASK_GATE, SYS_INT_GATE16, SYS_TRAP_GATE16,
                        SYS_CALL_GATE32, SYS_INT_GATE32, SYS_TRAP_GATE32})
TSS_TYPES = frozenset({SYS_TSS16, SYS_TSS16_BUSY, SYS_TSS32, SYS_TSS32_BUSY})
TSS_AVAILABLE_TYPES = frozenset({SYS_TSS16, SYS_TSS32})
SYSTEM_SEGMENT_TYPES = TSS_TYPES | {SYS_LDT}
RESERVED_SYSTEM_TYPES = frozenset({SYS_RESERVED0, SYS_RESERVED8, SYS_RESERVED10, SYS_RESERVED13})


class Kind(enum.Enum):
    """What an 8-byte table entry is, from its S bit and type field."""
    DATA = "data"
    CODE = "code"
    TSS16 = "tss16"
    LDT = "ldt"
    TSS16_BUSY = "tss16-busy"
    CALL_GATE16 = "call-gate16"
    TASK_GATE = "task-gate"
    INT_GATE16 = "int-gate16"
    TRAP_GATE16 = "trap-gate16"
    TSS32 = "tss32"
    TSS32_BUSY = "tss32-busy"
    CALL_GATE32 = "call-gate32"
    INT_GATE32 = "int-gate32"
    TRAP_GATE32 = "trap-gate32"
    RESERVED = "reserved"


_SYSTEM_KINDS = {
    SYS_TSS16: Kind.TSS16, SYS_LDT: Kind.LDT, SYS_TSS16_BUSY: Kind.TSS16_BUSY,
    SYS_CALL_GATE16: Kind.CALL_GATE16, SYS_TASK_GATE: Kind.TASK_GATE,
    SYS_INT_GATE16: Kind.INT_GATE16, SYS_TRAP_GATE16: Kind.TRAP_GATE16,
    SYS_TSS32: Kind.TSS32, SYS_TSS32_BUSY: Kind.TSS32_BUSY, SYS_CALL_GATE32: Kind.CALL_GATE32,
    SYS_INT_GATE32: Kind.INT_GATE32, SYS_TRAP_GATE32: Kind.TRAP_GATE32,
}


def kind_of(access: int) -> Kind:
    """The kind of an entry from its access byte (byte 5)."""
    if access & ACC_S:
        return Kind.CODE if access & ACC_CODE else Kind.DATA
    return _SYSTEM_KINDS.get(access & 0xF, Kind.RESERVED)


class _AccessBits:
    """Properties derived from the access byte, shared by descriptors and gates."""
    access: int

    @property
    def dpl(self) -> int:
        return (self.access >> ACC_DPL_SHIFT) & 3

    @property
    def type(self) -> int:
        """The 4-bit type field (bits 8-11 of the second dword)."""
        return self.access & 0xF

    @property
    def present(self) -> bool:
        return bool(self.access & ACC_PRESENT)

    @property
    def is_segment(self) -> bool:
        """S=1: a code or data segment."""
        return bool(self.access & ACC_S)

    @property
    def is_system(self) -> bool:
        return not self.access & ACC_S

    @property
    def kind(self) -> Kind:
        return kind_of(self.access)

    @property
    def is_gate(self) -> bool:
        return self.is_system and self.type in GATE_TYPES


@dataclass(frozen=True)
class Descriptor(_AccessBits):
    """A segment or system-segment descriptor (also any other 8 bytes, bit-exact)."""
    base: int
    limit: int             # byte-granular limit (after G scaling)
    access: int
    flags: int             # G D/B L AVL nibble

    # -- code / data (S=1), SDM vol. 3, Table 3-1 --------------------------------
    @property
    def is_code(self) -> bool:
        return self.is_segment and bool(self.access & ACC_CODE)

    @property
    def is_data(self) -> bool:
        return self.is_segment and not self.access & ACC_CODE

    @property
    def accessed(self) -> bool:
        return self.is_segment and bool(self.access & ACC_ACCESSED)

    @property
    def readable(self) -> bool:
        """Data segments are always readable; code segments when R=1."""
        return self.is_data or (self.is_code and bool(self.access & ACC_RW))

    @property
    def writable(self) -> bool:
        """Only data segments with W=1; code segments are never writable (SDM 3.4.5.1)."""
        return self.is_data and bool(self.access & ACC_RW)

    @property
    def conforming(self) -> bool:
        return self.is_code and bool(self.access & ACC_DC)

    @property
    def expand_down(self) -> bool:
        return self.is_data and bool(self.access & ACC_DC)

    # -- flags --------------------------------------------------------------------
    @property
    def granularity(self) -> bool:
        return bool(self.flags & FLAG_G)

    @property
    def big(self) -> bool:
        """D/B: 32-bit default operand size (code), ESP stack and 4 GiB upper bound (data)."""
        return bool(self.flags & FLAG_DB)

    @property
    def long(self) -> bool:
        return bool(self.flags & FLAG_L)

    @property
    def avl(self) -> bool:
        return bool(self.flags & FLAG_AVL)

    @property
    def raw_limit(self) -> int:
        """The 20-bit limit field as stored."""
        return (self.limit >> 12) & 0xFFFFF if self.granularity else self.limit & 0xFFFFF

    @property
    def upper_bound(self) -> int:
        """The highest offset an expand-down segment allows (SDM 3.4.5.1): B=1 4 GiB-1, B=0 64 KiB-1."""
        return 0xFFFFFFFF if self.big else 0xFFFF

    def offset_range(self) -> tuple[int, int] | None:
        """The inclusive range of valid offsets of a code/data segment, None if it is empty.

        Expand-up: 0..limit.  Expand-down: limit+1..upper_bound (SDM 3.4.5.1).
        """
        if self.expand_down:
            return (self.limit + 1, self.upper_bound) if self.limit < self.upper_bound else None
        return 0, self.limit

    # -- system segments (S=0) ------------------------------------------------------
    @property
    def is_tss(self) -> bool:
        return self.is_system and self.type in TSS_TYPES

    @property
    def is_ldt(self) -> bool:
        return self.is_system and self.type == SYS_LDT

    @property
    def busy(self) -> bool:
        """A busy TSS (type 3 or 11): bit 1 of the type (SDM 7.2.2)."""
        return self.is_tss and bool(self.type & 2)

    # -- encoding -------------------------------------------------------------------
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

    def with_raw_limit(self, raw_limit: int, granularity: bool) -> "Descriptor":
        """This descriptor with a new 20-bit limit field and G flag, everything else kept."""
        if not 0 <= raw_limit <= 0xFFFFF:
            raise ValueError(f"raw limit {raw_limit:#x} does not fit 20 bits")
        flags = (self.flags | FLAG_G) if granularity else (self.flags & ~FLAG_G)
        limit = (raw_limit << 12) | 0xFFF if granularity else raw_limit
        return replace(self, limit=limit, flags=flags)

    def with_access(self, access: int) -> "Descriptor":
        return replace(self, access=access & 0xFF)


@dataclass(frozen=True)
class Gate(_AccessBits):
    """A call, task, interrupt or trap gate (S=0, type in GATE_TYPES).

    Layout (SDM vol. 3, Figure 5-8, 6-2, 7-8): offset 15:0 in bytes 0-1, the
    target selector in bytes 2-3, the parameter count (call gates) in bits 4:0
    of byte 4 (bits 7:5 reserved, kept in `reserved`), the access byte, offset
    31:16 in bytes 6-7.  A task gate's selector is a TSS selector and its offset
    fields are reserved (kept in `offset` all the same).
    """
    selector: int
    offset: int
    access: int
    param_count: int = 0
    reserved: int = 0      # bits 7:5 of byte 4

    @property
    def is_32(self) -> bool:
        """Bit 3 of the type: 32-bit gate (pushes 32-bit values, 32-bit offset)."""
        return bool(self.type & 8)

    @property
    def target_offset(self) -> int:
        """The offset the gate transfers to (16-bit gates use only bits 15:0)."""
        return self.offset if self.is_32 else self.offset & 0xFFFF

    def encode(self) -> bytes:
        return struct.pack(
            "<HHBBH", self.offset & 0xFFFF, self.selector & 0xFFFF,
            (self.param_count & 0x1F) | ((self.reserved & 7) << 5), self.access & 0xFF,
            (self.offset >> 16) & 0xFFFF,
        )

    @classmethod
    def decode(cls, raw: bytes) -> "Gate":
        off_lo, selector, count, access, off_hi = struct.unpack("<HHBBH", raw[:8])
        return cls(selector, off_lo | (off_hi << 16), access, count & 0x1F, count >> 5)


def decode(raw: bytes) -> Descriptor | Gate:
    """Decode any table entry: a `Gate` for gate types, a `Descriptor` otherwise."""
    if len(raw) < 8:
        raise ValueError(f"a descriptor is 8 bytes, got {len(raw)}")
    access = raw[5]
    if not access & ACC_S and access & 0xF in GATE_TYPES:
        return Gate.decode(raw)
    return Descriptor.decode(raw)


def encode(entry: Descriptor | Gate) -> bytes:
    return entry.encode()


# -- selectors (SDM vol. 3, 3.4.2) -----------------------------------------------------

def selector_index(selector: int) -> int:
    return (selector & 0xFFFF) >> 3


def selector_ti(selector: int) -> int:
    """Table indicator: 0 = GDT, 1 = LDT."""
    return (selector >> 2) & 1


def selector_rpl(selector: int) -> int:
    return selector & 3


def selector_offset(selector: int) -> int:
    """Byte offset of the selector's descriptor in its table (index * 8)."""
    return (selector & 0xFFF8)


def make_selector(index: int, ti: int = 0, rpl: int = 0) -> int:
    if not 0 <= index < 8192 or ti not in (0, 1) or not 0 <= rpl <= 3:
        raise ValueError(f"bad selector fields index={index} ti={ti} rpl={rpl}")
    return (index << 3) | (ti << 2) | rpl


def is_null_selector(selector: int) -> bool:
    """Index 0 in the GDT, any RPL (SDM 3.4.2).  0x0004..0x0007 (LDT entry 0) is not null."""
    return (selector & 0xFFFC) == 0


# -- constructors ------------------------------------------------------------------------

def code32(base=0, limit=0xFFFFFFFF, dpl=0) -> Descriptor:
    return Descriptor(base, limit, ACC_PRESENT | ACC_S | ACC_CODE | ACC_RW | ACC_ACCESSED | (dpl << 5), FLAG_DB)


def data32(base=0, limit=0xFFFFFFFF, dpl=0) -> Descriptor:
    return Descriptor(base, limit, ACC_PRESENT | ACC_S | ACC_RW | ACC_ACCESSED | (dpl << 5), FLAG_DB)


def data16(base: int, limit: int = 0xFFFF, dpl=0) -> Descriptor:
    """A real-mode-like segment: 16-bit stack size (SP, not ESP)."""
    return Descriptor(base, limit, ACC_PRESENT | ACC_S | ACC_RW | ACC_ACCESSED | (dpl << 5), 0)


def code16(base=0, limit=0xFFFF, dpl=0) -> Descriptor:
    return Descriptor(base, limit, ACC_PRESENT | ACC_S | ACC_CODE | ACC_RW | ACC_ACCESSED | (dpl << 5), 0)


def data(base=0, limit=0xFFFFFFFF, dpl=0, writable=True, expand_down=False, big=True,
         present=True) -> Descriptor:
    access = ACC_S | (ACC_RW if writable else 0) | (ACC_DC if expand_down else 0) | (dpl << 5)
    return Descriptor(base, limit, access | (ACC_PRESENT if present else 0), FLAG_DB if big else 0)


def code(base=0, limit=0xFFFFFFFF, dpl=0, readable=True, conforming=False, bits=32,
         present=True) -> Descriptor:
    access = ACC_S | ACC_CODE | (ACC_RW if readable else 0) | (ACC_DC if conforming else 0) | (dpl << 5)
    return Descriptor(base, limit, access | (ACC_PRESENT if present else 0), FLAG_DB if bits == 32 else 0)


def tss(base: int, limit: int = 103, dpl=0, busy=False, bits=32) -> Descriptor:
    typ = (SYS_TSS32 if bits == 32 else SYS_TSS16) | (2 if busy else 0)
    return Descriptor(base, limit, ACC_PRESENT | (dpl << 5) | typ, 0)


def ldt(base: int, limit: int, dpl=0) -> Descriptor:
    return Descriptor(base, limit, ACC_PRESENT | (dpl << 5) | SYS_LDT, 0)


def call_gate(selector: int, offset: int, dpl=3, params=0, bits=32) -> Gate:
    return Gate(selector, offset, ACC_PRESENT | (dpl << 5) | (SYS_CALL_GATE32 if bits == 32 else SYS_CALL_GATE16), params)


def int_gate(selector: int, offset: int, dpl=0, bits=32) -> Gate:
    return Gate(selector, offset, ACC_PRESENT | (dpl << 5) | (SYS_INT_GATE32 if bits == 32 else SYS_INT_GATE16))


def trap_gate(selector: int, offset: int, dpl=0, bits=32) -> Gate:
    return Gate(selector, offset, ACC_PRESENT | (dpl << 5) | (SYS_TRAP_GATE32 if bits == 32 else SYS_TRAP_GATE16))


def task_gate(tss_selector: int, dpl=0) -> Gate:
    return Gate(tss_selector, 0, ACC_PRESENT | (dpl << 5) | SYS_TASK_GATE)
