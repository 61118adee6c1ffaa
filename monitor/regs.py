"""The guest's architectural registers as plain Python ints.

``RegisterFile`` is what host-side emulation code (the BIOS services, the
emulator that callouts land in) reads and writes: the eight general
registers, EIP and EFLAGS as 32-bit values, and the six segment registers
as 16-bit selector values (real-mode paragraph numbers in real and V8086
mode).  The narrower views (``ax``, ``al``, ``ah``, ``ip``, ...) are
properties that read and write the right bits of the 32-bit register, so
``regs.ah = 0x86`` leaves bits 31-16 and 7-0 of EAX alone, as the CPU does.

Order of ``gprs()``/``set_gprs()``: EAX ECX EDX EBX ESP EBP ESI EDI EIP
EFLAGS (the ModRM register numbering followed by EIP and EFLAGS), the order
of ``_native.Cpu.read_gprs()``.  Order of ``segs()``/``set_segs()``: ES CS
SS DS FS GS (the sreg numbering), the order of ``_native.Cpu.read_segs()``.

Only architectural state lives here: hidden descriptor caches, control
registers and the monitor's own bookkeeping belong elsewhere.
"""

from __future__ import annotations

# --- EFLAGS bits (Intel SDM vol. 1, 3.4.3) ---------------------------------
FLAG_CF = 1 << 0     # carry: unsigned overflow; the BIOS's error flag
FLAG_FIXED1 = 1 << 1 # reserved, always reads as 1
FLAG_PF = 1 << 2     # parity of the low byte of the result (even = 1)
FLAG_AF = 1 << 4     # auxiliary carry out of bit 3 (BCD arithmetic)
FLAG_ZF = 1 << 6     # zero result; int 16h "no key" flag
FLAG_SF = 1 << 7     # sign of the result
FLAG_TF = 1 << 8     # trap: single-step after each instruction
FLAG_IF = 1 << 9     # maskable interrupts enabled
FLAG_DF = 1 << 10    # string instructions count down
FLAG_OF = 1 << 11    # signed overflow
FLAG_IOPL_SHIFT = 12 # bits 13-12: I/O privilege level
FLAG_IOPL = 3 << FLAG_IOPL_SHIFT
FLAG_NT = 1 << 14    # nested task (iret returns through the TSS back link)
FLAG_RF = 1 << 16    # resume: suppress instruction breakpoints once
FLAG_VM = 1 << 17    # virtual-8086 mode
FLAG_AC = 1 << 18    # alignment check (with CR0.AM at CPL 3)
FLAG_VIF = 1 << 19   # virtual IF (VME / PVI)
FLAG_VIP = 1 << 20   # virtual interrupt pending (VME / PVI)
FLAG_ID = 1 << 21    # CPUID is available when software can toggle this

#: The arithmetic status flags (what ``popf`` in any mode may change).
STATUS_FLAGS = FLAG_CF | FLAG_PF | FLAG_AF | FLAG_ZF | FLAG_SF | FLAG_OF

GPR_NAMES = ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi", "eip", "eflags")
SEG_NAMES = ("es", "cs", "ss", "ds", "fs", "gs")

_M32 = 0xFFFFFFFF


def _view(reg: str, shift: int, bits: int, doc: str) -> property:
    """A property for ``bits`` bits of 32-bit register ``reg`` at ``shift``."""
    mask = (1 << bits) - 1
    keep = _M32 & ~(mask << shift)

    def get(self: "RegisterFile") -> int:
        return (getattr(self, reg) >> shift) & mask

    def set_(self: "RegisterFile", value: int) -> None:
        setattr(self, reg, (getattr(self, reg) & keep) | ((value & mask) << shift))

    return property(get, set_, doc=doc)


def _flag(bit: int, doc: str) -> property:
    def get(self: "RegisterFile") -> bool:
        return bool(self.eflags & bit)

    def set_(self: "RegisterFile", value: bool) -> None:
        if value:
            self.eflags |= bit
        else:
            self.eflags &= ~bit & _M32

    return property(get, set_, doc=doc)


