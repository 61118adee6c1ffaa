"""Names shared by the native CPU adapter and its pure-Python twin."""

from __future__ import annotations

from typing import NamedTuple

# Index = the EV_* constant in cpu.pxd.
EVENT_NAMES = ("none", "exception", "softint", "handler-stop", "handler-error")

# Name -> the PORT_* constant in cpu.pxd.
PORT_ACTIONS = {"float": 0, "ignore": 1, "python": 2}

# Index = the C_* constant in cpu.pxd.
COUNTER_NAMES = (
    "exceptions",   # CPU exceptions seen by the interrupt hook
    "softints",     # int n / int3 / into seen by the interrupt hook
    "resets",       # old_exception resets (U4)
    "io_python",    # IN/OUT dispatched to the Python port handlers
    "io_float",     # IN/OUT to unclaimed ports (floating bus)
    "io_ignored",   # IN/OUT to ports claimed as no-ops
    "vec_python",   # vectors dispatched to a Python handler
)


class Event(NamedTuple):
    """Why the last run ended."""

    kind: str         # one of EVENT_NAMES
    vector: int       # interrupt-hook vector (valid for exception/softint/handler-*)
    error_code: int   # error code for the vectors that push one, else 0
    is_int: bool      # True for int n / int3 / into
    eip: int          # EIP at the event: a fault's own instruction, past an int n


def has_error_code(vector: int) -> bool:
    """#DF, #TS, #NP, #SS, #GP, #PF and #AC push an error code."""
    return vector == 8 or 10 <= vector <= 14 or vector == 17
