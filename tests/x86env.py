"""Small bare-metal worlds on a Unicorn engine, for the contract tests.

Memory map of `World` (1 MiB at physical 0, flat):
  0x0500  GDT (entries below)          0x60000 TSS (104 bytes + I/O bitmap)
  0x1000  scratch data                 0x7000  ring-0 helper stubs
  0x8000  ring-0 stack top             0x9000  ring-3 stack top
  0x10000 test code
"""

from __future__ import annotations

import functools
import os
import shutil
import struct
import subprocess
import tempfile

import pytest
from unicorn import UC_ARCH_X86, UC_HOOK_INTR, UC_MODE_32, Uc
from unicorn.x86_const import (
    UC_X86_REG_CR0, UC_X86_REG_CS, UC_X86_REG_DS, UC_X86_REG_EFLAGS, UC_X86_REG_EIP,
    UC_X86_REG_ES, UC_X86_REG_ESP, UC_X86_REG_GDTR, UC_X86_REG_SS, UC_X86_REG_TR,
)

# Selectors of the World GDT.
CODE0, DATA0, CODE3, DATA3, TSS, CODE16, SMALL, GATE3 = 0x08, 0x10, 0x1B, 0x23, 0x28, 0x30, 0x38, 0x43
GDT_BASE, TSS_BASE, SCRATCH, STUBS, STACK0, STACK3, CODE = 0x500, 0x60000, 0x1000, 0x7000, 0x8000, 0x9000, 0x10000


def have_nasm() -> bool:
    return shutil.which("nasm") is not None


@functools.lru_cache(maxsize=None)
def assemble(source: str, bits: int = 32, org: int = 0) -> bytes:
    """Assemble with nasm (flat binary)."""
    if not have_nasm():
        pytest.skip("nasm is not installed (apt-get install nasm)")
    with tempfile.TemporaryDirectory() as tmp:
        src, out = os.path.join(tmp, "t.asm"), os.path.join(tmp, "t.bin")
        with open(src, "w") as f:
            f.write(f"bits {bits}\norg {org:#x}\n{source}\n")
        res = subprocess.run(["nasm", "-f", "bin", "-o", out, src], capture_output=True, text=True)
        if res.returncode:
            raise AssertionError(f"nasm failed:\n{res.stderr}\n{source}")
        with open(out, "rb") as f:
            return f.read()


def descriptor(base: int, limit: int, access: int, flags: int) -> bytes:
    """A segment descriptor; flags nibble = G D/B L AVL."""
    return struct.pack(
        "<HHBBBB", limit & 0xFFFF, base & 0xFFFF, (base >> 16) & 0xFF, access,
        ((limit >> 16) & 0xF) | (flags << 4), (base >> 24) & 0xFF,
    )


def gate(selector: int, offset: int, access: int) -> bytes:
    return struct.pack("<HHBBH", offset & 0xFFFF, selector, 0, access, offset >> 16)


class World:
    """A flat protected-mode machine with ring-0 and ring-3 segments and a TSS."""

    def __init__(self, mode=UC_MODE_32):
        self.uc = Uc(UC_ARCH_X86, mode)
        self.uc.mem_map(0, 0x100000)
        gdt = b"".join([
            bytes(8),
            descriptor(0, 0xFFFFF, 0x9A, 0xC),        # 0x08 code32 DPL0
            descriptor(0, 0xFFFFF, 0x92, 0xC),        # 0x10 data32 DPL0
            descriptor(0, 0xFFFFF, 0xFA, 0xC),        # 0x18 code32 DPL3
            descriptor(0, 0xFFFFF, 0xF2, 0xC),        # 0x20 data32 DPL3
            descriptor(TSS_BASE, 104 + 8192, 0x89, 0),  # 0x28 32-bit TSS
            descriptor(0, 0xFFFF, 0x9A, 0x0),         # 0x30 code16 DPL0
            descriptor(SCRATCH, 0xF, 0x92, 0x4),      # 0x38 16-byte data segment
            gate(CODE0, STUBS + 0x100, 0xEC),         # 0x40 call gate DPL3 -> 0x08
        ])
        self.gdt_limit = len(gdt) - 1
        self.uc.mem_write(GDT_BASE, gdt)
        tss = bytearray(104)
        struct.pack_into("<II", tss, 4, STACK0, DATA0)   # esp0, ss0
        struct.pack_into("<H", tss, 102, 104)             # I/O map base: right after
        self.uc.mem_write(TSS_BASE, bytes(tss) + b"\xff" * 8193)  # every port denied
        self.uc.reg_write(UC_X86_REG_GDTR, (0, GDT_BASE, self.gdt_limit, 0))
        self.uc.reg_write(UC_X86_REG_CR0, 0x11)
        for reg, sel in ((UC_X86_REG_CS, CODE0), (UC_X86_REG_SS, DATA0), (UC_X86_REG_DS, DATA0), (UC_X86_REG_ES, DATA0)):
            self.uc.reg_write(reg, sel)
        self.uc.reg_write(UC_X86_REG_TR, (TSS, TSS_BASE, 104 + 8192, 0x89))
        self.uc.reg_write(UC_X86_REG_ESP, STACK0)

    def load(self, code: bytes, at: int = CODE) -> int:
        self.uc.mem_write(at, code)
        return at

    def iret_to(self, frame: list[int], target: int, eip: int | None = None, count: int = 0) -> None:
        """At ring 0, iret through `frame` (pushed in order), stop at linear `target`.

        emu_start's `until` is a linear address while EIP is segment-relative:
        they differ in V86, where `eip` gives the expected EIP.
        """
        stub = assemble("\n".join(f"push dword {v:#x}" for v in frame) + "\niretd")
        self.uc.mem_write(STUBS, stub)
        self.uc.emu_start(STUBS, target, count=count)
        assert self.uc.reg_read(UC_X86_REG_EIP) == (target if eip is None else eip)

    def enter_ring3(self, eip: int, eflags: int = 0x202, count: int = 0) -> None:
        self.iret_to([DATA3, STACK3, eflags, CODE3, eip], eip, count=count)

    def enter_v86(self, cs: int, ip: int, ss: int = 0, sp: int = 0xFFF0, iopl: int = 3, iflag: bool = True) -> None:
        eflags = 0x20002 | (iopl << 12) | (0x200 if iflag else 0)
        frame = [0, 0, 0, 0, ss, sp, eflags, cs, ip]  # gs fs ds es ss esp eflags cs eip
        self.iret_to(frame, cs * 16 + ip, eip=ip)

    def record_interrupts(self, stop: bool = True) -> list:
        seen: list = []

        def on_intr(uc, intno, _):
            seen.append((intno, uc.reg_read(UC_X86_REG_EIP)))
            if stop:
                uc.emu_stop()

        self.uc.hook_add(UC_HOOK_INTR, on_intr)
        return seen

    def cpl(self) -> int:
        return self.uc.reg_read(UC_X86_REG_CS) & 3

    def eflags(self) -> int:
        return self.uc.reg_read(UC_X86_REG_EFLAGS)


__all__ = [name for name in dir() if not name.startswith("_")]
