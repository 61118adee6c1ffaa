"""Stores into the generated block, as the reference sees them while it steps.

Two cases have no hardware answer from the reference (docs/fuzzing.md):

* an instruction that overwrites its own bytes (a ``rep stos`` over itself):
  QEMU re-decodes it mid-way, the CPU finishes the instruction it fetched;
* a store that crosses a page boundary into the block: when the block runs as
  one Unicorn translation block (DE, whole-block runs), Unicorn invalidates
  it in the middle of the store and runs the store again
  (``UNICORN_DEPARTURES["smc-cross-page"]``).

A ``rep`` string store into a later instruction of the block is answered
(a rep ends Unicorn's translation block); it found the BT bug
``rep-smc-stale`` (fixed: docs/fuzzing.md).

A store into the translation block the reference is executing (the
instructions up to the next control transfer) makes no progress at all:
Unicorn restarts the instruction without finishing it, every time.  The step
loops notice that (EIP and ECX unchanged after a step) and end the run.
"""

from __future__ import annotations

from unicorn import UC_HOOK_MEM_WRITE


class SmcWatch:
    def __init__(self, uc, lo: int, hi: int, bt: bool):
        self.lo, self.hi, self.bt = lo, hi, bt
        self.step_lin = 0
        self.insn = None
        self.unsupported: str | None = None
        uc.hook_add(UC_HOOK_MEM_WRITE, self._on_write, None, max(0, lo - 16), hi)

    def step(self, linear: int, insn) -> None:
        self.step_lin, self.insn = linear, insn

    def _on_write(self, uc, access, address, size, value, _):
        end = address + size
        if end <= self.lo or address >= self.hi:
            return
        insn = self.insn
        length = insn.length if insn is not None and insn.ok else 1
        if address < self.step_lin + length and end > self.step_lin:
            self.unsupported = "an instruction overwrote its own bytes (QEMU re-decodes it, the CPU does not)"
        elif address >> 12 != (end - 1) >> 12:
            self.unsupported = ("a store crossing a page boundary into the block (Unicorn runs it twice "
                                "inside a translation block it modifies)")
