"""Protected-mode and V8086 environments: the guest's own tables and the layout
of a generated block under protected-mode code segments (docs/fuzzing.md).

Both paths run the same guest: 2 MiB of RAM, physical = linear (no paging),
with the guest's system area at the top of RAM, out of V8086 reach and out
of the way of most generated accesses:

==========  ==============================================================
0x1F0000    the guest's GDT (``SYS_GDT``); 0x1F0400 an identical copy
            (``lgdt`` items load one or the other)
0x1F0800    the LDT (four entries), named by GDT selector 0x30
0x1F1000    the IDT: 256 32-bit interrupt or trap gates, DPL 0 or 3 per
            vector, to ``0x08:HANDLERS + n``; 0x1F1800 an identical copy
0x1F2000    the TSS (busy, TR = 0x28): ss0:esp0 = 0x10:0x1F8000, the I/O
            permission bitmap right after the 104 bytes, then 0xFF
0x1F4100    a second, available TSS (GDT 0x38) for ``ltr``
0x1F5000    the handlers: 0x110 ``hlt`` bytes; vector n's handler is
            HANDLERS + n (both paths stop at the first delivery anyway)
0x1F8000    ss0:esp0 (top of the ring-0 stack)
0x30000     the generated block (``case.BLOCK_LINEAR``), as in real mode
==========  ==============================================================

Fixed GDT entries (all with the accessed bit set):

* 0x08 flat 32-bit code DPL 0 (handlers, SYSENTER_CS), 0x10 flat data DPL 0,
  0x18 flat 32-bit code DPL 3, 0x20 flat data DPL 3 (the SYSENTER/SYSEXIT
  layout), 0x28 the busy TSS, 0x30 the LDT, 0x38 the available TSS;
* from 0x40: the *code aliases* of the mode, code segments over the block
  with different bases, selectors and privilege (the far transfers of a
  block go from one to another, ``Region``), then random descriptors of every
  kind (data of all types, code, LDT, TSS, gates, reserved types,
  not-present entries) for segment loads, ``lar lsl verr verw``, ``lldt``
  and ``ltr``.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass

from monitor import descriptors as D
from monitor.fuzz.case import smc_target

RAM_SIZE = 2 << 20
BLOCK_LINEAR = 0x30000
SYS_GDT = 0x1F0000
SYS_GDT_ALT = 0x1F0400
SYS_LDT = 0x1F0800
SYS_IDT = 0x1F1000
SYS_IDT_ALT = 0x1F1800
SYS_TSS = 0x1F2000
TSS_IOMAP = 0x68
TSS_LIMIT = TSS_IOMAP + 0x2000                   # the byte after the bitmap (0xFF) is the last one
SYS_TSS2 = 0x1F4100
HANDLERS = 0x1F5000
HANDLERS_LEN = 0x110
STACK0_TOP = 0x1F8000
SYS_START, SYS_END = 0x1F0000, 0x1F9000

SEL_CODE0, SEL_DATA0, SEL_CODE3, SEL_DATA3 = 0x08, 0x10, 0x18, 0x20
SEL_TSS, SEL_LDT, SEL_TSS2 = 0x28, 0x30, 0x38
FIRST_ALIAS = 8                                  # GDT index of the first code alias (0x40)
LDT_ENTRIES = 4
MSR_SYSENTER_CS, MSR_SYSENTER_ESP, MSR_SYSENTER_EIP = 0x174, 0x175, 0x176

PM_MODES = ("pm16", "pm32", "ring3", "v86")
HLT = 0xF4


def fixed_gdt() -> list[bytes]:
    """The first eight GDT entries (selectors 0x00..0x38)."""
    return [
        bytes(8),
        D.code32().encode(),
        D.data32().encode(),
        D.code32(dpl=3).encode(),
        D.data32(dpl=3).encode(),
        D.tss(SYS_TSS, TSS_LIMIT, busy=True).encode(),
        D.ldt(SYS_LDT, LDT_ENTRIES * 8 - 1).encode(),
        D.tss(SYS_TSS2, 0x67).encode(),
    ]


def gate_bytes(vector: int, spec: int) -> bytes:
    """IDT entry for `vector`: spec bits 0-1 DPL, bit 2 trap gate (else interrupt gate)."""
    make = D.trap_gate if spec & 4 else D.int_gate
    return make(SEL_CODE0, HANDLERS + vector, dpl=spec & 3).encode()


def io_bitmap(kind: int, seed: int) -> bytes:
    """The TSS I/O permission bitmap: 0 all allowed, 1 all denied, 2 random
    bytes, 3 a random mix of 00/FF/random bytes, 4 all allowed and the byte
    after the bitmap 0 too (an access at port 0xFFFF wider than a byte is
    then allowed as well)."""
    if kind in (0, 4):
        return bytes(0x2000)
    if kind == 1:
        return b"\xff" * 0x2000
    raw = random.Random(seed).randbytes(0x2000)
    if kind == 2:
        return raw
    return raw.translate(_MIX)


_MIX = bytes(0 if r < 85 else 0xFF if r < 170 else r for r in range(256))


def idt_specs(env: dict) -> bytes:
    """Per-vector gate spec (bits 0-1 DPL, bit 2 trap gate), from the seed and
    the share of DPL-3 gates the case drew."""
    rnd = random.Random(env["idt_seed"])
    p3 = env["idt_dpl3"] / 8
    return bytes((3 if rnd.random() < p3 else 0) | (4 if rnd.random() < 0.5 else 0) for _ in range(256))


@dataclass(frozen=True)
class Region:
    """A code segment the block runs under: CS value (selector, or the segment
    value in V8086), its base, the CPL there."""
    sel: int
    base: int
    cpl: int


def env_image(env: dict, mem: bytearray) -> None:
    """Write the guest's system area (tables, TSS, handlers) into `mem`."""
    gdt = bytes.fromhex(env["gdt"])
    mem[SYS_GDT:SYS_GDT + len(gdt)] = gdt
    mem[SYS_GDT_ALT:SYS_GDT_ALT + len(gdt)] = gdt
    ldt = bytes.fromhex(env["ldt"])
    mem[SYS_LDT:SYS_LDT + len(ldt)] = ldt
    idt = b"".join(gate_bytes(n, s) for n, s in enumerate(idt_specs(env)))
    mem[SYS_IDT:SYS_IDT + len(idt)] = idt
    mem[SYS_IDT_ALT:SYS_IDT_ALT + len(idt)] = idt
    tss = bytearray(mem[SYS_TSS:SYS_TSS + TSS_IOMAP])
    struct.pack_into("<IH", tss, 4, STACK0_TOP, SEL_DATA0)          # esp0, ss0
    struct.pack_into("<H", tss, 0x66, TSS_IOMAP)                    # I/O map base
    mem[SYS_TSS:SYS_TSS + TSS_IOMAP] = tss
    mem[SYS_TSS + TSS_IOMAP:SYS_TSS + TSS_IOMAP + 0x2000] = io_bitmap(env["iomap_kind"], env["iomap_seed"])
    mem[SYS_TSS + TSS_LIMIT] = 0x00 if env["iomap_kind"] == 4 else 0xFF
    tss2 = bytearray(0x68)
    struct.pack_into("<IH", tss2, 4, STACK0_TOP - 0x800, SEL_DATA0)
    struct.pack_into("<H", tss2, 0x66, 0x68)
    mem[SYS_TSS2:SYS_TSS2 + 0x68] = tss2
    mem[HANDLERS:HANDLERS + HANDLERS_LEN] = bytes([HLT]) * HANDLERS_LEN


