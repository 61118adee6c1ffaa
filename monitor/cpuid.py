"""The CPU the guest sees through CPUID: a Pentium III-class family-6 part.

Features are those the emulated CPU implements and the monitor virtualizes:
FPU, VME-less, PSE, TSC, MSR, CX8, SEP, PGE, CMOV, FXSR-less.  No local APIC
(none is emulated) and no PAE (the software MMU walks two-level tables)."""

VENDOR = b"GenuineIntel"
# EDX feature bits of leaf 1.
FPU, DE, PSE, TSC, MSR, CX8, SEP, PGE, CMOV = 0, 2, 3, 4, 5, 8, 11, 13, 15
LEAF1_EDX = sum(1 << b for b in (FPU, DE, PSE, TSC, MSR, CX8, SEP, PGE, CMOV))
SIGNATURE = (6 << 8) | (8 << 4) | 3      # family 6, model 8, stepping 3


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
