"""What one fuzz example is: a laid-out program, an initial state, a memory image.

The layout is fixed so that both paths see the same guest (docs/fuzzing.md):

* the generated block lives at linear ``BLOCK_LINEAR``; its first instruction
  is at ``cs:ip`` with ``cs`` drawn per example (so every IP in the block
  depends on the CS), and it ends with a terminating ``hlt``;
* the IVT (at 0, or wherever the guest moves IDTR) points vector *n* at
  ``STUB_SEG:STUB_OFF + n``, a ``hlt``: an exception or ``int n`` delivered
  through the IVT ends the run there, the frame (IP, CS, FLAGS) on the stack;
* the rest of the 2 MiB of guest RAM is a pseudo-random image made from a
  seed (a 64 KiB random pattern repeated), so memory contents are arbitrary
  but cheap to build twice.

A *program* is a tuple of ``Item``s: fixed bytes plus placeholders (branch
offsets, absolute IPs, far targets, self-modifying-store addresses) that the
layout resolves once every item's size is known.  Branch targets are always
item starts inside the same CS *region* (regions are separated by far
transfers, each of which lands on the next item with a new CS), so control
flow stays inside the block.
"""

from __future__ import annotations

import json
import random
import struct
from dataclasses import dataclass

RAM_SIZE = 2 << 20                  # guest RAM on both paths (Machine(memory_mb=2))
BLOCK_LINEAR = 0x30000              # where the generated block starts
MAX_BLOCK = 0x800                   # generous bound on a block's size
STUB_SEG = 0x9F00                   # IVT vector n -> STUB_SEG:STUB_OFF+n (a hlt)
STUB_OFF = 0x0100
STUB_LINEAR = STUB_SEG * 16 + STUB_OFF
STUB_LEN = 0x110                    # 256 hlts and a little padding (hlt's next IP)
HLT = 0xF4
RESET_CR0 = 0x60000010              # CD NW ET: the architectural reset value
REGS32 = ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi")
SREGS = ("es", "cs", "ss", "ds", "fs", "gs")

# EFLAGS bits
CF, PF, AF, ZF, SF, TF, IF, DF, OF = 0x1, 0x4, 0x10, 0x40, 0x80, 0x100, 0x200, 0x400, 0x800
IOPL, NT, RF, VM, AC = 0x3000, 0x4000, 0x10000, 0x20000, 0x40000
ARITH_FLAGS = CF | PF | AF | ZF | SF | OF


# --------------------------------------------------------------------------- items

@dataclass(frozen=True)
class Item:
    """One generated unit of code: usually one instruction, sometimes a short
    set-up sequence with it (``mov cx, n`` before ``rep movsb``, the target
    store before ``jmp cs:[X]``).

    ``parts``: ``bytes`` or placeholders:

    * ``("rel8", skip)`` / ``("rel16", skip)``: offset from the end of this
      piece to the start of item ``i + 1 + skip`` (clamped to the region end
      and, for rel8, to the reach of a byte);
    * ``("ip16", skip)``: that target's IP in the current CS;
    * ``("label16", n)``: IP (current CS) of the n-th ``("mark",)`` in this item;
    * ``("mark",)``: a zero-size label;
    * ``("far_ip16",)`` / ``("far_cs16",)``: the next item's IP / CS once the
      far transfer (this item, ``far_delta``) changes CS;
    * ``("smc16", skip)``: IP (current CS) of the patchable immediate byte of
      the first later item that has one, at or after ``skip`` items ahead
      (else a mark in this item).

    ``insns``: how many instructions the item holds (for the campaign figures);
    ``imm_at``: offset of a byte that may be patched by a self-modifying store
    (an immediate whose value does not change the instruction's length).
    """

    cls: str
    name: str
    parts: tuple
    insns: int = 1
    imm_at: int | None = None
    far_delta: int | None = None      # set on far transfers: new CS = old CS + delta (clamped)

    def size(self) -> int:
        n = 0
        for p in self.parts:
            if isinstance(p, (bytes, bytearray)):
                n += len(p)
            else:
                n += {"rel8": 1, "rel16": 2, "ip16": 2, "label16": 2, "mark": 0,
                      "far_ip16": 2, "far_cs16": 2, "smc16": 2}[p[0]]
        return n


@dataclass
class Layout:
    code: bytes                       # the block, terminator included
    cs: int                           # CS of the first instruction
    ip: int                           # its IP
    starts: list                      # offset of each item in code (+ the terminator)
    region_cs: list                   # CS each item runs under
    insns: int                        # instructions in the block, terminator included


