# cython: language_level=3
"""The CPU adapter: hybrid86's C-level grip on the engine Unicorn's binding made.

``Cpu(uc)`` takes a ``unicorn.Uc`` and works on its C ``uc_engine*``
(``uc._uch``), so Python code keeps using the ordinary binding while the hot
paths run here without entering the interpreter:

* batch register access (one C call for the architectural state);
* the interrupt hook in C: records the event with the error code read out of
  the context blob (U3), resets ``old_exception`` so the next fault is not
  turned into a double fault (U4), and stops emulation - or calls a Python
  handler for the vectors that asked for one;
* the IN/OUT hooks in C: unclaimed ports float (all ones), no-op ports are
  dropped, and only ports claimed by a Python device bus enter Python.

The pure-Python twin with the same interface is ``_native.cpu_py.Cpu``; the
tests run one body against both.
"""

from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.string cimport memset
from _native.uc_api cimport *

from unicorn import UcError
from _native.layout import calibrate as _calibrate
from _native.events import Event, EVENT_NAMES, PORT_ACTIONS, COUNTER_NAMES, has_error_code


cdef int _GPR[10]
_GPR[:] = [UC_X86_REG_EAX, UC_X86_REG_ECX, UC_X86_REG_EDX, UC_X86_REG_EBX,
           UC_X86_REG_ESP, UC_X86_REG_EBP, UC_X86_REG_ESI, UC_X86_REG_EDI,
           UC_X86_REG_EIP, UC_X86_REG_EFLAGS]
cdef int _SEG[6]
_SEG[:] = [UC_X86_REG_ES, UC_X86_REG_CS, UC_X86_REG_SS, UC_X86_REG_DS,
           UC_X86_REG_FS, UC_X86_REG_GS]
cdef int _CR[4]
_CR[:] = [UC_X86_REG_CR0, UC_X86_REG_CR2, UC_X86_REG_CR3, UC_X86_REG_CR4]

_LAYOUT_CACHE = None


def default_layout():
    """The calibrated context layout of this process's Unicorn (cached)."""
    global _LAYOUT_CACHE
    if _LAYOUT_CACHE is None:
        _LAYOUT_CACHE = _calibrate()
    return _LAYOUT_CACHE


def library_address():
    """Address of uc_version in the libunicorn this extension is linked to."""
    return <size_t>&uc_version


cdef inline uint32_t _ones(int size) noexcept nogil:
    if size == 1:
        return 0xFF
    if size == 2:
        return 0xFFFF
    return 0xFFFFFFFF


cdef inline bint _vector_has_error_code(uint32_t v) noexcept nogil:
    # #DF, #TS, #NP, #SS, #GP, #PF, #AC push an error code.
    return v == 8 or (10 <= v <= 14) or v == 17


# ---------------------------------------------------------------- the hooks

cdef bint _dispatch_vector(CpuCore *c, int vector, int err, int is_int) noexcept with gil:
    cdef Cpu cpu = <Cpu>c.owner
    try:
        if cpu._vector_handlers[vector](vector, err, bool(is_int)):
            return True
        c.event_kind = EV_HANDLER_STOP
    except BaseException as exc:
        cpu._pending_error = exc
        c.event_kind = EV_HANDLER_ERROR
    return False


cdef void _on_intr(uc_engine *uc, uint32_t intno, void *user_data) noexcept nogil:
    cdef CpuCore *c = <CpuCore *>user_data
    cdef char *blob = <char *>c.ctx
    cdef int old, err = 0, is_int
    cdef uint64_t eip = 0
    # One context save gives the error code (U3) and the fault bookkeeping;
    # a restore happens only when old_exception must be cleared (U4).
    uc_context_save(uc, c.ctx)
    old = (<int *>(blob + c.off_old_exception))[0]
    is_int = (<int *>(blob + c.off_is_int))[0]
    if not is_int and _vector_has_error_code(intno):
        err = (<int *>(blob + c.off_error_code))[0]
    if old != -1:
        (<int *>(blob + c.off_old_exception))[0] = -1
        uc_context_restore(uc, c.ctx)
        c.counters[C_RESETS] += 1
    uc_reg_read(uc, UC_X86_REG_EIP, &eip)
    c.event_vector = intno
    c.event_error_code = err
    c.event_is_int = is_int
    c.event_eip = <uint32_t>eip
    if is_int:
        c.counters[C_SOFTINTS] += 1
        c.event_kind = EV_SOFTINT
    else:
        c.counters[C_EXCEPTIONS] += 1
        c.event_kind = EV_EXCEPTION
    if c.vector_action[intno & 0xFF] == VEC_PYTHON:
        c.counters[C_VEC_PYTHON] += 1
        if _dispatch_vector(c, intno & 0xFF, err, is_int):
            c.event_kind = EV_NONE
            return
    uc_emu_stop(uc)


