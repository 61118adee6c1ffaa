# cython: language_level=3
"""Counting the guest instructions run in direct execution (twin: _native/blocks_py.py).

Direct execution runs the guest's own code on the real CPU, where the monitor
has no per-instruction counters (BT units count themselves, monitor/counters.py).
A block hook over the guest part of the address space (below the TC) sees
every translated block the real CPU runs in DE; the number of instructions of
a block is asked from Python once per (address, size) and then kept in a
C hash table, so the hook itself never takes the GIL on the fast path.
The same hook over the TC counts the guest instructions BT runs (the
machine's count_fn maps a TC block to the guest instructions it translates):
`count_fn(address, size)` returns the count (bits 0-23), optionally flagged
MARK (bit 24: count the block, e.g. a landing pad) and ALT (bit 25: add to
the second accumulator, e.g. protected-mode code).

BT code lives in the TC, outside the hook's range, and pays nothing: Unicorn
emits no hook call for blocks outside a hook's [begin, end] range.
"""

from libc.stdint cimport uint32_t, uint64_t
from libc.stdlib cimport calloc, free
from _native.uc_api cimport uc_engine, uc_hook, uc_err, uc_hook_add, uc_hook_del, uc_emu_stop, UC_ERR_OK

from unicorn import UcError

cdef extern from "unicorn/unicorn.h" nogil:
    int UC_HOOK_BLOCK

DEF TABLE_BITS = 18
DEF COUNT_MASK = 0xFFFFFF
DEF MARK = 0x1000000
DEF ALT = 0x2000000
DEF VALID = 0x80000000
DEF TABLE_SIZE = 1 << TABLE_BITS

cdef struct Slot:
    uint64_t address
    uint32_t size
    uint32_t count          # 0: empty slot

cdef struct BlockCore:
    Slot *table
    uint64_t instructions
    uint64_t alt_instructions    # counts flagged ALT (bit 25)
    uint64_t marks               # blocks flagged MARK (bit 24)
    uint64_t blocks
    uint64_t misses
    int enabled
    int stop_pending             # set from any thread; the hook stops the run (U29)
    void *owner


cdef uint32_t _ask(BlockCore *c, uint64_t address, uint32_t size) noexcept with gil:
    cdef BlockCounter owner = <BlockCounter>c.owner
    try:
        return (int(owner.count_fn(address, size)) & 0x7FFFFFFF) | VALID
    except BaseException as exc:
        owner.pending_error = exc
        return 1 | VALID


cdef void _on_block(uc_engine *uc, uint64_t address, uint32_t size, void *user) noexcept nogil:
    cdef BlockCore *c = <BlockCore *>user
    cdef uint64_t h
    cdef Slot *s
    if c.stop_pending:
        # A stop asked for by the run loop's slice timer, made here, at a block
        # start inside the CPU's thread: the EIP the run then reports is exact.
        # (A stop from another thread, Unicorn's own timeout included, can
        # report the start of a block part of which has run: U29.)
        c.stop_pending = 0
        uc_emu_stop(uc)
    if not c.enabled:
        return
    c.blocks += 1
    h = ((address * <uint64_t>0x9E3779B97F4A7C15ULL) >> (64 - TABLE_BITS)) ^ size
    s = &c.table[h & (TABLE_SIZE - 1)]
    if s.count == 0 or s.address != address or s.size != size:
        c.misses += 1
        s.address = address
        s.size = size
        s.count = _ask(c, address, size)
    if s.count & ALT:
        c.alt_instructions += s.count & COUNT_MASK
    else:
        c.instructions += s.count & COUNT_MASK
    if s.count & MARK:
        c.marks += 1


cdef class BlockCounter:
    """Counts instructions of the blocks run in [begin, end] while enabled."""

    cdef BlockCore core
    cdef uc_hook hook
    cdef object uc
    cdef public object count_fn
    cdef public object pending_error

    def __cinit__(self):
        self.core.table = NULL

    def __init__(self, uc, uint64_t begin, uint64_t end, count_fn):
        self.uc = uc
        self.count_fn = count_fn
        self.pending_error = None
        self.core.table = <Slot *>calloc(TABLE_SIZE, sizeof(Slot))
        if self.core.table == NULL:
            raise MemoryError()
        self.core.owner = <void *>self
        cdef uc_engine *engine = <uc_engine *><size_t>uc._uch.value
        cdef uc_err err = uc_hook_add(engine, &self.hook, UC_HOOK_BLOCK, <void *>_on_block,
                                      &self.core, begin, end)
        if err != UC_ERR_OK:
            raise UcError(err)

    def __dealloc__(self):
        if self.core.table != NULL:
            free(self.core.table)

    native = True

    def enable(self, bint on):
        self.core.enabled = 1 if on else 0

    def request_stop(self, bint on=True):
        """Ask the hook to stop the run at the next block it sees (any thread)."""
        self.core.stop_pending = 1 if on else 0

    def forget(self):
        """Drop every cached count (the guest's code changed)."""
        cdef int i
        for i in range(TABLE_SIZE):
            self.core.table[i].count = 0

    @property
    def instructions(self):
        """Instructions of blocks not flagged ALT (see count_fn)."""
        return self.core.instructions

    @property
    def alt_instructions(self):
        return self.core.alt_instructions

    @property
    def marks(self):
        return self.core.marks

    @property
    def blocks(self):
        return self.core.blocks

    @property
    def misses(self):
        return self.core.misses
