"""Pure-Python twin of _native/blocks.pyx (same interface, same counts)."""

from __future__ import annotations

from unicorn import UC_HOOK_BLOCK


class BlockCounter:
    native = False

    def __init__(self, uc, begin: int, end: int, count_fn):
        self.count_fn = count_fn
        self.pending_error = None
        self._enabled = False
        self._stop = False
        self._cache: dict[tuple[int, int], int] = {}
        self.instructions = 0
        self.alt_instructions = 0
        self.marks = 0
        self.blocks = 0
        self.misses = 0
        self._hook = uc.hook_add(UC_HOOK_BLOCK, self._on_block, None, begin, end)

    def _on_block(self, uc, address, size, _ud):
        if self._stop:
            self._stop = False
            uc.emu_stop()
        if not self._enabled:
            return
        self.blocks += 1
        key = (address, size)
        n = self._cache.get(key)
        if n is None:
            self.misses += 1
            n = int(self.count_fn(address, size))
            self._cache[key] = n
        if n & 0x2000000:
            self.alt_instructions += n & 0xFFFFFF
        else:
            self.instructions += n & 0xFFFFFF
        if n & 0x1000000:
            self.marks += 1

    def enable(self, on: bool) -> None:
        self._enabled = bool(on)

    def request_stop(self, on: bool = True) -> None:
        self._stop = bool(on)

    def forget(self) -> None:
        self._cache.clear()
