"""A tiny 16-bit assembler for the ROM: the few instruction forms it needs.

Each method emits one instruction's bytes (Intel SDM vol. 2 encodings) and
records a listing line, so ``Rom.listing()`` shows what every stub is and
the tests can compare it with Capstone's disassembly.  Labels resolve
forward short and near jumps when the image is finished.

The BIOS callout is ``0F 0B nn``: ``ud2`` (guaranteed #UD on every x86)
followed by the service byte; the translator honours it only inside the
ROM (0xF0000-0xFFFFF).
"""

from __future__ import annotations

import struct

CALLOUT_OPCODE = b"\x0f\x0b"


class AsmError(Exception):
    """The ROM layout is wrong (overlapping blocks, a jump out of range): a build bug."""


class Asm16:
    """Emits code and data into a fixed-size image at chosen offsets."""

    def __init__(self, size: int, fill: int = 0xFF) -> None:
        self.image = bytearray([fill]) * size
        self.pos = 0
        self.labels: dict[str, int] = {}
        self._fixups: list[tuple[int, str, int, str]] = []  # (at, label, size, kind)
        self._used: list[tuple[int, int, str]] = []
        self._block_start = 0
        self._block_name = ""
        #: (offset, length, text) of every instruction and data item.
        self.lines: list[tuple[int, int, str]] = []

    # -- placement -----------------------------------------------------------------------

    def at(self, offset: int, name: str) -> int:
        """Start a block called ``name`` at ``offset``; returns the offset."""
        self.end()
        self.pos = self._block_start = offset
        self._block_name = name
        self.labels[name] = offset
        return offset

    def end(self) -> None:
        if self._block_name and self.pos > self._block_start:
            start, end = self._block_start, self.pos
            for s, e, other in self._used:
                if start < e and s < end:
                    raise AsmError(f"ROM block {self._block_name} {start:#x}-{end:#x} overlaps {other} {s:#x}-{e:#x}")
            self._used.append((start, end, self._block_name))
        self._block_name = ""

    def label(self, name: str) -> int:
        if name in self.labels:
            raise AsmError(f"label {name} defined twice")
        self.labels[name] = self.pos
        return self.pos

    def emit(self, data: bytes, text: str) -> int:
        at = self.pos
        if at + len(data) > len(self.image):
            raise AsmError(f"{text} at {at:#x} runs past the end of the image")
        self.image[at:at + len(data)] = data
        self.lines.append((at, len(data), text))
        self.pos += len(data)
        return at

    def finish(self) -> bytes:
        self.end()
        for at, label, size, kind in self._fixups:
            if label not in self.labels:
                raise AsmError(f"undefined label {label}")
            target = self.labels[label]
            if kind == "abs16":
                struct.pack_into("<H", self.image, at, target)
                continue
            rel = target - (at + size)
            if size == 1:
                if not -128 <= rel <= 127:
                    raise AsmError(f"short jump to {label} out of range ({rel})")
                struct.pack_into("<b", self.image, at, rel)
            else:
                struct.pack_into("<H", self.image, at, rel & 0xFFFF)
        return bytes(self.image)

    # -- data -------------------------------------------------------------------------------

    def db(self, data: bytes, text: str = "data") -> int:
        return self.emit(bytes(data), f"db {text}")

    def dw(self, *words: int, text: str = "") -> int:
        return self.emit(struct.pack(f"<{len(words)}H", *words), f"dw {text or ', '.join(hex(w) for w in words)}")

    def dw_label(self, label: str) -> int:
        """A word holding the offset of ``label`` (resolved at finish)."""
        at = self.emit(b"\0\0", f"dw {label}")
        self._fixups.append((at, label, 2, "abs16"))
        return at

    # -- instructions ------------------------------------------------------------------------

    def callout(self, service: int, text: str = "") -> int:
        note = f"  ; {text}" if text else ""
        return self.emit(CALLOUT_OPCODE + bytes((service,)), f"callout {service:#04x}{note}")

    def iret(self) -> int:
        return self.emit(b"\xcf", "iret")

    def retf(self, n: int = 0) -> int:
        if n:
            return self.emit(b"\xca" + struct.pack("<H", n), f"retf {n}")
        return self.emit(b"\xcb", "retf")

    def hlt(self) -> int:
        return self.emit(b"\xf4", "hlt")

    def sti(self) -> int:
        return self.emit(b"\xfb", "sti")

    def cli(self) -> int:
        return self.emit(b"\xfa", "cli")

    def cld(self) -> int:
        return self.emit(b"\xfc", "cld")

    def stc(self) -> int:
        return self.emit(b"\xf9", "stc")

    _REG16 = {"ax": 0, "cx": 1, "dx": 2, "bx": 3, "sp": 4, "bp": 5, "si": 6, "di": 7}
    _REG8 = {"al": 0, "cl": 1, "dl": 2, "bl": 3, "ah": 4, "ch": 5, "dh": 6, "bh": 7}
    _SREG_PUSH = {"es": 0x06, "cs": 0x0E, "ss": 0x16, "ds": 0x1E}

    def push(self, reg: str) -> int:
        if reg in self._SREG_PUSH:
            return self.emit(bytes((self._SREG_PUSH[reg],)), f"push {reg}")
        return self.emit(bytes((0x50 + self._REG16[reg],)), f"push {reg}")

    def pop(self, reg: str) -> int:
        if reg in self._SREG_PUSH:
            return self.emit(bytes((self._SREG_PUSH[reg] + 1,)), f"pop {reg}")
        return self.emit(bytes((0x58 + self._REG16[reg],)), f"pop {reg}")

    def mov_r8_imm(self, reg: str, value: int) -> int:
        return self.emit(bytes((0xB0 + self._REG8[reg], value & 0xFF)), f"mov {reg}, {value:#x}")

    def mov_r16_imm(self, reg: str, value: int) -> int:
        return self.emit(bytes((0xB8 + self._REG16[reg],)) + struct.pack("<H", value), f"mov {reg}, {value:#x}")

    def mov_ds_ax(self) -> int:
        return self.emit(b"\x8e\xd8", "mov ds, ax")

    def mov_ax_moffs(self, offset: int) -> int:
        return self.emit(b"\xa1" + struct.pack("<H", offset), f"mov ax, word ptr [{offset:#x}]")

    def xor_r16(self, reg: str) -> int:
        r = self._REG16[reg]
        return self.emit(bytes((0x31, 0xC0 | (r << 3) | r)), f"xor {reg}, {reg}")

    def test_al_imm(self, value: int) -> int:
        return self.emit(bytes((0xA8, value)), f"test al, {value:#x}")

    def in_al(self, port: int) -> int:
        return self.emit(bytes((0xE4, port)), f"in al, {port:#x}")

    def out_al(self, port: int) -> int:
        return self.emit(bytes((0xE6, port)), f"out {port:#x}, al")

    def int_(self, vector: int) -> int:
        return self.emit(bytes((0xCD, vector)), f"int {vector:#x}")

    def jmp_far(self, seg: int, off: int) -> int:
        return self.emit(b"\xea" + struct.pack("<HH", off, seg), f"ljmp {seg:#x}:{off:#x}")

    _JCC = {"jmp": 0xEB, "jc": 0x72, "jnc": 0x73, "jz": 0x74, "jnz": 0x75}

    def jshort(self, cond: str, label: str) -> int:
        at = self.emit(bytes((self._JCC[cond], 0)), f"{cond} short {label}")
        self._fixups.append((at + 1, label, 1, "rel"))
        return at

    def jmp_near(self, label: str) -> int:
        at = self.emit(b"\xe9\0\0", f"jmp near {label}")
        self._fixups.append((at + 1, label, 2, "rel"))
        return at