def gdt_entries(env: dict) -> list[bytes]:
    raw = bytes.fromhex(env["gdt"])
    return [raw[i:i + 8] for i in range(0, len(raw), 8)]


def descriptor_of(env: dict, sel: int, mem: bytes | None = None):
    """The descriptor `sel` names in the initial tables (None: null / beyond)."""
    if sel & 0xFFFC == 0:
        return None
    raw = bytes.fromhex(env["ldt"] if sel & 4 else env["gdt"])
    off = sel & 0xFFF8
    if off + 8 > len(raw):
        return None
    return D.decode(raw[off:off + 8])


def regions(env: dict) -> list[Region]:
    return [Region(*r) for r in env["aliases"]]


# --------------------------------------------------------------------------- layout

PLACEHOLDER_SIZE = {"rel8": 1, "rel16": 2, "rel32": 4, "ip16": 2, "ip32": 4, "label16": 2, "label32": 4,
                    "lin32": 4, "mark": 0, "far_ip16": 2, "far_ip32": 4, "far_cs16": 2, "smc16": 2,
                    "smc32": 4, "smclin32": 4}


def item_size(item) -> int:
    n = 0
    for p in item.parts:
        n += len(p) if isinstance(p, (bytes, bytearray)) else PLACEHOLDER_SIZE[p[0]]
    return n


@dataclass
class PmLayout:
    code: bytes
    start: Region
    ip: int
    starts: list
    regions: list
    insns: int


