"""Find where Unicorn keeps the exception bookkeeping inside a CPU context.

Unicorn delivers exceptions to ``UC_HOOK_INTR`` without their error code and
never clears the CPU's ``old_exception`` field (unicorn-facts U3 and U4).  Both
live in the context blob that ``uc_context_save`` copies out of the CPU, at
offsets that depend on how that Unicorn build laid out its CPU structure.  The
monitor never hard-codes them: at start-up it provokes known exceptions on a
scratch engine and diffs the blobs.

* ``error_code``      - the int that becomes the known #GP error code (a
                         selector loaded from memory, so no register holds it);
* ``old_exception``   - the int that is -1 before the first fault and 13 after;
* ``exception_is_int``- the int that is 0 after a fault and 1 after ``int n``
                         (it tells a #GP from ``int 0x0d``).

Each must be found exactly once, then the layout is verified by using it: with
``old_exception`` reset after each fault, four faults in a row stay #GP (13)
instead of turning into a double fault (8).
"""

from __future__ import annotations

import ctypes
import struct
from dataclasses import dataclass

from unicorn import UC_ARCH_X86, UC_HOOK_INTR, UC_MODE_32, Uc
from unicorn.x86_const import (
    UC_X86_REG_CR0,
    UC_X86_REG_CS,
    UC_X86_REG_DS,
    UC_X86_REG_GDTR,
    UC_X86_REG_SS,
)


class CalibrationError(RuntimeError):
    """This Unicorn build does not behave as hybrid86 was built to expect."""


@dataclass(frozen=True)
class ContextLayout:
    """Byte offsets inside a ``uc_context`` (from the start of the allocation)."""

    size: int              # uc_context_size() of the engine
    old_exception: int     # int32: last exception, -1 when none pending
    error_code: int        # int32: error code of the last exception
    exception_is_int: int  # int32: 1 when the last event was a software int n

    def as_dict(self) -> dict:
        return {
            "size": self.size,
            "old_exception": self.old_exception,
            "error_code": self.error_code,
            "exception_is_int": self.exception_is_int,
        }


# Selectors whose #GP error codes are distinctive: index 0x247 and 0x1A5,
# far beyond the 3-entry scratch GDT, TI=0, RPL cleared by the CPU.
_PROBE_SELECTORS = (0x1238, 0x0D28)
_CODE, _STACK, _GDT, _SELECTOR_SLOT = 0x2000, 0x8000, 0x1000, 0x3000


def _descriptor(base: int, limit: int, access: int, flags: int) -> bytes:
    return struct.pack(
        "<HHBBBB",
        limit & 0xFFFF,
        base & 0xFFFF,
        (base >> 16) & 0xFF,
        access,
        ((limit >> 16) & 0xF) | (flags << 4),
        base >> 24,
    )


def _scratch_engine() -> Uc:
    """A flat 32-bit protected-mode engine with a 3-entry GDT."""
    uc = Uc(UC_ARCH_X86, UC_MODE_32)
    uc.mem_map(0, 0x10000)
    gdt = bytes(8) + _descriptor(0, 0xFFFFF, 0x9A, 0xC) + _descriptor(0, 0xFFFFF, 0x92, 0xC)
    uc.mem_write(_GDT, gdt)
    uc.reg_write(UC_X86_REG_GDTR, (0, _GDT, len(gdt) - 1, 0))
    uc.reg_write(UC_X86_REG_CR0, 1)
    uc.reg_write(UC_X86_REG_CS, 0x08)
    uc.reg_write(UC_X86_REG_SS, 0x10)
    uc.reg_write(UC_X86_REG_DS, 0x10)
    return uc


