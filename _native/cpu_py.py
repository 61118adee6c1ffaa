"""Pure-Python twin of the native CPU adapter (``_native/cpu.pyx``).

Same interface, same semantics, built on the ordinary Python binding.  It is
slower (every hook enters the interpreter, register access goes through
ctypes) and exists so that the tests can hold the two equal: each behaviour
test runs once against ``_native.Cpu`` and once against this class.
"""

from __future__ import annotations

import ctypes
import struct

from unicorn import UC_HOOK_INSN, UC_HOOK_INTR
from unicorn.x86_const import (
    UC_X86_INS_IN,
    UC_X86_INS_OUT,
    UC_X86_REG_CR0,
    UC_X86_REG_CR2,
    UC_X86_REG_CR3,
    UC_X86_REG_CR4,
    UC_X86_REG_CS,
    UC_X86_REG_DS,
    UC_X86_REG_EAX,
    UC_X86_REG_EBP,
    UC_X86_REG_EBX,
    UC_X86_REG_ECX,
    UC_X86_REG_EDI,
    UC_X86_REG_EDX,
    UC_X86_REG_EFLAGS,
    UC_X86_REG_EIP,
    UC_X86_REG_ES,
    UC_X86_REG_ESI,
    UC_X86_REG_ESP,
    UC_X86_REG_FS,
    UC_X86_REG_GS,
    UC_X86_REG_SS,
)

from _native.events import COUNTER_NAMES, EVENT_NAMES, PORT_ACTIONS, Event, has_error_code
from _native.layout import ContextLayout, calibrate

GPR_IDS = (
    UC_X86_REG_EAX, UC_X86_REG_ECX, UC_X86_REG_EDX, UC_X86_REG_EBX,
    UC_X86_REG_ESP, UC_X86_REG_EBP, UC_X86_REG_ESI, UC_X86_REG_EDI,
    UC_X86_REG_EIP, UC_X86_REG_EFLAGS,
)
SEG_IDS = (UC_X86_REG_ES, UC_X86_REG_CS, UC_X86_REG_SS, UC_X86_REG_DS, UC_X86_REG_FS, UC_X86_REG_GS)
CR_IDS = (UC_X86_REG_CR0, UC_X86_REG_CR2, UC_X86_REG_CR3, UC_X86_REG_CR4)

_ONES = {1: 0xFF, 2: 0xFFFF, 4: 0xFFFFFFFF}
_LAYOUT_CACHE: ContextLayout | None = None


def default_layout() -> ContextLayout:
    global _LAYOUT_CACHE
    if _LAYOUT_CACHE is None:
        _LAYOUT_CACHE = calibrate()
    return _LAYOUT_CACHE