def layout_regions(items, start: Region, next_region, bits: int, max_block: int = 0x800) -> PmLayout:
    """Resolve the placeholders of `items` (see case.Item) for a block at
    BLOCK_LINEAR that starts under code region `start`.  ``next_region(cur,
    item, next_linear, total)`` gives the region after a far transfer item
    (``item.far_delta`` says which).  ``bits`` is the code size (16: IPs must
    stay within 0..0xFFFF)."""
    items = list(items)
    n = len(items)
    sizes = [item_size(it) for it in items]
    starts = [0]
    for s in sizes:
        starts.append(starts[-1] + s)
    total = starts[-1] + 1
    regs, cur = [], start
    for i, it in enumerate(items):
        regs.append(cur)
        if it.far_delta is not None:
            cur = next_region(cur, it, BLOCK_LINEAR + starts[i + 1], total)
    regs.append(cur)
    region_end, last = [], n
    for i in range(n - 1, -1, -1):
        if items[i].far_delta is not None:
            last = i
        region_end.append(last)
    region_end.reverse()
    ipmask = 0xFFFF if bits == 16 else 0xFFFFFFFF

    def ip_of(offset: int, reg: Region) -> int:
        v = BLOCK_LINEAR + offset - reg.base
        if not 0 <= v <= ipmask:
            raise ValueError("block offset out of the code segment's reach")
        return v

    def pack(value: int, width: int) -> bytes:
        return (value & ((1 << 8 * width) - 1)).to_bytes(width, "little")

    code = bytearray()
    for i, it in enumerate(items):
        pos = starts[i]
        marks, p2 = [], pos
        for p in it.parts:
            if isinstance(p, tuple) and p[0] == "mark":
                marks.append(p2)
            p2 += len(p) if isinstance(p, (bytes, bytearray)) else PLACEHOLDER_SIZE[p[0]]
        for p in it.parts:
            if isinstance(p, (bytes, bytearray)):
                code += p
                pos += len(p)
                continue
            kind = p[0]
            width = PLACEHOLDER_SIZE[kind]
            if kind == "mark":
                continue
            if kind in ("rel8", "rel16", "rel32", "ip16", "ip32"):
                tgt = min(i + 1 + p[1], region_end[i])
                end = pos + width
                if kind == "rel8":
                    while tgt > i + 1 and starts[tgt] - end > 127:
                        tgt -= 1
                    code += struct.pack("<b", starts[tgt] - end)
                elif kind.startswith("rel"):
                    code += pack(starts[tgt] - end, width)
                else:
                    code += pack(ip_of(starts[tgt], regs[i]), width)
            elif kind in ("label16", "label32"):
                code += pack(ip_of(marks[p[1]], regs[i]), width)
            elif kind == "lin32":
                code += pack(BLOCK_LINEAR + marks[p[1]], 4)
            elif kind in ("far_ip16", "far_ip32"):
                code += pack(ip_of(starts[i + 1], regs[i + 1]), width)
            elif kind == "far_cs16":
                how = it.far_delta
                bad = isinstance(how, tuple) and how[0] == "bad"
                code += pack(how[1] if bad else regs[i + 1].sel, 2)
            elif kind in ("smc16", "smc32", "smclin32"):
                target = smc_target(items, starts, i + 1 + p[1], marks, pos)
                if kind == "smclin32":
                    code += pack(BLOCK_LINEAR + target, 4)
                else:
                    code += pack(ip_of(target, regs[i]), width)
            else:
                raise ValueError(f"unknown placeholder {p!r}")
            pos += width
        assert len(code) == starts[i + 1], (it, len(code), starts[i + 1])
    code.append(HLT)
    if len(code) > max_block:
        raise ValueError("block too large")
    return PmLayout(bytes(code), start, ip_of(0, start), starts, regs, sum(it.insns for it in items) + 1)


def next_region_pm(env: dict):
    """Far transfers in protected mode: item.far_delta is ("same", k) (the
    k-th alias at the current CPL), ("outer", k) (a ring-3 alias: retf/iret to
    an outer level, from CPL 0 only) or ("bad", selector) (the transfer
    faults: the region does not change)."""
    regs = regions(env)

    def nxt(cur: Region, item, next_linear: int, total: int) -> Region:
        how = item.far_delta
        if not isinstance(how, tuple):
            return cur
        if how[0] == "bad":
            return cur
        want = cur.cpl if how[0] == "same" else 3
        cands = [r for r in regs if r.cpl == want]
        if not cands:
            return cur
        return cands[how[1] % len(cands)]
    return nxt


def next_region_v86(cur: Region, item, next_linear: int, total: int) -> Region:
    """V8086 far transfers: the new CS is the old one plus item.far_delta,
    clamped so that the rest of the block stays within 64 KiB (as real mode)."""
    delta = item.far_delta if isinstance(item.far_delta, int) else 0
    lo = max(0, (BLOCK_LINEAR + total - 0xFFFF + 15) >> 4)
    hi = next_linear >> 4
    value = min(max(cur.sel + delta, lo), hi) & 0xFFFF
    return Region(value, value << 4, 3)
