"""The final state of one run, as the guest could observe it, on either path."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Event:
    """How the run ended.

    kind: ``hlt`` (a ``hlt`` ran: the terminator, a generated one, or an IVT
    stub after a delivered exception / ``int n``), ``escape`` (control reached
    ``cs:ip`` outside the block and the stubs: the IVT was moved or
    overwritten), ``mode`` (CR0.PE was set: hybrid86 ends real-mode runs there
    today), ``limit`` (the reference's step limit; such examples are
    rejected), ``error`` (anything else: a host error, a timeout).
    ``cs``/``ip``: where (after the ``hlt``; at the ``lmsw``/``mov cr0`` for
    ``mode``; the escaping target for ``escape``)."""

    kind: str
    cs: int = 0
    ip: int = 0
    detail: str = ""
    # protected modes (kind "event"): the first exception or interrupt, not delivered
    vector: int | None = None
    error: int | None = None          # error code (None: the vector pushes none)
    soft: bool = False                # int n / int3 / into (ip past the instruction)

    def key(self):
        return (self.kind, self.cs, self.ip, self.vector, self.error)

    def __str__(self) -> str:
        if self.kind == "event":
            s = f"vector {self.vector:#04x} ({'software' if self.soft else 'exception'})"
            s += f" error {self.error:#x}" if self.error is not None else ""
            s += f" at {self.cs:04x}:{self.ip:08x}"
        else:
            s = f"{self.kind} at {self.cs:04x}:{self.ip:04x}"
        return s + (f" ({self.detail})" if self.detail else "")


@dataclass
class FinalState:
    gprs: list                      # eax ecx edx ebx esp ebp esi edi (32 bits)
    eflags: int
    segs: list                      # selector values es cs ss ds fs gs
    seg_bases: list                 # bases the CPU actually uses for them
    cr0: int
    cr2: int
    cr3: int
    cr4: int
    gdtr: tuple                     # (base, limit)
    idtr: tuple
    memory: bytes                   # guest RAM
    io: list                        # PortModel trace
    event: Event
    undefined_flags: int = 0        # reference only: arithmetic flags undefined at the end
    flag_images: list = field(default_factory=list)  # reference only: (linear, size, undefined mask) of pushed FLAGS
    first_delivery: tuple | None = None  # reference only: (vector, error code or None, return cs, return ip, is_int)
    steps: int = 0                  # reference only: instructions executed
    notes: list = field(default_factory=list)
    # protected modes and V8086 (None in real mode)
    descriptors: list | None = None  # per sreg: (base, limit, access without A, D/B) or None (null selector)
    cpl: int | None = None
    ldtr: tuple | None = None        # (selector, base, limit); base/limit None for a null LDTR
    tr: tuple | None = None          # (selector, base, limit)
