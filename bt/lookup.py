"""The in-TC lookup for `ret` and indirect near branches (real mode).

Translated code puts the 16-bit guest target IP in EAX (the guest's EAX saved
in monitor data first) and jumps through `LOOKUP[ip]`.  The entry is either
the shared miss callout or a landing pad for one (CS, IP):

    mov  cs:[SCRATCH_ECX], ecx
    movzx ecx, word cs:[VSEG.cs]
    lea  ecx, [ecx - expected_cs]       ; flag-free compare (lea + jecxz)
    jecxz hit
    mov  ecx, cs:[SCRATCH_ECX]
    jmp  miss                           ; another CS: the miss callout
  hit:
    mov  ecx, cs:[SCRATCH_ECX]
    mov  eax, cs:[SCRATCH_EAX]
    jmp  unit                           ; stays in the TC

No guest flag is touched on either path.  On a miss the monitor translates the
target, makes (or reuses) its pad and points the entry at it.
"""

from __future__ import annotations

import struct

from bt import abi


def _abs32(addr: int) -> bytes:
    return struct.pack("<I", addr & 0xFFFFFFFF)


def lookup_jump(layout=abi.DEFAULT) -> bytes:
    """movzx eax, ax ; jmp dword cs:[LOOKUP + eax*4]"""
    return b"\x0f\xb7\xc0" + b"\x2e\xff\x24\x85" + _abs32(layout.LOOKUP_LINEAR)


def save_eax(layout=abi.DEFAULT) -> bytes:
    return b"\x2e\xa3" + _abs32(layout.SCRATCH_EAX)          # mov cs:[SCRATCH_EAX], eax


def pad_code(pad_addr: int, expected_cs: int, unit_addr: int, miss_addr: int, layout=abi.DEFAULT) -> bytes:
    """A landing pad (module docstring); its hits are counted by the machine's
    TC block counter at PAD_HIT_OFFSET."""
    save_ecx = b"\x2e\x89\x0d" + _abs32(layout.SCRATCH_ECX)
    load_cs = b"\x2e\x0f\xb7\x0d" + _abs32(layout.VSEG + 2)
    compare = b"\x8d\x89" + struct.pack("<i", -expected_cs)
    restore_ecx = b"\x2e\x8b\x0d" + _abs32(layout.SCRATCH_ECX)
    restore_eax = b"\x2e\xa1" + _abs32(layout.SCRATCH_EAX)
    head = save_ecx + load_cs + compare
    miss_path_len = len(restore_ecx) + 5
    code = bytearray(head + b"\xe3" + bytes([miss_path_len]) + restore_ecx)
    code += b"\xe9" + struct.pack("<i", miss_addr - (pad_addr + len(code) + 5))
    code += restore_ecx + restore_eax
    code += b"\xe9" + struct.pack("<i", unit_addr - (pad_addr + len(code) + 5))
    return bytes(code)


PAD_SIZE = len(pad_code(0, 0, 0, 0))
# Offset of a pad's hit path (after its last check): the block the machine's
# TC block counter counts as a lookup hit (no counter code in the pads).
PAD_HIT_OFFSET = PAD_SIZE - 5 - 6 - 7


# -- protected mode: 32-bit targets ---------------------------------------------------
#
# Translated code saves the guest's EAX in SCRATCH_EAX, puts the 32-bit target
# EIP in EAX and jumps to the generation's dispatch stub:
#
#     mov  cs:[SCRATCH_ECX], ecx
#     movzx ecx, ax
#     jmp  dword cs:[LOOKUP + ecx*4]      ; indexed by EIP bits 15:0
#
# A protected-mode pad checks the whole EIP and the CS selector, flag-free:
#
#     lea  ecx, [eax - expected_eip] ; jecxz +2+5 ; jmp miss
#     movzx ecx, word cs:[VSEG.cs] ; lea ecx, [ecx - expected_cs] ; jecxz +5 ; jmp miss
#     [count] ; mov ecx, cs:[SCRATCH_ECX] ; mov eax, cs:[SCRATCH_EAX] ; jmp unit
#
# and the miss stub restores ECX before the PM_LOOKUP_MISS callout.  The
# table serves one mode at a time: the monitor resets it when CR0.PE changes.

def pm_dispatch_code(layout=abi.DEFAULT) -> bytes:
    return (b"\x2e\x89\x0d" + _abs32(layout.SCRATCH_ECX) + b"\x0f\xb7\xc8"
            + b"\x2e\xff\x24\x8d" + _abs32(layout.LOOKUP_LINEAR))


def pm_miss_code(layout=abi.DEFAULT) -> bytes:
    """Restore ECX (the callout follows right after)."""
    return b"\x2e\x8b\x0d" + _abs32(layout.SCRATCH_ECX)