cdef uint32_t _dispatch_in(CpuCore *c, uint32_t port, int size) noexcept with gil:
    cdef Cpu cpu = <Cpu>c.owner
    try:
        return (<uint32_t>cpu._io_read(port, size)) & _ones(size)
    except BaseException as exc:
        cpu._pending_error = exc
        c.event_kind = EV_HANDLER_ERROR
        uc_emu_stop(c.uc)
        return _ones(size)


cdef void _dispatch_out(CpuCore *c, uint32_t port, int size, uint32_t value) noexcept with gil:
    cdef Cpu cpu = <Cpu>c.owner
    try:
        cpu._io_write(port, size, value & _ones(size))
    except BaseException as exc:
        cpu._pending_error = exc
        c.event_kind = EV_HANDLER_ERROR
        uc_emu_stop(c.uc)


cdef bint _check_io(CpuCore *c, uint32_t port, int size, int is_write) noexcept with gil:
    cdef Cpu cpu = <Cpu>c.owner
    try:
        return bool(cpu._io_check(port, size, bool(is_write)))
    except BaseException as exc:
        cpu._pending_error = exc
        c.event_kind = EV_HANDLER_ERROR
        uc_emu_stop(c.uc)
        return False


cdef uint32_t _on_in(uc_engine *uc, uint32_t port, int size, void *user_data) noexcept nogil:
    cdef CpuCore *c = <CpuCore *>user_data
    cdef uint8_t action = c.port_action[port & 0xFFFF]
    if c.io_check and not _check_io(c, port, size, 0):
        return _ones(size)
    if action == PORT_PYTHON:
        c.counters[C_IO_PYTHON] += 1
        return _dispatch_in(c, port, size)
    if action == PORT_IGNORE:
        c.counters[C_IO_IGNORED] += 1
    else:
        c.counters[C_IO_FLOAT] += 1
    return _ones(size)


cdef void _on_out(uc_engine *uc, uint32_t port, int size, uint32_t value, void *user_data) noexcept nogil:
    cdef CpuCore *c = <CpuCore *>user_data
    cdef uint8_t action = c.port_action[port & 0xFFFF]
    if c.io_check and not _check_io(c, port, size, 1):
        return
    if action == PORT_PYTHON:
        c.counters[C_IO_PYTHON] += 1
        _dispatch_out(c, port, size, value)
    elif action == PORT_IGNORE:
        c.counters[C_IO_IGNORED] += 1
    else:
        c.counters[C_IO_FLOAT] += 1


# ---------------------------------------------------------------- the adapter

