"""The contract between translated code and the monitor.

Selectors of the shadow GDT the real CPU runs on while it executes the TC, and
the monitor-data addresses that translated code reads and writes with `cs:`
overrides (the TC's code segment is flat and readable, and the software TLB
maps the monitor-data pages for data access only).
"""

from monitor.memory import DATA_LINEAR

# Shadow GDT (at GDT_LINEAR), entry index * 8.
GDT_LINEAR = DATA_LINEAR
GDT_ENTRIES = 16
SEL_TC_CODE = 0x08        # 32-bit code, base 0, 4 GiB, readable, DPL 0
SEL_MON_DATA = 0x10       # 32-bit data, base 0, 4 GiB, DPL 0
SEL_SLOT_BASE = 0x18      # + 8 * sreg index (ES CS SS DS FS GS): the guest's segments
SEL_CODE16 = 0x48         # 16-bit code, base 0 (world-switch stub)


def slot_descriptor(sreg: int) -> int:
    """Linear address of the shadow descriptor holding guest segment `sreg`."""
    return GDT_LINEAR + slot_selector(sreg)


def slot_selector(sreg: int) -> int:
    """Shadow selector holding guest segment register `sreg` (0=ES .. 5=GS).

    The CS slot is a *data* segment with the guest CS base: translated code
    borrows FS with it for guest `cs:` memory operands."""
    return SEL_SLOT_BASE + 8 * sreg


# Virtual state read by translated code (at VSTATE_LINEAR).
VSTATE_LINEAR = DATA_LINEAR + 0x1000
VSEG = VSTATE_LINEAR + 0x00       # 6 x u16: guest segment values ES CS SS DS FS GS
SCRATCH_FS = VSTATE_LINEAR + 0x14  # u16: real FS saved while FS is borrowed
CS_SLOT_SEL = VSTATE_LINEAR + 0x18  # u16: constant slot_selector(1), loaded into FS
SCRATCH_EAX = VSTATE_LINEAR + 0x20  # u32: guest EAX while an indirect lookup uses EAX
SCRATCH_ECX = VSTATE_LINEAR + 0x24  # u32: guest ECX while a landing pad uses ECX
SLOT_SELS = VSTATE_LINEAR + 0x30    # 6 x u16 constants: slot_selector(sreg), for inline reloads
SCRATCH_IP = VSTATE_LINEAR + 0x40   # u16: a far transfer's target IP while CS is updated

# Indirect-branch lookup: one u32 per 16-bit guest IP, the TC address of a
# landing pad for that IP (which checks the guest CS) or of the miss callout.
LOOKUP_LINEAR = DATA_LINEAR + 0x10000
LOOKUP_ENTRIES = 0x10000

# Per-unit execution counters (u64 each), for "guest instructions run in BT".
COUNTERS_LINEAR = LOOKUP_LINEAR + 4 * LOOKUP_ENTRIES
COUNTERS_SIZE = DATA_LINEAR + 0x100000 - COUNTERS_LINEAR

# A callout in translated code: int3 followed by the record index (u32).
CALLOUT_OPCODE = 0xCC
CALLOUT_LEN = 5

# ES CS SS DS FS GS, in x86 segment-register encoding order.
SREG_NAMES = ("es", "cs", "ss", "ds", "fs", "gs")