class RegisterFile:
    """EAX..EDI, EIP, EFLAGS (32-bit ints) and ES CS SS DS FS GS (16-bit)."""

    __slots__ = GPR_NAMES + SEG_NAMES
    __hash__ = None  # mutable

    def __init__(self, **values: int) -> None:
        for name in GPR_NAMES + SEG_NAMES:
            setattr(self, name, 0)
        self.eflags = FLAG_FIXED1
        for name, value in values.items():
            if name not in self.__slots__ and not isinstance(getattr(type(self), name, None), property):
                raise AttributeError(f"RegisterFile has no register {name!r}")
            setattr(self, name, value)

    # 16-bit views of the general registers, IP and FLAGS.
    ax = _view("eax", 0, 16, "AX: bits 15-0 of EAX")
    cx = _view("ecx", 0, 16, "CX: bits 15-0 of ECX")
    dx = _view("edx", 0, 16, "DX: bits 15-0 of EDX")
    bx = _view("ebx", 0, 16, "BX: bits 15-0 of EBX")
    sp = _view("esp", 0, 16, "SP: bits 15-0 of ESP")
    bp = _view("ebp", 0, 16, "BP: bits 15-0 of EBP")
    si = _view("esi", 0, 16, "SI: bits 15-0 of ESI")
    di = _view("edi", 0, 16, "DI: bits 15-0 of EDI")
    ip = _view("eip", 0, 16, "IP: bits 15-0 of EIP")
    flags = _view("eflags", 0, 16, "FLAGS: bits 15-0 of EFLAGS")

    # 8-bit views.
    al = _view("eax", 0, 8, "AL: bits 7-0 of EAX")
    ah = _view("eax", 8, 8, "AH: bits 15-8 of EAX")
    cl = _view("ecx", 0, 8, "CL: bits 7-0 of ECX")
    ch = _view("ecx", 8, 8, "CH: bits 15-8 of ECX")
    dl = _view("edx", 0, 8, "DL: bits 7-0 of EDX")
    dh = _view("edx", 8, 8, "DH: bits 15-8 of EDX")
    bl = _view("ebx", 0, 8, "BL: bits 7-0 of EBX")
    bh = _view("ebx", 8, 8, "BH: bits 15-8 of EBX")

    # Flags.
    cf = _flag(FLAG_CF, "carry flag")
    pf = _flag(FLAG_PF, "parity flag")
    af = _flag(FLAG_AF, "auxiliary carry flag")
    zf = _flag(FLAG_ZF, "zero flag")
    sf = _flag(FLAG_SF, "sign flag")
    tf = _flag(FLAG_TF, "trap flag")
    if_ = _flag(FLAG_IF, "interrupt enable flag")
    df = _flag(FLAG_DF, "direction flag")
    of = _flag(FLAG_OF, "overflow flag")
    nt = _flag(FLAG_NT, "nested task flag")
    vm = _flag(FLAG_VM, "virtual-8086 mode flag")

    @property
    def iopl(self) -> int:
        """I/O privilege level, EFLAGS bits 13-12."""
        return (self.eflags & FLAG_IOPL) >> FLAG_IOPL_SHIFT

    @iopl.setter
    def iopl(self, value: int) -> None:
        self.eflags = (self.eflags & ~FLAG_IOPL & _M32) | ((value & 3) << FLAG_IOPL_SHIFT)

    # -- batch access ---------------------------------------------------------------

    def gprs(self) -> list[int]:
        """[eax, ecx, edx, ebx, esp, ebp, esi, edi, eip, eflags]."""
        return [self.eax, self.ecx, self.edx, self.ebx, self.esp, self.ebp,
                self.esi, self.edi, self.eip, self.eflags]

    def set_gprs(self, values) -> None:
        """Set the ten registers of ``gprs()`` (each masked to 32 bits)."""
        values = list(values)
        if len(values) != len(GPR_NAMES):
            raise ValueError(f"set_gprs needs {len(GPR_NAMES)} values ({' '.join(GPR_NAMES)}), got {len(values)}")
        (self.eax, self.ecx, self.edx, self.ebx, self.esp, self.ebp,
         self.esi, self.edi, self.eip, self.eflags) = (v & _M32 for v in values)

    def segs(self) -> list[int]:
        """[es, cs, ss, ds, fs, gs]."""
        return [self.es, self.cs, self.ss, self.ds, self.fs, self.gs]

    def set_segs(self, values) -> None:
        """Set the six selectors of ``segs()`` (each masked to 16 bits)."""
        values = list(values)
        if len(values) != len(SEG_NAMES):
            raise ValueError(f"set_segs needs {len(SEG_NAMES)} values ({' '.join(SEG_NAMES)}), got {len(values)}")
        self.es, self.cs, self.ss, self.ds, self.fs, self.gs = (v & 0xFFFF for v in values)

    def copy(self) -> "RegisterFile":
        other = RegisterFile.__new__(RegisterFile)
        for name in self.__slots__:
            setattr(other, name, getattr(self, name))
        return other

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RegisterFile):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in self.__slots__)

    def __repr__(self) -> str:
        gp = " ".join(f"{n}={getattr(self, n):08x}" for n in GPR_NAMES)
        sg = " ".join(f"{n}={getattr(self, n):04x}" for n in SEG_NAMES)
        return f"RegisterFile({gp} {sg})"