def _blob(uc: Uc, ctx) -> tuple[int, ...]:
    uc.context_update(ctx)
    raw = ctypes.string_at(ctx.context, ctx.size)
    return struct.unpack_from("<%di" % (len(raw) // 4), raw)


def _run_until_event(uc: Uc, code: bytes) -> list[int]:
    uc.mem_write(_CODE, code)
    events: list[int] = []

    def on_intr(uc_, intno, _ud):
        events.append(intno)
        uc_.emu_stop()

    h = uc.hook_add(UC_HOOK_INTR, on_intr)
    try:
        uc.emu_start(_CODE, _CODE + len(code), count=16)
    finally:
        uc.hook_del(h)
    return events


def _one(candidates: list[int], what: str) -> int:
    if len(candidates) != 1:
        raise CalibrationError(
            f"calibration of the Unicorn context layout failed: expected exactly one "
            f"offset for {what}, found {len(candidates)} ({candidates[:8]}). "
            f"hybrid86 supports unicorn==2.1.4; run tests/test_unicorn_contract.py "
            f"against this build."
        )
    return candidates[0] * 4


def calibrate() -> ContextLayout:
    """Find the offsets by provoking faults on a scratch engine."""
    found_error: set[int] | None = None
    found_old: set[int] | None = None
    size = 0
    for selector in _PROBE_SELECTORS:
        uc = _scratch_engine()
        ctx = uc.context_save()
        size = ctx.size
        before = _blob(uc, ctx)
        uc.mem_write(_SELECTOR_SLOT, struct.pack("<H", selector))
        # mov ds, word [0x3000]  -> #GP(selector & ~3)
        events = _run_until_event(uc, bytes.fromhex("8e1d") + struct.pack("<I", _SELECTOR_SLOT))
        if events != [13]:
            raise CalibrationError(
                f"calibration: loading selector {selector:#x} beyond the GDT gave "
                f"events {events}, expected one #GP (13)"
            )
        after = _blob(uc, ctx)
        err = {i for i, (a, b) in enumerate(zip(before, after)) if a == 0 and b == (selector & ~3)}
        old = {i for i, (a, b) in enumerate(zip(before, after)) if a == -1 and b == 13}
        found_error = err if found_error is None else found_error & err
        found_old = old if found_old is None else found_old & old
    error_code = _one(sorted(found_error or ()), "the error code")
    old_exception = _one(sorted(found_old or ()), "old_exception")

    # int 0x41 sets exception_is_int; a #GP leaves it 0.
    uc = _scratch_engine()
    ctx = uc.context_save()
    before = _blob(uc, ctx)
    if _run_until_event(uc, bytes.fromhex("cd41")) != [0x41]:
        raise CalibrationError("calibration: int 0x41 did not reach the interrupt hook")
    after = _blob(uc, ctx)
    is_int = _one(
        [i for i, (a, b) in enumerate(zip(before, after)) if a == 0 and b == 1 and i * 4 > error_code - 64 and i * 4 < error_code + 64],
        "exception_is_int (near the error code)",
    )
    layout = ContextLayout(size, old_exception, error_code, is_int)
    verify(layout)
    return layout


def context_address(ctx) -> int:
    """Address of a UcContext's C allocation (its ``context`` is a c_void_p)."""
    return ctx.context.value


def verify(layout: ContextLayout) -> None:
    """Use the layout: with the reset, repeated faults stay #GP (U4)."""
    from unicorn.x86_const import UC_X86_REG_EIP

    uc = _scratch_engine()
    uc.mem_write(_SELECTOR_SLOT, struct.pack("<H", _PROBE_SELECTORS[0]))
    fault = bytes.fromhex("8e1d") + struct.pack("<I", _SELECTOR_SLOT)  # mov ds,[slot]
    code = fault * 4
    uc.mem_write(_CODE, code)
    ctx = uc.context_save()
    seen: list[int] = []

    def on_intr(uc_, intno, _ud):
        seen.append(intno)
        uc_.context_update(ctx)
        blob = (ctypes.c_char * layout.size).from_address(context_address(ctx))
        struct.pack_into("<i", blob, layout.old_exception, -1)
        uc_.context_restore(ctx)
        uc_.reg_write(UC_X86_REG_EIP, uc_.reg_read(UC_X86_REG_EIP) + len(fault))

    h = uc.hook_add(UC_HOOK_INTR, on_intr)
    try:
        uc.emu_start(_CODE, _CODE + len(code), count=32)
    finally:
        uc.hook_del(h)
    if seen != [13, 13, 13, 13]:
        raise CalibrationError(
            f"calibration: with old_exception reset at offset {layout.old_exception}, "
            f"four faults gave vectors {seen}, expected [13, 13, 13, 13]"
        )
