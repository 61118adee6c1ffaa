# The CPU adapter: C-level state shared by the hooks that run inside
# uc_emu_start.  Everything a hook touches lives in CpuCore, a plain C struct,
# so the hooks run without the GIL and take it only to call a Python handler.

from libc.stdint cimport uint8_t, uint32_t, uint64_t
from _native.uc_api cimport uc_engine, uc_context, uc_hook

cdef enum:
    # Why the last uc_emu_start ended (CpuCore.event_kind).
    EV_NONE = 0           # returned by itself: until/count/timeout reached, or hlt
    EV_EXCEPTION = 1      # a CPU exception (fault or trap) reached the interrupt hook
    EV_SOFTINT = 2        # int n / int3 / into reached the interrupt hook
    EV_HANDLER_STOP = 3   # a Python handler asked to stop
    EV_HANDLER_ERROR = 4  # a Python handler raised; run() re-raises it

    # What the interrupt hook does with a vector (CpuCore.vector_action).
    VEC_STOP = 0          # record the event and stop emulation (the default)
    VEC_PYTHON = 1        # call the Python handler; it decides continue or stop

    # What the IN/OUT hooks do with a port (CpuCore.port_action).
    PORT_FLOAT = 0        # nothing there: reads all ones, writes dropped, counted
    PORT_IGNORE = 1       # known no-op port (0x80 delay): same, not counted
    PORT_PYTHON = 2       # dispatch to the Python port handlers

    # Counter indexes (CpuCore.counters).
    C_EXCEPTIONS = 0      # exceptions seen by the interrupt hook
    C_SOFTINTS = 1        # software interrupts seen by the interrupt hook
    C_RESETS = 2          # old_exception resets performed (U4)
    C_IO_PYTHON = 3       # IN/OUT dispatched to Python
    C_IO_FLOAT = 4        # IN/OUT to unclaimed ports
    C_IO_IGNORED = 5      # IN/OUT to ignored ports
    C_VEC_PYTHON = 6      # vectors dispatched to Python
    N_COUNTERS = 7

cdef struct CpuCore:
    uc_engine *uc                   # the engine the Python binding opened
    uc_context *ctx                 # scratch context for the U3/U4 blob access
    size_t ctx_size                 # uc_context_size() of this engine
    int off_old_exception           # calibrated offsets inside the blob
    int off_error_code
    int off_is_int
    uint8_t vector_action[256]      # VEC_* per vector
    uint8_t port_action[65536]      # PORT_* per I/O port
    int event_kind                  # EV_* of the last run
    int event_vector                # vector of the last interrupt-hook event
    int event_error_code            # its error code (0 where the vector has none)
    int event_is_int                # 1 when it came from int n / int3 / into
    uint32_t event_eip              # EIP at the event (fault: the instruction)
    uint64_t counters[N_COUNTERS]
    int io_check                    # 1: ask Python's io_check before every IN/OUT (DE, U7)
    void *owner                     # borrowed pointer to the owning Cpu object

cdef class Cpu:
    cdef CpuCore core
    cdef readonly object uc            # the unicorn.Uc this adapter serves
    cdef readonly object layout        # the ContextLayout used
    cdef object _vector_handlers       # list of 256 callables or None
    cdef object _io_read               # callable(port, size) -> int
    cdef object _io_write              # callable(port, size, value)
    cdef object _pending_error         # exception raised inside a handler
    cdef object _io_check              # callable(port, size, is_write) -> bool, or None
    cdef uc_hook _h_intr, _h_in, _h_out
    cdef bint _hooks_installed

    cdef int reset_old_exception_c(self) noexcept nogil
    cdef list _read_batch(self, int *ids, int n)
