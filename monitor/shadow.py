"""The shadow-descriptor manager: pure data in, data out (docs/shadowing.md).

The real CPU's GDTR and LDTR never point at the guest's tables.  They point at
*shadow* tables in the monitor region that sit index-for-index with the
guest's (same selectors, same table limits), so guest code running directly
(DE) loads the same selectors it would on its own CPU.  Each shadow entry is
the guest's entry with the minimum changed to keep the monitor safe:

=====================================  =======================================
guest entry                            shadow entry
=====================================  =======================================
GDT entry 0                            copied verbatim (the CPU never reads it:
                                       selectors 0-3 are null, SDM vol. 3 3.4.2)
all-zero, or not present (P=0)         copied verbatim
code / data segment reaching           limit truncated so that no byte of the
the monitor region                     segment is at or above `monitor_base`
                                       (below); everything else bit for bit
expand-up code / data segment whose    not present (``UNSHADOWABLE``): no limit
base is in the monitor region          can express it; the monitor emulates the
                                       load and the register stays cached (BT)
call / task / interrupt / trap gate    not present (P=0), everything else bit
                                       for bit; listed for the monitor, which
                                       emulates the gate (U6: a call through a
                                       call gate from CPL 3 aborts the host)
available TSS (type 1, 9)              not present: a far jmp/call to it from
                                       CPL <= DPL would make the real CPU switch
                                       tasks using guest memory (SDM 7.3)
busy TSS (type 3, 11), LDT (type 2)    copied verbatim (see below)
reserved system types (0 8 10 13)      copied verbatim (the CPU rejects them)
a trailing partial entry               copied verbatim (beyond the table limit
                                       for every selector: index*8+7 > limit)
=====================================  =======================================

**TSS and LDT descriptors are kept for the monitor, not for the CPU.**  The
monitor sets the real TR and LDTR with their hidden parts directly
(``reg_write(UC_X86_REG_LDTR, (sel, base, limit, flags))``): the real LDTR gets
the guest's LDT selector and the *shadow* LDT's base; the real TR holds the
monitor's own TSS.  So the CPU never loads a TSS or LDT through a shadow entry,
and the guest's `ltr`/`lldt` are callouts (privileged, BT only) that read the
guest's table.  Busy TSS and LDT entries are therefore copied unchanged, so that
`lar`/`lsl` run directly in DE give the guest's own answer; they cannot be used
for a task switch (a jmp/call to a busy TSS is #GP, SDM 7.3) nor loaded from
CPL 3.  Available TSSes are hidden like gates, because a jmp/call to one *is*
a task switch the real CPU would perform.  The TSS's base and limit are not
truncated: the real CPU never accesses memory through them.

**Truncation.**  For an expand-up segment the valid offsets are 0..limit and
the linear bytes base..base+limit (mod 2^32): the limit becomes
``monitor_base - 1 - base`` when that is smaller (this also drops a
wrapped-around tail below `base`, which a contiguous offset range cannot keep).
For an expand-down data segment the valid offsets are limit+1..upper (upper =
0xFFFFFFFF if B=1, 0xFFFF if B=0, SDM 3.4.5.1): the top end is fixed by B, so the
truncation is on the *bottom* side: the limit is *raised* past every offset
that lands in the monitor region (the part kept is the one above the monitor
region after wrap-around, if any); when `upper` itself lands in the region the
limit becomes `upper` and the segment is empty (every access faults).  G is
kept when the new limit can be expressed with it (expand-up rounds down to a
4 KiB multiple minus one, expand-down rounds up), otherwise it flips (G=1 with
fewer than 4 KiB left below the region; a G=0 expand-down limit above 1 MiB).

Unicorn does not check data-segment limits nor the CS limit on sequential fetch
(U1), so truncation does not protect the monitor: the software TLB does
(docs/shadowing.md).  Truncation is kept because the architecture says so, it
is what `lsl` shows in DE, and it is what protects the monitor on any CPU that
does check limits.

The second half of this module is the guest's view of the sensitive reads:
`lsl lar verr verw` over the guest's own tables, and what `sgdt sidt sldt str
smsw` store; the translator's callouts call these.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import NamedTuple

from monitor import descriptors as D
from monitor.descriptors import Descriptor

MONITOR_BASE = 0xFFC00000
_MASK32 = 0xFFFFFFFF


class Note(enum.IntFlag):
    """What shadowing did to one entry (statistics, and the monitor's lists)."""
    NONE = 0
    TRUNCATED = 1        # a code/data limit changed (and maybe G)
    GATE = 2             # a gate (always with HIDDEN when it was present)
    SYSTEM = 4           # S=0: TSS, LDT, gate or reserved type
    HIDDEN = 8           # present in the guest's table, not present in the shadow
    UNSHADOWABLE = 16    # a code/data segment starting inside the monitor region


# ------------------------------------------------------------------ truncation

def _monitor_offsets(base: int, monitor_base: int) -> list[tuple[int, int]]:
    """Offsets (inclusive intervals, ascending) whose linear address base+off mod 2^32 is >= monitor_base."""
    start = (monitor_base - base) & _MASK32
    end = (_MASK32 - base) & _MASK32
    if start <= end:
        return [(start, end)]
    return [(0, end), (start, _MASK32)]        # base inside the region: wraps in offset space


def _expand_up_limit(limit: int, base: int, monitor_base: int) -> int | None:
    """The largest limit <= `limit` keeping 0..limit out of the region; None if offset 0 is in it."""
    for lo, _hi in _monitor_offsets(base, monitor_base):
        if lo == 0:
            return None
        if limit >= lo:
            return lo - 1
    return limit


def _expand_down_limit(limit: int, upper: int, base: int, monitor_base: int) -> int:
    """The smallest limit >= `limit` keeping limit+1..upper out of the region (upper = empty)."""
    if limit >= upper:
        return limit                               # already empty: nothing to exclude
    new = limit
    for lo, hi in _monitor_offsets(base, monitor_base):
        if lo > upper or hi <= new:
            continue                               # beyond the segment's top / already excluded
        if hi >= upper:
            return upper                           # the top offset is in the region: empty
        new = hi                                   # exclude up to the end of this piece
    return new


def _fit_down(d: Descriptor, target: int) -> Descriptor:
    """Expand-up: a limit field expressing at most `target` bytes (G kept when possible)."""
    if d.granularity and target >= 0xFFF:
        return d.with_raw_limit((target + 1) // 0x1000 - 1, True)
    if target <= 0xFFFFF:
        return d.with_raw_limit(target, False)
    return d.with_raw_limit((target + 1) // 0x1000 - 1, True)


def _fit_up(d: Descriptor, target: int) -> Descriptor:
    """Expand-down: a limit field expressing at least `target` (G kept when possible)."""
    if not d.granularity and target <= 0xFFFFF:
        return d.with_raw_limit(target, False)
    return d.with_raw_limit(min(target >> 12, 0xFFFFF), True)


def truncate(d: Descriptor, monitor_base: int = MONITOR_BASE) -> Descriptor | None:
    """`d` (a code/data segment) with its limit truncated below `monitor_base`.

    Returns `d` itself when nothing reaches the region, None when no limit can
    keep the segment out of it (expand-up with base in the region).
    """
    if d.expand_down:
        new = _expand_down_limit(d.limit, d.upper_bound, d.base, monitor_base)
        return d if new == d.limit else _fit_up(d, new)
    new = _expand_up_limit(d.limit, d.base, monitor_base)
    if new is None:
        return None
    return d if new == d.limit else _fit_down(d, new)


# ------------------------------------------------------------------ shadow tables

def shadow_entry(raw: bytes, monitor_base: int = MONITOR_BASE) -> tuple[bytes, Note]:
    """The shadow of one 8-byte guest entry (not GDT entry 0: see `shadow_table`)."""
    raw = bytes(raw[:8])
    access = raw[5]
    if raw == bytes(8) or not access & D.ACC_PRESENT:
        note = Note.SYSTEM if raw != bytes(8) and not access & D.ACC_S else Note.NONE
        if note and access & 0xF in D.GATE_TYPES:
            note |= Note.GATE
        return raw, note
    if access & D.ACC_S:
        d = Descriptor.decode(raw)
        t = truncate(d, monitor_base)
        if t is None:
            return raw[:5] + bytes([access & ~D.ACC_PRESENT]) + raw[6:], Note.UNSHADOWABLE | Note.HIDDEN
        if t is d:
            return raw, Note.NONE
        return t.encode(), Note.TRUNCATED
    typ = access & 0xF
    hidden = raw[:5] + bytes([access & ~D.ACC_PRESENT]) + raw[6:]
    if typ in D.GATE_TYPES:
        return hidden, Note.GATE | Note.SYSTEM | Note.HIDDEN
    if typ in D.TSS_AVAILABLE_TYPES:
        return hidden, Note.SYSTEM | Note.HIDDEN
    return raw, Note.SYSTEM                       # busy TSS, LDT, reserved types


class ShadowTable(NamedTuple):
    data: bytes                  # the shadow table, same length as the guest's
    notes: tuple                 # one Note per 8-byte entry (a partial trailing entry has none)

    def indices(self, note: Note) -> list[int]:
        return [i for i, n in enumerate(self.notes) if n & note]

    @property
    def gates(self) -> list[int]:
        """Indices of the guest's gates: the monitor emulates every transfer through them."""
        return self.indices(Note.GATE)

    @property
    def hidden(self) -> list[int]:
        return self.indices(Note.HIDDEN)

    @property
    def truncated(self) -> list[int]:
        return self.indices(Note.TRUNCATED)

    def counts(self) -> dict[str, int]:
        return {n.name.lower(): len(self.indices(n)) for n in Note if n}


def shadow_table(guest_table_bytes: bytes, monitor_base: int = MONITOR_BASE, *,
                 ldt: bool = False) -> ShadowTable:
    """The index-for-index shadow of a guest GDT (or LDT, `ldt=True`).

    `guest_table_bytes` is the guest's table as the CPU sees it: limit+1 bytes
    from its base.  In a GDT, entry 0 is copied verbatim (never read by the
    CPU); in an LDT, entry 0 is a real entry (selector 0x0004).
    """
    src = bytes(guest_table_bytes)
    out = bytearray(src)
    notes = []
    for i in range(len(src) // 8):
        if i == 0 and not ldt:
            notes.append(Note.NONE)
            continue
        entry, note = shadow_entry(src[8 * i:8 * i + 8], monitor_base)
        out[8 * i:8 * i + 8] = entry
        notes.append(note)
    return ShadowTable(bytes(out), tuple(notes))


def reshadow(shadow: bytearray, guest_table_bytes: bytes, start: int, end: int,
             monitor_base: int = MONITOR_BASE, *, ldt: bool = False) -> dict[int, Note]:
    """Bring `shadow` in step after the guest wrote bytes [start, end) of its table.

    For the write trace on the guest's GDT/LDT pages: only the entries the
    write touched are recomputed.  Returns {index: note} for them.
    """
    src = bytes(guest_table_bytes)
    changed = {}
    for i in range(max(start, 0) // 8, min((end + 7) // 8, len(src) // 8)):
        if i == 0 and not ldt:
            entry, note = src[0:8], Note.NONE
        else:
            entry, note = shadow_entry(src[8 * i:8 * i + 8], monitor_base)
        shadow[8 * i:8 * i + 8] = entry
        changed[i] = note
    return changed


# ------------------------------------------------------------------ reversibility

def hidden_part(d: Descriptor) -> tuple[int, int, int, int]:
    """What a segment load puts in the hidden part, as compared for reversibility.

    Base, byte-granular limit, access rights without the accessed bit (the
    load itself sets A in the table, SDM 3.4.5.1, so A never makes a reload
    differ), and the D/B, L, AVL flags (G is folded into the limit).
    """
    return d.base & _MASK32, d.limit & _MASK32, d.access & ~D.ACC_ACCESSED & 0xFF, d.flags & ~D.FLAG_G & 0xF


def is_reversible(cached_descriptor: Descriptor | bytes | None,
                  guest_table_entry: Descriptor | bytes | None) -> bool:
    """Does reloading the segment register from the guest's table give back its hidden part?

    `cached_descriptor` is the hidden part as it was loaded (None for a null
    selector); `guest_table_entry` is the table entry the selector names now
    (None for a null selector, or when the selector is beyond the table limit
    or names the LDT while LDTR is null).  A register loaded in real mode or
    V8086 (base = value * 16) is reversible only if the table happens to say
    exactly that.  A reload must also be possible: the entry must be a present
    code or data segment.  Non-reversible segments force BT (monitor.modes).
    """
    if cached_descriptor is None or guest_table_entry is None:
        return cached_descriptor is None and guest_table_entry is None
    cached = cached_descriptor if isinstance(cached_descriptor, Descriptor) else Descriptor.decode(cached_descriptor)
    entry = guest_table_entry if isinstance(guest_table_entry, Descriptor) else Descriptor.decode(guest_table_entry)
    if not (entry.present and entry.is_segment):
        return False
    return hidden_part(cached) == hidden_part(entry)


# ------------------------------------------------------------------ the guest's tables

@dataclass(frozen=True)
class GuestTables:
    """The guest's descriptor tables as its CPU sees them.

    `gdt` is GDTR.limit + 1 bytes from GDTR.base; `ldt` is the LDT's limit + 1
    bytes from its base, or None while LDTR is null.
    """
    gdt: bytes
    ldt: bytes | None = None

    def entry(self, selector: int) -> bytes | None:
        """The 8 bytes `selector` names, None when index*8+7 is beyond the table limit.

        Null selectors are not special here (GDT entry 0 is returned); the
        instructions check for them first.
        """
        table = self.ldt if D.selector_ti(selector) else self.gdt
        off = D.selector_offset(selector)
        if table is None or off + 8 > len(table):
            return None
        return bytes(table[off:off + 8])

    def reversible(self, selector: int, cached_descriptor: Descriptor | bytes | None) -> bool:
        """`is_reversible` for a segment register holding `selector`."""
        entry = None if D.is_null_selector(selector) else self.entry(selector)
        return is_reversible(cached_descriptor, entry)

    def all_reversible(self, segments) -> bool:
        """`segments_reversible` for monitor.modes.decide: every (selector, cached) pair reversible."""
        return all(self.reversible(sel, cached) for sel, cached in segments)


# ------------------------------------------------------------------ lsl lar verr verw

# Descriptor types valid for LSL and LAR besides code/data (SDM vol. 2, LSL and LAR tables).
LSL_SYSTEM_TYPES = frozenset({D.SYS_TSS16, D.SYS_LDT, D.SYS_TSS16_BUSY, D.SYS_TSS32, D.SYS_TSS32_BUSY})
LAR_SYSTEM_TYPES = LSL_SYSTEM_TYPES | {D.SYS_CALL_GATE16, D.SYS_TASK_GATE, D.SYS_CALL_GATE32}


def _visible(selector: int, cpl: int, tables: GuestTables, system_types) -> bytes | None:
    """The common checks of LSL and LAR (SDM vol. 2): the entry when ZF would be 1.

    * a null selector, or an offset beyond the table limit: ZF=0;
    * code/data: non-conforming code and data need DPL >= CPL and DPL >= RPL;
      conforming code is visible from any level;
    * system: only `system_types`, with the same DPL check;
    * the present bit is not checked.
    """
    if D.is_null_selector(selector):
        return None
    raw = tables.entry(selector)
    if raw is None:
        return None
    access = raw[5]
    dpl, rpl = (access >> 5) & 3, selector & 3
    if access & D.ACC_S:
        conforming = access & D.ACC_CODE and access & D.ACC_DC
        if not conforming and (dpl < cpl or dpl < rpl):
            return None
        return raw
    if access & 0xF not in system_types or dpl < cpl or dpl < rpl:
        return None
    return raw


def lsl(selector: int, cpl: int, tables: GuestTables, operand_size: int = 32) -> tuple[bool, int | None]:
    """LSL: (ZF, the byte-granular limit) or (False, None) when the destination is unchanged.

    The limit is scaled by G (SDM vol. 2, LSL: "the processor ... translates
    it into a byte limit").  With a 16-bit operand only bits 15:0 are written.
    Valid system types: TSS (16/32, available/busy) and LDT, not gates.
    """
    raw = _visible(selector, cpl, tables, LSL_SYSTEM_TYPES)
    if raw is None:
        return False, None
    limit = Descriptor.decode(raw).limit
    return True, limit & (0xFFFF if operand_size == 16 else _MASK32)


def lar(selector: int, cpl: int, tables: GuestTables, operand_size: int = 32) -> tuple[bool, int | None]:
    """LAR: (ZF, access rights) or (False, None) when the destination is unchanged.

    The second dword of the descriptor masked by 0x00F0FF00 (type, S, DPL, P,
    AVL, L, D/B, G), or by 0xFF00 with a 16-bit operand (SDM vol. 2, LAR).
    Valid system types: TSS, LDT, call gates and task gates; not interrupt or
    trap gates.
    """
    raw = _visible(selector, cpl, tables, LAR_SYSTEM_TYPES)
    if raw is None:
        return False, None
    dword = struct.unpack_from("<I", raw, 4)[0]
    return True, dword & (0xFF00 if operand_size == 16 else 0x00F0FF00)


def _verify(selector: int, cpl: int, tables: GuestTables, write: bool) -> bool:
    """VERR/VERW (SDM vol. 2): ZF=1 when the segment is readable/writable from CPL and RPL.

    Only code/data segments qualify.  VERR: data, or readable code; conforming
    readable code skips the DPL check.  VERW: writable data only (code is
    never writable), always with DPL >= CPL and DPL >= RPL.  P is not checked.
    """
    if D.is_null_selector(selector):
        return False
    raw = tables.entry(selector)
    if raw is None:
        return False
    d = Descriptor.decode(raw)
    if not d.is_segment:
        return False
    privileged_ok = d.dpl >= cpl and d.dpl >= (selector & 3)
    if write:
        return d.writable and privileged_ok
    if not d.readable:
        return False
    return d.conforming or privileged_ok


def verr(selector: int, cpl: int, tables: GuestTables) -> bool:
    return _verify(selector, cpl, tables, write=False)


def verw(selector: int, cpl: int, tables: GuestTables) -> bool:
    return _verify(selector, cpl, tables, write=True)


# ------------------------------------------------------------------ sgdt sidt sldt str smsw

def sgdt(base: int, limit: int, operand_size: int = 32) -> bytes:
    """The 6 bytes SGDT stores: the guest's GDTR, never the shadow's.

    Limit in bytes 0-1, the full 32-bit base in bytes 2-5 *whatever the
    operand size*: the current SDM (vol. 2, SGDT, Operation: "IF OperandSize
    = 16 or OperandSize = 32 ... DEST[16:47] := GDTR(Base); (* Full 32-bit
    base address stored *)") and AMD's APM ("operand-size prefixes are
    ignored") agree.  Older SDM editions, and Unicorn/QEMU, store a 24-bit
    base and a zero byte with a 16-bit operand: a known Unicorn-vs-SDM
    difference (docs/shadowing.md), pinned in tests/test_shadow.py.  The
    24-bit form belongs to LGDT/LIDT with a 16-bit operand.
    """
    del operand_size                          # accepted so callouts can pass it; it changes nothing
    return struct.pack("<HI", limit & 0xFFFF, base & _MASK32)


def sidt(base: int, limit: int, operand_size: int = 32) -> bytes:
    """The 6 bytes SIDT stores: the guest's IDTR (same format and rule as SGDT)."""
    return sgdt(base, limit, operand_size)


def _selector_store(value: int, dest_is_register: bool, operand_size: int) -> tuple[int, int]:
    """(value, width in bytes) that SLDT/STR write.

    To memory: always 16 bits.  To a 32-bit register: the selector
    zero-extended (SDM vol. 2, SLDT/STR: cleared on P6 and later; Unicorn does
    the same).  To a 16-bit register: bits 15:0, the rest of the register kept.
    """
    value &= 0xFFFF
    if dest_is_register and operand_size == 32:
        return value, 4
    return value, 2


def sldt(ldtr_selector: int, dest_is_register: bool = True, operand_size: int = 32) -> tuple[int, int]:
    """SLDT: the guest's LDTR selector (the real LDTR holds the same selector in DE)."""
    return _selector_store(ldtr_selector, dest_is_register, operand_size)


def str_(tr_selector: int, dest_is_register: bool = True, operand_size: int = 32) -> tuple[int, int]:
    """STR: the guest's TR selector, never the monitor's TSS."""
    return _selector_store(tr_selector, dest_is_register, operand_size)


def smsw(cr0: int, dest_is_register: bool = True, operand_size: int = 32) -> tuple[int, int]:
    """SMSW: the guest's CR0 (virtual, never the real one), as (value, width in bytes).

    To memory: CR0 bits 15:0, 16 bits, at every operand size.  To a 32-bit
    register the SDM (vol. 2, SMSW) leaves bits 31:16 *undefined*; Unicorn
    writes only bits 15:0 and keeps the rest of the register, which the SDM
    allows and which is what the equivalence fuzzer's reference (bare
    Unicorn) does; so hybrid86 does the same: always a 16-bit write.
    (qemu-system-i386 7.2 writes zeros there, Bochs and P6-and-later hardware
    all of CR0: a guest cannot rely on any; the transparency probes mask it.)
    """
    del dest_is_register, operand_size
    return cr0 & 0xFFFF, 2


__all__ = [
    "MONITOR_BASE", "Note", "ShadowTable", "GuestTables", "truncate", "shadow_entry",
    "shadow_table", "reshadow", "hidden_part", "is_reversible", "lsl", "lar", "verr",
    "verw", "sgdt", "sidt", "sldt", "str_", "smsw", "LSL_SYSTEM_TYPES", "LAR_SYSTEM_TYPES",
]