cdef class Cpu:
    """C-level adapter over a ``unicorn.Uc`` (see the module docstring)."""

    def __cinit__(self):
        memset(&self.core, 0, sizeof(CpuCore))

    def __init__(self, uc, layout=None):
        self.uc = uc
        self.layout = layout if layout is not None else default_layout()
        self.core.uc = <uc_engine *><size_t>uc._uch.value
        self.core.owner = <void *>self
        self.core.ctx_size = uc_context_size(self.core.uc)
        if self.core.ctx_size != self.layout.size:
            raise RuntimeError(
                f"context size {self.core.ctx_size} differs from the calibrated "
                f"{self.layout.size}: the engine is not of the calibrated build")
        cdef uc_err err = uc_context_alloc(self.core.uc, &self.core.ctx)
        if err != UC_ERR_OK:
            raise UcError(err)
        self.core.off_old_exception = self.layout.old_exception
        self.core.off_error_code = self.layout.error_code
        self.core.off_is_int = self.layout.exception_is_int
        self._vector_handlers = [None] * 256
        self._io_read = None
        self._io_write = None
        self._pending_error = None
        self._io_check = None
        self._hooks_installed = False

    def __dealloc__(self):
        if self.core.ctx != NULL:
            uc_context_free(self.core.ctx)
            self.core.ctx = NULL

    native = True

    # -- registers ---------------------------------------------------------

    cdef list _read_batch(self, int *ids, int n):
        cdef uint64_t vals[16]
        cdef void *ptrs[16]
        cdef int i
        for i in range(n):
            vals[i] = 0
            ptrs[i] = &vals[i]
        cdef uc_err err = uc_reg_read_batch(self.core.uc, ids, ptrs, n)
        if err != UC_ERR_OK:
            raise UcError(err)
        return [vals[i] & 0xFFFFFFFF for i in range(n)]

    def read_gprs(self):
        """[eax, ecx, edx, ebx, esp, ebp, esi, edi, eip, eflags] in one call."""
        return self._read_batch(_GPR, 10)

    def write_gprs(self, values):
        """Write the ten registers of read_gprs() in one call."""
        cdef uint64_t vals[10]
        cdef void *ptrs[10]
        cdef int i
        if len(values) != 10:
            raise ValueError("write_gprs takes 10 values (eax..edi, eip, eflags)")
        for i in range(10):
            vals[i] = <uint32_t>(values[i] & 0xFFFFFFFF)
            ptrs[i] = &vals[i]
        cdef uc_err err = uc_reg_write_batch(self.core.uc, _GPR, ptrs, 10)
        if err != UC_ERR_OK:
            raise UcError(err)

    def read_segs(self):
        """Selectors [es, cs, ss, ds, fs, gs]."""
        return [v & 0xFFFF for v in self._read_batch(_SEG, 6)]

    def read_crs(self):
        """[cr0, cr2, cr3, cr4]."""
        return self._read_batch(_CR, 4)

    # -- the U3/U4 context-blob fields ---------------------------------------

    cdef int reset_old_exception_c(self) noexcept nogil:
        cdef char *blob = <char *>self.core.ctx
        cdef int old
        uc_context_save(self.core.uc, self.core.ctx)
        old = (<int *>(blob + self.core.off_old_exception))[0]
        if old != -1:
            (<int *>(blob + self.core.off_old_exception))[0] = -1
            uc_context_restore(self.core.uc, self.core.ctx)
            self.core.counters[C_RESETS] += 1
        return old

    def reset_old_exception(self):
        """Clear the CPU's old_exception (U4); returns the value it had."""
        return self.reset_old_exception_c()

    def fault_info(self):
        """(old_exception, error_code, exception_is_int) as the CPU holds them now."""
        cdef char *blob = <char *>self.core.ctx
        uc_context_save(self.core.uc, self.core.ctx)
        return ((<int *>(blob + self.core.off_old_exception))[0],
                (<int *>(blob + self.core.off_error_code))[0],
                (<int *>(blob + self.core.off_is_int))[0])

    # -- hooks ---------------------------------------------------------------

    def install_hooks(self):
        """Register the C interrupt and IN/OUT hooks on the engine (once)."""
        cdef uc_err err
        if self._hooks_installed:
            return
        err = uc_hook_add(self.core.uc, &self._h_intr, UC_HOOK_INTR, <void *>_on_intr,
                          &self.core, 1, 0)
        if err == UC_ERR_OK:
            err = uc_hook_add(self.core.uc, &self._h_in, UC_HOOK_INSN, <void *>_on_in,
                              &self.core, 1, 0, UC_X86_INS_IN)
        if err == UC_ERR_OK:
            err = uc_hook_add(self.core.uc, &self._h_out, UC_HOOK_INSN, <void *>_on_out,
                              &self.core, 1, 0, UC_X86_INS_OUT)
        if err != UC_ERR_OK:
            raise UcError(err)
        self._hooks_installed = True

    def remove_hooks(self):
        if not self._hooks_installed:
            return
        uc_hook_del(self.core.uc, self._h_intr)
        uc_hook_del(self.core.uc, self._h_in)
        uc_hook_del(self.core.uc, self._h_out)
        self._hooks_installed = False

    def set_vector_handler(self, int vector, handler):
        """handler(vector, error_code, is_int) -> True to continue, False to stop.

        None restores the default: record the event and stop.
        """
        if not 0 <= vector <= 255:
            raise ValueError(f"vector {vector} out of range 0..255")
        self._vector_handlers[vector] = handler
        self.core.vector_action[vector] = VEC_STOP if handler is None else VEC_PYTHON

    def set_io_handlers(self, read, write):
        """read(port, size) -> int and write(port, size, value) for claimed ports."""
        self._io_read = read
        self._io_write = write

    def set_io_check(self, check):
        """check(port, size, is_write) -> bool, asked before every IN/OUT
        (None: no check).  A refused access reads all ones / writes nothing;
        the check itself stops the machine (U7: the CPU cannot fault it)."""
        self._io_check = check
        self.core.io_check = 0 if check is None else 1

    def claim_ports(self, int base, int count, action="python"):
        """Set what the IN/OUT hooks do for ports base..base+count-1."""
        cdef int code = PORT_ACTIONS[action]
        if base < 0 or count < 0 or base + count > 0x10000:
            raise ValueError(f"port range {base:#x}+{count} outside 0..0xffff")
        if code == PORT_PYTHON and self._io_read is None:
            raise RuntimeError("claim_ports('python') before set_io_handlers()")
        for port in range(base, base + count):
            self.core.port_action[port] = code

    def port_action(self, int port):
        return {v: k for k, v in PORT_ACTIONS.items()}[self.core.port_action[port & 0xFFFF]]

    # -- running ---------------------------------------------------------------

    def run(self, uint64_t begin, uint64_t until=0xFFFFFFFFFFFFFFFF,
            uint64_t timeout_us=0, size_t count=0):
        """uc_emu_start without the GIL; returns the Event that ended it."""
        cdef uc_err err
        self.core.event_kind = EV_NONE
        with nogil:
            err = uc_emu_start(self.core.uc, begin, until, timeout_us, count)
        if self._pending_error is not None:
            exc, self._pending_error = self._pending_error, None
            raise exc
        if err != UC_ERR_OK:
            raise UcError(err)
        return self.last_event

    @property
    def last_event(self):
        return Event(EVENT_NAMES[self.core.event_kind], self.core.event_vector,
                     self.core.event_error_code, bool(self.core.event_is_int),
                     self.core.event_eip)

    @property
    def counters(self):
        return {name: self.core.counters[i] for i, name in enumerate(COUNTER_NAMES)}
