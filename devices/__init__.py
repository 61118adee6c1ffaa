"""PC devices for hybrid86: pure Python, no CPU needed.

Each module emulates one chip behind the small interface in ``base.py``
(port handlers with offsets, IRQ lines, versioned snapshot state) and runs
on the ``VirtualClock`` in ``clock.py``.  See ``docs/devices.md``.
"""

from .base import (
    Device, DeviceError, DeviceState, IrqLine, PortBus, PortConflictError, PortWindow,
    SnapshotError, SnapshotFormatError, SnapshotVersionError,
)
from .clock import VirtualClock

__all__ = [
    "Device", "DeviceError", "DeviceState", "IrqLine", "PortBus", "PortConflictError",
    "PortWindow", "SnapshotError", "SnapshotFormatError", "SnapshotVersionError", "VirtualClock",
]
