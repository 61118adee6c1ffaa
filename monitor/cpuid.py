"""The CPU the guest sees: a Pentium III (family 6, model 7).

The emulated CPU itself is Unicorn's "pentium3" model (Machine sets it), so
`cpuid` run directly in DE, which cannot be intercepted reliably (U28), and
the virtual CPUID the monitor answers in BT describe the same part: same
vendor, signature and user-visible features (MMX, FXSR, SSE).  The monitor's
answer hides what it does not emulate or virtualize: the local APIC, MTRRs,
the machine-check architecture, PAT, PAE and PSE-36 (the software MMU walks
two-level tables).  A kernel never sees those; a user program reading CPUID
directly sees the full pentium3 list, which only names hardware it cannot
reach from ring 3."""

from unicorn.x86_const import UC_CPU_X86_PENTIUM3

CPU_MODEL = UC_CPU_X86_PENTIUM3
VENDOR = b"GenuineIntel"
# EDX feature bits of leaf 1.
FPU, DE, PSE, TSC, MSR, CX8, SEP, PGE, CMOV, MMX, FXSR, SSE = 0, 2, 3, 4, 5, 8, 11, 13, 15, 23, 24, 25
LEAF1_EDX = sum(1 << b for b in (FPU, DE, PSE, TSC, MSR, CX8, SEP, PGE, CMOV, MMX, FXSR, SSE))
SIGNATURE = (6 << 8) | (7 << 4) | 3      # family 6, model 7, stepping 3 (Unicorn's pentium3)


def cpuid(leaf: int, subleaf: int = 0) -> tuple[int, int, int, int]:
    """(eax, ebx, ecx, edx) for a CPUID leaf."""
    leaf &= 0xFFFFFFFF
    if leaf == 0:
        v = VENDOR
        return 2, int.from_bytes(v[0:4], "little"), int.from_bytes(v[8:12], "little"), int.from_bytes(v[4:8], "little")
    if leaf == 1:
        return SIGNATURE, 0, 0, LEAF1_EDX
    if leaf == 2:
        return 0x00000001, 0, 0, 0        # no cache descriptors
    if leaf == 0x80000000:
        return 0x80000000, 0, 0, 0
    return 0, 0, 0, 0