class Cpu:
    """Pure-Python CPU adapter (see _native/cpu.pyx for the contract)."""

    native = False

    def __init__(self, uc, layout: ContextLayout | None = None):
        self.uc = uc
        self.layout = layout if layout is not None else default_layout()
        self._ctx = uc.context_save()
        if self._ctx.size != self.layout.size:
            raise RuntimeError(
                f"context size {self._ctx.size} differs from the calibrated {self.layout.size}"
            )
        self._blob = (ctypes.c_char * self.layout.size).from_address(self._ctx.context.value)
        self._vector_handlers = [None] * 256
        self._io_read = None
        self._io_write = None
        self._port_action = bytearray(0x10000)
        self._io_check = None
        self._pending_error: BaseException | None = None
        self._hooks: list[int] = []
        self._counters = dict.fromkeys(COUNTER_NAMES, 0)
        self._event = [0, 0, 0, 0, 0]  # kind, vector, error_code, is_int, eip

    # -- registers ---------------------------------------------------------

    def read_gprs(self) -> list[int]:
        return [v & 0xFFFFFFFF for v in self.uc.reg_read_batch(GPR_IDS)]

    def write_gprs(self, values) -> None:
        if len(values) != 10:
            raise ValueError("write_gprs takes 10 values (eax..edi, eip, eflags)")
        self.uc.reg_write_batch(list(zip(GPR_IDS, (v & 0xFFFFFFFF for v in values))))

    def read_segs(self) -> list[int]:
        return [v & 0xFFFF for v in self.uc.reg_read_batch(SEG_IDS)]

    def read_crs(self) -> list[int]:
        return [v & 0xFFFFFFFF for v in self.uc.reg_read_batch(CR_IDS)]

    # -- the U3/U4 context-blob fields -----------------------------------------

    def _field(self, offset: int) -> int:
        return struct.unpack_from("<i", self._blob, offset)[0]

    def reset_old_exception(self) -> int:
        self.uc.context_update(self._ctx)
        old = self._field(self.layout.old_exception)
        if old != -1:
            struct.pack_into("<i", self._blob, self.layout.old_exception, -1)
            self.uc.context_restore(self._ctx)
            self._counters["resets"] += 1
        return old

    def fault_info(self) -> tuple[int, int, int]:
        self.uc.context_update(self._ctx)
        lay = self.layout
        return self._field(lay.old_exception), self._field(lay.error_code), self._field(lay.exception_is_int)

    # -- hooks ---------------------------------------------------------------

    def install_hooks(self) -> None:
        if self._hooks:
            return
        self._hooks = [
            self.uc.hook_add(UC_HOOK_INTR, self._on_intr),
            self.uc.hook_add(UC_HOOK_INSN, self._on_in, None, 1, 0, UC_X86_INS_IN),
            self.uc.hook_add(UC_HOOK_INSN, self._on_out, None, 1, 0, UC_X86_INS_OUT),
        ]

    def remove_hooks(self) -> None:
        for h in self._hooks:
            self.uc.hook_del(h)
        self._hooks = []

    def set_vector_handler(self, vector: int, handler) -> None:
        if not 0 <= vector <= 255:
            raise ValueError(f"vector {vector} out of range 0..255")
        self._vector_handlers[vector] = handler

    def set_io_handlers(self, read, write) -> None:
        self._io_read, self._io_write = read, write

    def claim_ports(self, base: int, count: int, action: str = "python") -> None:
        code = PORT_ACTIONS[action]
        if base < 0 or count < 0 or base + count > 0x10000:
            raise ValueError(f"port range {base:#x}+{count} outside 0..0xffff")
        if code == PORT_ACTIONS["python"] and self._io_read is None:
            raise RuntimeError("claim_ports('python') before set_io_handlers()")
        self._port_action[base:base + count] = bytes([code]) * count

    def port_action(self, port: int) -> str:
        return {v: k for k, v in PORT_ACTIONS.items()}[self._port_action[port & 0xFFFF]]

    def _on_intr(self, uc, intno, _ud) -> None:
        lay = self.layout
        uc.context_update(self._ctx)
        old = self._field(lay.old_exception)
        is_int = self._field(lay.exception_is_int)
        err = self._field(lay.error_code) if (not is_int and has_error_code(intno)) else 0
        if old != -1:
            struct.pack_into("<i", self._blob, lay.old_exception, -1)
            uc.context_restore(self._ctx)
            self._counters["resets"] += 1
        eip = uc.reg_read(UC_X86_REG_EIP) & 0xFFFFFFFF
        kind = 2 if is_int else 1
        self._counters["softints" if is_int else "exceptions"] += 1
        self._event = [kind, intno, err, is_int, eip]
        handler = self._vector_handlers[intno & 0xFF]
        if handler is not None:
            self._counters["vec_python"] += 1
            try:
                if handler(intno & 0xFF, err, bool(is_int)):
                    self._event[0] = 0
                    return
                self._event[0] = 3
            except BaseException as exc:  # re-raised by run()
                self._pending_error = exc
                self._event[0] = 4
        uc.emu_stop()

    def set_io_check(self, check) -> None:
        self._io_check = check

    def _checked(self, uc, port, size, is_write) -> bool:
        if self._io_check is None:
            return True
        try:
            return bool(self._io_check(port, size, is_write))
        except BaseException as exc:
            self._pending_error = exc
            self._event[0] = 4
            uc.emu_stop()
            return False

    def _on_in(self, uc, port, size, _ud) -> int:
        if not self._checked(uc, port, size, False):
            return _ONES[size]
        action = self._port_action[port & 0xFFFF]
        if action == PORT_ACTIONS["python"]:
            self._counters["io_python"] += 1
            try:
                return self._io_read(port, size) & _ONES[size]
            except BaseException as exc:
                self._pending_error = exc
                self._event[0] = 4
                uc.emu_stop()
                return _ONES[size]
        self._counters["io_ignored" if action == PORT_ACTIONS["ignore"] else "io_float"] += 1
        return _ONES[size]

    def _on_out(self, uc, port, size, value, _ud) -> None:
        if not self._checked(uc, port, size, True):
            return
        action = self._port_action[port & 0xFFFF]
        if action == PORT_ACTIONS["python"]:
            self._counters["io_python"] += 1
            try:
                self._io_write(port, size, value & _ONES[size])
            except BaseException as exc:
                self._pending_error = exc
                self._event[0] = 4
                uc.emu_stop()
            return
        self._counters["io_ignored" if action == PORT_ACTIONS["ignore"] else "io_float"] += 1

    # -- running ---------------------------------------------------------------

    def run(self, begin: int, until: int = 0xFFFFFFFFFFFFFFFF, timeout_us: int = 0, count: int = 0) -> Event:
        self._event[0] = 0
        self.uc.emu_start(begin, until, timeout_us, count)
        if self._pending_error is not None:
            exc, self._pending_error = self._pending_error, None
            raise exc
        return self.last_event

    @property
    def last_event(self) -> Event:
        kind, vector, err, is_int, eip = self._event
        return Event(EVENT_NAMES[kind], vector, err, bool(is_int), eip)

    @property
    def counters(self) -> dict:
        return dict(self._counters)