def smc_target(items, starts, first: int, marks, pos: int) -> int:
    """Where a self-modifying store writes: the immediate of the first item
    from `first` on that has one, else the first label (or `pos`)."""
    for j in range(first, len(items)):
        if items[j].imm_at is not None:
            return starts[j] + items[j].imm_at
    return marks[0] if marks else pos


def layout(items, cs: int) -> Layout:
    """Resolve placeholders: the block at BLOCK_LINEAR, first item at cs:ip."""
    items = list(items)
    n = len(items)
    sizes = [it.size() for it in items]
    starts = [0]
    for s in sizes:
        starts.append(starts[-1] + s)
    total = starts[-1] + 1
    # CS regions: a far transfer at item i makes items i+1.. run under a new CS.
    region_cs, region_end = [], []
    cur = cs & 0xFFFF
    for i, it in enumerate(items):
        region_cs.append(cur)
        if it.far_delta is not None:
            nxt_lin = BLOCK_LINEAR + starts[i + 1]
            # keep the next region's IPs inside 0..0xFFFF for the rest of the block
            lo = max(0, (BLOCK_LINEAR + total - 0xFFFF + 15) >> 4)
            hi = nxt_lin >> 4
            cur = min(max(cur + it.far_delta, lo), hi) & 0xFFFF
    region_cs.append(cur)                                  # the terminator
    # region_end[i]: the last item index a branch from item i may target
    last = n
    for i in range(n - 1, -1, -1):
        if items[i].far_delta is not None:
            last = i
        region_end.append(last)
    region_end.reverse()

    def ip_of(offset: int, cs_: int) -> int:
        v = BLOCK_LINEAR + offset - (cs_ << 4)
        if not 0 <= v <= 0xFFFF:
            raise ValueError("block offset out of the CS reach")
        return v

    code = bytearray()
    for i, it in enumerate(items):
        pos = starts[i]
        marks = []
        p2 = pos
        for p in it.parts:
            if isinstance(p, tuple) and p[0] == "mark":
                marks.append(p2)
            p2 += len(p) if isinstance(p, (bytes, bytearray)) else Item("", "", (p,)).size()
        for p in it.parts:
            if isinstance(p, (bytes, bytearray)):
                code += p
                pos += len(p)
                continue
            kind = p[0]
            if kind == "mark":
                continue
            if kind in ("rel8", "rel16", "ip16"):
                tgt = min(i + 1 + p[1], region_end[i])
                width = 1 if kind == "rel8" else 2
                end = pos + width
                if kind == "rel8":
                    while tgt > i + 1 and starts[tgt] - end > 127:
                        tgt -= 1
                    code += struct.pack("<b", starts[tgt] - end)
                elif kind == "rel16":
                    code += struct.pack("<h", starts[tgt] - end)
                else:
                    code += struct.pack("<H", ip_of(starts[tgt], region_cs[i]))
            elif kind == "label16":
                code += struct.pack("<H", ip_of(marks[p[1]], region_cs[i]))
            elif kind in ("far_ip16", "far_cs16"):
                ncs = region_cs[i + 1]
                code += struct.pack("<H", ip_of(starts[i + 1], ncs) if kind == "far_ip16" else ncs)
            elif kind == "smc16":
                target = smc_target(items, starts, i + 1 + p[1], marks, pos)
                code += struct.pack("<H", ip_of(target, region_cs[i]))
            else:
                raise ValueError(f"unknown placeholder {p!r}")
            pos += 1 if kind == "rel8" else 2
        assert len(code) == starts[i + 1], (it, len(code), starts[i + 1])
    code.append(HLT)
    ip0 = ip_of(0, cs)
    if len(code) > MAX_BLOCK:
        raise ValueError("block too large")
    return Layout(bytes(code), cs & 0xFFFF, ip0, starts, region_cs,
                  sum(it.insns for it in items) + 1)


# --------------------------------------------------------------------------- cases

