"""The contract between translated code and the monitor.

Selectors of the shadow GDT the real CPU runs on while it executes the TC, and
the monitor-data addresses that translated code reads and writes with `cs:`
overrides (the TC's code segment is flat and readable, and the software TLB
maps the monitor-data pages for data access only).
"""

from monitor.memory import DATA_LINEAR

# Monitor data layout (offsets from DATA_LINEAR):
#   0x00000  virtual state read by translated code (one page, below)
#   0x01000  the shadow GDT: 8192 entries, index-for-index with the guest's GDT,
#            the monitor's own descriptors in its top 32 entries (MON_GDT_INDEX)
#   0x11000  the shadow LDT (8192 entries)
#   0x21000  the monitor's stack page (world-switch frames)
#   0x22000  LOOKUP (indirect branches), then the execution counters
VSTATE_LINEAR = DATA_LINEAR
GDT_LINEAR = DATA_LINEAR + 0x1000
GDT_ENTRIES = 8192
GDT_LIMIT = GDT_ENTRIES * 8 - 1
LDT_LINEAR = DATA_LINEAR + 0x11000
STACK_PAGE = DATA_LINEAR + 0x21000
STACK_TOP = STACK_PAGE + 0x1000

# The monitor's own descriptors sit in the top 32 entries of the shadow GDT,
# with DPL 0 and beyond any guest GDT limit below 0xFF00: a ring-3 guest that
# loads one gets #GP(selector), exactly what its own CPU gives for a selector
# past its table's limit (docs/protected-mode.md).
MON_GDT_INDEX = GDT_ENTRIES - 32
SEL_TC_CODE = MON_GDT_INDEX * 8 + 0x08     # 32-bit code, base 0, 4 GiB, readable, DPL 0
SEL_MON_DATA = MON_GDT_INDEX * 8 + 0x10    # 32-bit data, base 0, 4 GiB, DPL 0
SEL_SLOT_BASE = MON_GDT_INDEX * 8 + 0x18   # + 8 * sreg index (ES CS SS DS FS GS): the guest's segments
SEL_CODE16 = MON_GDT_INDEX * 8 + 0x48      # 16-bit code, base 0 (world-switch stub)
MON_GDT_SELECTORS = (SEL_TC_CODE, SEL_MON_DATA) + tuple(SEL_SLOT_BASE + 8 * i for i in range(6)) + (SEL_CODE16,)


def slot_descriptor(sreg: int) -> int:
    """Linear address of the shadow descriptor holding guest segment `sreg`."""
    return GDT_LINEAR + slot_selector(sreg)


def slot_selector(sreg: int) -> int:
    """Shadow selector holding guest segment register `sreg` (0=ES .. 5=GS).

    The CS slot is a *data* segment with the guest CS base: translated code
    borrows FS with it for guest `cs:` memory operands."""
    return SEL_SLOT_BASE + 8 * sreg


# Virtual state read by translated code (at VSTATE_LINEAR).
VSEG = VSTATE_LINEAR + 0x00       # 6 x u16: guest segment values ES CS SS DS FS GS
SCRATCH_FS = VSTATE_LINEAR + 0x14  # u16: real FS saved while FS is borrowed
CS_SLOT_SEL = VSTATE_LINEAR + 0x18  # u16: constant slot_selector(1), loaded into FS
SCRATCH_EAX = VSTATE_LINEAR + 0x20  # u32: guest EAX while an indirect lookup uses EAX
SCRATCH_ECX = VSTATE_LINEAR + 0x24  # u32: guest ECX while a landing pad uses ECX
SLOT_SELS = VSTATE_LINEAR + 0x30    # 6 x u16 constants: slot_selector(sreg), for inline reloads
SCRATCH_IP = VSTATE_LINEAR + 0x40   # u16: a far transfer's target IP while CS is updated
REENTRY_TARGET = VSTATE_LINEAR + 0x48  # u32: TC address the world-switch re-entry stub jumps to
DE_ESP = VSTATE_LINEAR + 0x4C       # u32: the DE-entry frame's address on the monitor stack
REAL_SELS = VSTATE_LINEAR + 0x50    # 6 x u16: what the re-entry stub loads into ES..GS (slot or 0)
MON_SS_SEL = VSTATE_LINEAR + 0x5C   # u16: constant SEL_MON_DATA

# Indirect-branch lookup: one u32 per 16-bit guest IP, the TC address of a
# landing pad for that IP (which checks the guest CS) or of the miss callout.
LOOKUP_LINEAR = DATA_LINEAR + 0x22000
LOOKUP_ENTRIES = 0x10000

# Per-unit execution counters (u64 each), for "guest instructions run in BT".
COUNTERS_LINEAR = LOOKUP_LINEAR + 4 * LOOKUP_ENTRIES
COUNTERS_SIZE = DATA_LINEAR + 0x100000 - COUNTERS_LINEAR

# A callout in translated code: int3 followed by the record index (u32).
CALLOUT_OPCODE = 0xCC
CALLOUT_LEN = 5

# ES CS SS DS FS GS, in x86 segment-register encoding order.
SREG_NAMES = ("es", "cs", "ss", "ds", "fs", "gs")
