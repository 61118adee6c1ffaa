"""The exact address of a page fault (the guest's CR2).

Unicorn's TLB-fill hook is told only the *page* of a refused access
(docs/mmu.md), and a guest's #PF handler needs the exact linear address in
CR2.  The run ends with EIP at the faulting instruction, so the monitor
decodes that instruction and works out which of its memory accesses falls in
the refused page: its ModRM operand, the stack (push, pop, call, ret, int,
iret, enter, leave), or the string registers.  An access that starts on the
page before reports the first byte of the refused page, as the CPU does for a
split access.  When nothing matches, the page address is the answer.
"""

from __future__ import annotations

PAGE = 0x1000
EAX, ECX, EDX, EBX, ESP, EBP, ESI, EDI = range(8)
REG_INDEX = {n: i for i, n in enumerate(("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi"))}
REG16_INDEX = {n: i for i, n in enumerate(("ax", "cx", "dx", "bx", "sp", "bp", "si", "di"))}
PUSHES = ("push", "call", "int", "enter", "pushf", "pusha", "pushal", "pushfd", "pushaw", "pushfw", "int3", "into")
POPS = ("pop", "ret", "iret", "leave", "popf", "popa", "retf", "popal", "popfd", "iretd", "popaw", "popfw", "iretw")
SOURCE_STRINGS = ("movs", "cmps", "lods", "outs")
DEST_STRINGS = ("movs", "cmps", "stos", "scas", "ins")


BYTE_OPS_1 = frozenset({0x00, 0x02, 0x08, 0x0A, 0x10, 0x12, 0x18, 0x1A, 0x20, 0x22, 0x28, 0x2A, 0x30, 0x32,
                        0x38, 0x3A, 0x80, 0x82, 0x84, 0x86, 0x88, 0x8A, 0xC0, 0xC6, 0xD0, 0xD2, 0xF6, 0xFE})
BYTE_OPS_2 = frozenset({0xB0, 0xC0, 0xB6, 0xBE} | set(range(0x90, 0xA0)))


def operand_bytes(insn) -> int:
    """How many bytes the ModRM memory operand covers (an upper bound for the rare forms)."""
    if insn.opmap == 1 and insn.opcode in BYTE_OPS_1 or insn.opmap == 2 and insn.opcode in BYTE_OPS_2:
        return 1
    size = max(2, insn.eff_opsize // 8)
    if insn.mnemonic in ("lgdt", "lidt", "sgdt", "sidt"):
        return 6
    if insn.mnemonic in ("lds", "les", "lss", "lfs", "lgs") or (insn.opmap == 1 and insn.opcode == 0xFF
                                                                 and insn.reg in (3, 5)):
        return size + 2
    if insn.opmap == 1 and insn.opcode == 0xFF and insn.reg in (2, 4):   # call/jmp near m
        return size
    if insn.opmap == 2 and insn.opcode == 0xC7:                         # cmpxchg8b
        return 8
    return size


def _reg(regs, name: str) -> int:
    if name in REG16_INDEX:
        return regs[REG16_INDEX[name]] & 0xFFFF
    return regs[REG_INDEX[name]]


def accesses(insn, regs, seg_base, stack32: bool = True) -> list[tuple[int, int]]:
    """(linear address, size) of the memory accesses `insn` may make."""
    out = []
    size = max(1, insn.eff_opsize // 8)
    amask = 0xFFFF if insn.addrsize == 16 else 0xFFFFFFFF
    if insn.mem is not None:
        mem = insn.mem
        off = mem.disp
        if mem.base:
            off += _reg(regs, mem.base)
        if mem.index:
            off += _reg(regs, mem.index) * mem.scale
        out.append(((seg_base(mem.segment) + (off & amask)) & 0xFFFFFFFF, operand_bytes(insn)))
    name = insn.mnemonic
    smask = 0xFFFFFFFF if stack32 else 0xFFFF
    sp = regs[ESP] & smask
    if name.startswith(PUSHES):
        depth = 36 if name.startswith(("pusha", "int", "enter")) else size + 4
        out.append(((seg_base("ss") + ((sp - depth) & smask)) & 0xFFFFFFFF, depth))
    if name.startswith(POPS):
        depth = 36 if name.startswith(("popa", "iret", "leave")) else 2 * size + 4
        out.append(((seg_base("ss") + sp) & 0xFFFFFFFF, depth))
    base = name.rstrip("bwdq")
    if base in SOURCE_STRINGS:
        seg = insn.mem.segment if insn.mem is not None else "ds"
        out.append(((seg_base(seg) + (regs[ESI] & amask)) & 0xFFFFFFFF, 4))
    if base in DEST_STRINGS:
        out.append(((seg_base("es") + (regs[EDI] & amask)) & 0xFFFFFFFF, 4))
    return out


def fault_address(page: int, candidates: list[tuple[int, int]]) -> int | None:
    """The first candidate access that touches `page`: its address, or the
    page's first byte for an access that starts on the page before."""
    page &= ~(PAGE - 1)
    for addr, size in candidates:
        end = addr + size
        if addr < page + PAGE and end > page:
            return max(addr, page)
        if addr + size > 0xFFFFFFFF and page < (end & 0xFFFFFFFF):     # wraps to page 0
            return page
    return None