@dataclass
class Case:
    """Everything one run needs: a real-mode program and its initial state."""

    code: bytes
    cs: int
    ip: int
    regs: dict                                   # eax..edi (32-bit), es ss ds fs gs (16-bit)
    eflags: int
    mem_seed: int = 0
    cr0: int = RESET_CR0
    classes: tuple = ()                          # classes of the generated items (statistics)
    names: tuple = ()                            # their fine-grained names
    insns: int = 0                               # instructions generated
    mode: str = "real"
    env: dict | None = None                      # protected modes / V8086: the guest's tables (pmenv.py)

    @property
    def linear(self) -> int:
        if self.env is not None:
            return (self.env["cs_base"] + self.ip) & 0xFFFFFFFF
        return ((self.cs << 4) + self.ip) & 0xFFFFFFFF

    def memory_image(self) -> bytearray:
        """The initial 2 MiB of guest RAM (IVT or system area, stubs and block included)."""
        key = (self.mem_seed, self.code, self.linear, id(self.env))
        cached = self.__dict__.get("_image")
        if cached is not None and cached[0] == key:
            return bytearray(cached[1])
        mem = self._build_image()
        self.__dict__["_image"] = (key, bytes(mem))
        return mem

    def _build_image(self) -> bytearray:
        rnd = random.Random(self.mem_seed)
        pattern = rnd.randbytes(0x10000)
        mem = bytearray(pattern * (RAM_SIZE // 0x10000))
        if self.env is None:
            ivt = struct.pack("<" + "HH" * 256, *[v for n in range(256) for v in (STUB_OFF + n, STUB_SEG)])
            mem[0:0x400] = ivt
            mem[STUB_LINEAR:STUB_LINEAR + STUB_LEN] = bytes([HLT]) * STUB_LEN
        else:
            from monitor.fuzz.pmenv import env_image
            env_image(self.env, mem)
        mem[self.linear:self.linear + len(self.code)] = self.code
        # hybrid86 translates the instruction after a hlt (its resume point)
        # before stopping; a second hlt keeps that translation trivial.
        mem[self.linear + len(self.code)] = HLT
        return mem

    def in_block(self, linear: int) -> bool:
        return self.linear <= linear < self.linear + len(self.code)

    def in_stubs(self, linear: int) -> bool:
        if self.env is not None:
            from monitor.fuzz.pmenv import HANDLERS, HANDLERS_LEN
            return HANDLERS <= linear < HANDLERS + HANDLERS_LEN
        return STUB_LINEAR <= linear < STUB_LINEAR + STUB_LEN

    def to_dict(self) -> dict:
        d = {"mode": self.mode, "code": self.code.hex(), "cs": self.cs, "ip": self.ip,
             "regs": dict(self.regs), "eflags": self.eflags, "mem_seed": self.mem_seed,
             "cr0": self.cr0, "classes": list(self.classes), "names": list(self.names),
             "insns": self.insns}
        if self.env is not None:
            d["env"] = self.env
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Case":
        env = d.get("env")
        if env is not None:
            env = dict(env)
            env["aliases"] = [tuple(a) for a in env.get("aliases", ())]
        return cls(code=bytes.fromhex(d["code"]), cs=d["cs"], ip=d["ip"], regs=dict(d["regs"]),
                   eflags=d["eflags"], mem_seed=d.get("mem_seed", 0), cr0=d.get("cr0", RESET_CR0),
                   classes=tuple(d.get("classes", ())), names=tuple(d.get("names", ())),
                   insns=d.get("insns", 0), mode=d.get("mode", "real"), env=env)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


def make_case(items, cs: int, regs: dict, eflags: int, mem_seed: int = 0) -> Case:
    lay = layout(items, cs)
    case = Case(code=lay.code, cs=lay.cs, ip=lay.ip, regs=dict(regs), eflags=eflags,
                mem_seed=mem_seed, classes=tuple(it.cls for it in items),
                names=tuple(it.name for it in items), insns=lay.insns)
    case.__dict__["_rebuild"] = (tuple(items), lambda its, r, fl, sd: make_case(its, cs, r, fl, sd))
    return case


def case_from_bytes(code: bytes, cs: int = 0x2F00, regs: dict | None = None, eflags: int = 0x2,
                    mem_seed: int = 0) -> Case:
    """A hand-written case (tests, reproducers): raw bytes, a hlt is appended."""
    code = bytes(code) + bytes([HLT])
    base = {name: 0 for name in REGS32}
    base.update({"esp": 0xFFF0, "es": 0x1000, "ss": 0x5000, "ds": 0x1000, "fs": 0x1000, "gs": 0x1000})
    base.update(regs or {})
    ip = BLOCK_LINEAR - (cs << 4)
    return Case(code=code, cs=cs, ip=ip, regs=base, eflags=eflags | 0x2, mem_seed=mem_seed)