def pm_pad_code(pad_addr: int, expected_cs: int, expected_eip: int, unit_addr: int, miss_addr: int,
                layout=abi.DEFAULT) -> bytes:
    code = bytearray()

    def jmp_to(target: int) -> bytes:
        return b"\xe9" + struct.pack("<i", target - (pad_addr + len(code) + 5))

    code += b"\x8d\x88" + struct.pack("<I", (-expected_eip) & 0xFFFFFFFF)     # lea ecx, [eax - eip]
    code += b"\xe3\x05"                                                         # jecxz +5
    code += jmp_to(miss_addr)
    code += b"\x2e\x0f\xb7\x0d" + _abs32(layout.VSEG + 2)                      # movzx ecx, cs:[VSEG.cs]
    code += b"\x8d\x89" + struct.pack("<i", -expected_cs)                        # lea ecx, [ecx - cs]
    code += b"\xe3\x05"
    code += jmp_to(miss_addr)
    code += b"\x2e\x8b\x0d" + _abs32(layout.SCRATCH_ECX) + b"\x2e\xa1" + _abs32(layout.SCRATCH_EAX)
    code += jmp_to(unit_addr)
    return bytes(code)


PM_PAD_SIZE = len(pm_pad_code(0, 0, 0, 0, 0))
PM_PAD_HIT_OFFSET = PM_PAD_SIZE - 5 - 6 - 7


class IndirectLookup:
    """The LOOKUP table and the landing pads (one TC generation at a time)."""

    def __init__(self, memory_view, layout=abi.DEFAULT):
        self.view = memory_view
        self.layout = layout
        self.base = layout.offset(layout.LOOKUP_LINEAR)   # the frames never move
        self.miss_addr = 0
        self.pads: dict[tuple[int, int], tuple[int, int]] = {}     # (cs, ip) -> (pad address, unit tc_start)
        self.by_unit: dict[int, list[tuple[int, int]]] = {}        # unit tc_start -> [(cs, ip)]
        self.misses = 0

    def reset(self, miss_addr: int) -> None:
        """A new TC generation (or CR0.PE changed): every entry points at the miss path."""
        self.miss_addr = miss_addr
        self.view[self.base:self.base + 4 * abi.LOOKUP_ENTRIES] = _abs32(miss_addr) * abi.LOOKUP_ENTRIES
        self.pads.clear()
        self.by_unit.clear()

    def entry(self, ip: int) -> int:
        return struct.unpack_from("<I", self.view, self.base + 4 * (ip & 0xFFFF))[0]

    def set_entry(self, ip: int, addr: int) -> None:
        struct.pack_into("<I", self.view, self.base + 4 * (ip & 0xFFFF), addr)

    def install(self, tc, cs: int, ip: int, unit) -> int:
        """Point LOOKUP[ip] at the pad for (cs, ip), emitting it if needed."""
        known = self.pads.get((cs, ip))
        if known is None or known[1] != unit.tc_start:
            if tc.room() < PAD_SIZE:
                return 0
            pad = tc.top
            code = pad_code(pad, cs, unit.tc_start, self.miss_addr, self.layout)
            tc.write_fresh(pad, code)
            tc.top += len(code)
            self.pads[(cs, ip)] = (pad, unit.tc_start)
            self.by_unit.setdefault(unit.tc_start, []).append((cs, ip))
        else:
            pad = known[0]
        self.set_entry(ip, pad)
        return pad

    def install_pm(self, tc, cs: int, eip: int, unit, miss_addr: int) -> int:
        """Point LOOKUP[eip & 0xFFFF] at the protected-mode pad for (cs, eip)."""
        key = ("pm", cs, eip)
        known = self.pads.get(key)
        if known is None or known[1] != unit.tc_start:
            if tc.room() < PM_PAD_SIZE:
                return 0
            pad = tc.top
            code = pm_pad_code(pad, cs, eip, unit.tc_start, miss_addr, self.layout)
            tc.write_fresh(pad, code)
            tc.top += len(code)
            self.pads[key] = (pad, unit.tc_start)
            self.by_unit.setdefault(unit.tc_start, []).append(key)
        else:
            pad = known[0]
        self.set_entry(eip, pad)
        return pad

    def drop_unit(self, unit_start: int) -> None:
        """Forget the pads that lead into an invalidated unit."""
        for key in self.by_unit.pop(unit_start, []):
            pad, _ = self.pads.pop(key, (None, None))
            ip = key[-1]
            if pad is not None and self.entry(ip) == pad:
                self.set_entry(ip, self.miss_addr)
