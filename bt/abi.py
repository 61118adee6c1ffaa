"""The contract between translated code and the monitor.

Selectors of the shadow GDT the real CPU runs on while it executes the TC, and
the monitor-data addresses that translated code reads and writes with `cs:`
overrides (the TC's code segment is flat and readable, and the software TLB
maps the monitor-data pages for data access only).
"""

from monitor.memory import DATA_LINEAR, MONITOR_LINEAR

# Monitor data layout (offsets from the data window's base, DATA_LINEAR
# unless the guest maps pages there and the monitor moves the window:
# monitor/relocation.py).  Every address below is an attribute of a
# DataLayout; the module-level names are those of the default layout.
#   0x00000  virtual state read by translated code (one page, below)
#   0x01000  the shadow GDT: 8192 entries, index-for-index with the guest's GDT,
#            the monitor's own descriptors in its top 32 entries (MON_GDT_INDEX)
#   0x11000  the shadow LDT (8192 entries)
#   0x21000  the monitor's stack page (world-switch frames)
#   0x22000  LOOKUP (indirect branches); the rest is free
DATA_SIZE = 0x100000
DATA_FRAME_OFFSET = DATA_LINEAR - MONITOR_LINEAR    # where the window's frames start in memory.monitor
GDT_ENTRIES = 8192
GDT_LIMIT = GDT_ENTRIES * 8 - 1
LOOKUP_ENTRIES = 0x10000


class DataLayout:
    """The linear addresses of monitor data, for one window base.  Translated
    code embeds them; moving the window (`move`) means a TC flush."""

    def __init__(self, base: int = DATA_LINEAR):
        self.move(base)

    def move(self, base: int) -> None:
        self.base = base
        self.VSTATE_LINEAR = base
        self.GDT_LINEAR = base + 0x1000
        self.LDT_LINEAR = base + 0x11000
        self.STACK_PAGE = base + 0x21000
        self.STACK_TOP = self.STACK_PAGE + 0x1000
        v = self.VSTATE_LINEAR
        self.VSEG = v + 0x00          # 6 x u16: guest segment values ES CS SS DS FS GS
        self.SCRATCH_FS = v + 0x14    # u16: real FS saved while FS is borrowed
        self.CS_SLOT_SEL = v + 0x18   # u16: constant slot_selector(1), loaded into FS
        self.SCRATCH_EAX = v + 0x20   # u32: guest EAX while an indirect lookup uses EAX
        self.SCRATCH_ECX = v + 0x24   # u32: guest ECX while a landing pad uses ECX
        self.SLOT_SELS = v + 0x30     # 6 x u16 constants: slot_selector(sreg), for inline reloads
        self.SCRATCH_IP = v + 0x40    # u16: a far transfer's target IP while CS is updated
        self.REENTRY_TARGET = v + 0x48  # u32: TC address the world-switch re-entry stub jumps to
        self.DE_ESP = v + 0x4C        # u32: the DE-entry frame's address on the monitor stack
        self.REAL_SELS = v + 0x50     # 6 x u16: what the re-entry stub loads into ES..GS (slot or 0)
        self.MON_SS_SEL = v + 0x5C    # u16: constant SEL_MON_DATA
        self.VSEG32 = v + 0x60        # 6 x u32: the segment values zero-extended (32-bit push sreg, PM)
        # Indirect-branch lookup: one u32 per 16-bit guest IP, the TC address of
        # a landing pad for that IP (which checks the guest CS) or of the miss callout.
        self.LOOKUP_LINEAR = base + 0x22000


    def offset(self, linear: int) -> int:
        """Offset of a monitor-data address in memory.monitor (the frames never move)."""
        if not self.base <= linear < self.base + DATA_SIZE:
            raise ValueError(f"{linear:#x} is not in the monitor data window at {self.base:#x}")
        return linear - self.base + DATA_FRAME_OFFSET

    def slot_descriptor(self, sreg: int) -> int:
        """Linear address of the shadow descriptor holding guest segment `sreg`."""
        return self.GDT_LINEAR + slot_selector(sreg)

    def contains(self, linear: int) -> bool:
        return self.base <= linear < self.base + DATA_SIZE


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


def slot_selector(sreg: int) -> int:
    """Shadow selector holding guest segment register `sreg` (0=ES .. 5=GS).

    The CS slot is a *data* segment with the guest CS base: translated code
    borrows FS with it for guest `cs:` memory operands."""
    return SEL_SLOT_BASE + 8 * sreg


# The default layout's addresses, by their old module-level names.
DEFAULT = DataLayout()
VSTATE_LINEAR, GDT_LINEAR, LDT_LINEAR = DEFAULT.VSTATE_LINEAR, DEFAULT.GDT_LINEAR, DEFAULT.LDT_LINEAR
STACK_PAGE, STACK_TOP = DEFAULT.STACK_PAGE, DEFAULT.STACK_TOP
VSEG, SCRATCH_FS, CS_SLOT_SEL = DEFAULT.VSEG, DEFAULT.SCRATCH_FS, DEFAULT.CS_SLOT_SEL
SCRATCH_EAX, SCRATCH_ECX, SLOT_SELS = DEFAULT.SCRATCH_EAX, DEFAULT.SCRATCH_ECX, DEFAULT.SLOT_SELS
SCRATCH_IP, REENTRY_TARGET, DE_ESP = DEFAULT.SCRATCH_IP, DEFAULT.REENTRY_TARGET, DEFAULT.DE_ESP
REAL_SELS, MON_SS_SEL = DEFAULT.REAL_SELS, DEFAULT.MON_SS_SEL
LOOKUP_LINEAR = DEFAULT.LOOKUP_LINEAR
slot_descriptor = DEFAULT.slot_descriptor

# A callout in translated code: int3 followed by the record index (u32).
CALLOUT_OPCODE = 0xCC
CALLOUT_LEN = 5

# ES CS SS DS FS GS, in x86 segment-register encoding order.
SREG_NAMES = ("es", "cs", "ss", "ds", "fs", "gs")
