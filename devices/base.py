"""The device interface, the I/O port bus, IRQ lines and snapshot state.

Everything a PC device needs to plug into the monitor, and nothing more:

* ``Device``: a chip behind a range of I/O ports.  It sees *offsets* relative to
  the base port it was registered at, never absolute ports, so one UART class
  serves COM1..COM4.  ``reset()`` puts it in its power-on state, ``save()``
  returns a versioned dataclass and ``restore()`` takes one back.
* ``PortBus``: the ISA I/O space.  It refuses overlapping registrations (a host
  wiring error, raised) but never raises for guest behaviour: an unmapped port
  reads as a floating bus (all ones) and swallows writes, both counted per
  port.  A wide access to a device that only decodes byte accesses is split
  into byte accesses on consecutive ports, as the ISA bus does for an 8-bit
  card.
* ``IrqLine``: one interrupt request wire, driven by a level (``True`` =
  asserted).  Devices receive a plain callable ``irq(level)``; ``IrqLine`` is
  such a callable with ``raise_()``, ``lower()`` and ``pulse()`` helpers.
* ``DeviceState``: the base of every snapshot dataclass.  Fields are named,
  typed (``int``, ``bool``, ``str``, ``bytes``, ``list[...]``, nested states,
  ``Optional``), and converted to and from a JSON-safe dict (bytes as hex).  A
  dict of another version or another device is refused with
  ``SnapshotVersionError`` / ``SnapshotFormatError``.

Host resources (image files, console writers, IRQ callbacks, the clock) are
constructor arguments and are never part of a snapshot.  Restoring a machine:
restore the ``VirtualClock`` first (it drops every scheduled event), then the
devices (each one reschedules its own timers from its saved state).
"""

from __future__ import annotations

import dataclasses
import logging
import typing
from collections import Counter
from typing import Any, Callable, ClassVar

log = logging.getLogger("hybrid86.devices.bus")

#: Value a floating ISA data bus reads as, by access size in bytes.
FLOATING_BUS = {1: 0xFF, 2: 0xFFFF, 4: 0xFFFFFFFF}

#: Mask of an access of each size.
SIZE_MASK = FLOATING_BUS


# --------------------------------------------------------------------------
# Errors.  Host/monitor failures raise these; guest behaviour never does.
# --------------------------------------------------------------------------


class DeviceError(Exception):
    """Base of every error raised by ``devices/`` (host-side failures only)."""


class PortConflictError(DeviceError):
    """Two devices were registered on overlapping port ranges."""


class SnapshotError(DeviceError):
    """A snapshot cannot be restored into this device."""


class SnapshotVersionError(SnapshotError):
    """A snapshot was written by another version of a device's state."""


class SnapshotFormatError(SnapshotError):
    """A snapshot dict is malformed (wrong device, missing or mistyped field)."""


# --------------------------------------------------------------------------
# Snapshot state
# --------------------------------------------------------------------------


class DeviceState:
    """Base class of the per-device snapshot dataclasses.

    Subclasses are ``@dataclass`` classes with two class constants:
    ``KIND`` (the device's name, checked on restore) and ``VERSION`` (bumped
    whenever a field changes meaning, is added or removed).  ``to_dict()``
    gives a JSON-safe dict; ``from_dict()`` checks kind, version and every
    field's type before building the object.
    """

    KIND: ClassVar[str] = "device"
    VERSION: ClassVar[int] = 1

    def to_dict(self) -> dict:
        hints = _hints(type(self))
        out: dict[str, Any] = {"kind": self.KIND, "version": self.VERSION}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            out[f.name] = _encode(hints[f.name], getattr(self, f.name), f.name)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "DeviceState":
        if not isinstance(data, dict):
            raise SnapshotFormatError(f"{cls.KIND}: snapshot is a {type(data).__name__}, not a dict")
        kind = data.get("kind")
        if kind != cls.KIND:
            raise SnapshotFormatError(f"snapshot is for device {kind!r}, not {cls.KIND!r}")
        version = data.get("version")
        if version != cls.VERSION:
            raise SnapshotVersionError(
                f"{cls.KIND}: snapshot has state version {version!r}, this build reads version "
                f"{cls.VERSION} only"
            )
        hints = _hints(cls)
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        extra = set(data) - names - {"kind", "version"}
        if extra:
            raise SnapshotFormatError(f"{cls.KIND}: unknown snapshot fields {sorted(extra)}")
        kwargs = {}
        for name in names:
            if name not in data:
                raise SnapshotFormatError(f"{cls.KIND}: snapshot field {name!r} is missing")
            kwargs[name] = _decode(hints[name], data[name], f"{cls.KIND}.{name}")
        return cls(**kwargs)


_HINT_CACHE: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    hints = _HINT_CACHE.get(cls)
    if hints is None:
        # Each class's annotations resolve in its own module's namespace.
        hints = typing.get_type_hints(cls)
        _HINT_CACHE[cls] = hints
    return hints


def _encode(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin is typing.Union:  # Optional[X]
        if value is None:
            return None
        (inner,) = [a for a in typing.get_args(tp) if a is not type(None)]
        return _encode(inner, value, where)
    if origin is list:
        (inner,) = typing.get_args(tp)
        return [_encode(inner, v, where) for v in value]
    if tp is bytes:
        return bytes(value).hex()
    if isinstance(tp, type) and issubclass(tp, DeviceState):
        return value.to_dict()
    if tp in (int, bool, str, float):
        return value
    raise TypeError(f"snapshot field {where}: unsupported type {tp!r}")


def _decode(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin is typing.Union:
        if value is None:
            return None
        (inner,) = [a for a in typing.get_args(tp) if a is not type(None)]
        return _decode(inner, value, where)
    if origin is list:
        (inner,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise SnapshotFormatError(f"{where}: expected a list, got {type(value).__name__}")
        return [_decode(inner, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if tp is bytes:
        if not isinstance(value, str):
            raise SnapshotFormatError(f"{where}: expected a hex string, got {type(value).__name__}")
        try:
            return bytes.fromhex(value)
        except ValueError as exc:
            raise SnapshotFormatError(f"{where}: not hex: {exc}") from None
    if isinstance(tp, type) and issubclass(tp, DeviceState):
        return tp.from_dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise SnapshotFormatError(f"{where}: expected a bool, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SnapshotFormatError(f"{where}: expected an int, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise SnapshotFormatError(f"{where}: expected a string, got {value!r}")
        return value
    if tp is float:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise SnapshotFormatError(f"{where}: expected a number, got {value!r}")
        return float(value)
    raise TypeError(f"snapshot field {where}: unsupported type {tp!r}")


# --------------------------------------------------------------------------
# IRQ lines
# --------------------------------------------------------------------------

IrqCallback = Callable[[bool], None]


def no_irq(level: bool) -> None:
    """An IRQ output wired to nothing."""


class IrqLine:
    """One interrupt request wire, driven by level.

    ``line(True)`` asserts, ``line(False)`` deasserts; the receiver (the PIC)
    decides whether it reacts to the level or to the rising edge.  ``pulse()``
    is a rising edge followed at once by a falling one (what an 8254 in
    mode 2 does to IRQ0: its OUT pin is low for a single input clock).
    """

    __slots__ = ("_sink", "name", "level")

    def __init__(self, sink: IrqCallback, name: str = "irq") -> None:
        self._sink = sink
        self.name = name
        self.level = False

    def __call__(self, level: bool) -> None:
        self.level = bool(level)
        self._sink(self.level)

    def raise_(self) -> None:
        self(True)

    def lower(self) -> None:
        self(False)

    def pulse(self) -> None:
        self(True)
        self(False)

    def __repr__(self) -> str:
        return f"IrqLine({self.name}, level={self.level})"


# --------------------------------------------------------------------------
# Devices
# --------------------------------------------------------------------------


class Device:
    """A chip behind a range of I/O ports.

    Subclasses override ``io_read``/``io_write`` (offsets relative to the
    base port), ``reset``, ``save``/``restore`` and ``port_ranges``.  The
    defaults do nothing, read as a floating bus and count the access, so a
    device that leaves a register unimplemented never crashes the guest.

    ``io_widths`` lists the access sizes the device decodes itself; the bus
    splits any other access into single bytes on consecutive ports.
    """

    name: str = "device"
    io_widths: tuple[int, ...] = (1,)

    def __init__(self) -> None:
        self.log = logging.getLogger(f"hybrid86.devices.{self.name}")
        #: Guest oddities seen by this device (unknown commands, writes to
        #: read-only registers, ...), by short description.  Never snapshot.
        self.oddities: Counter[str] = Counter()

    # -- guest side --------------------------------------------------------

    def io_read(self, offset: int, size: int) -> int:
        self.oddity(f"read of unimplemented offset {offset:#x}")
        return FLOATING_BUS[size]

    def io_write(self, offset: int, size: int, value: int) -> None:
        self.oddity(f"write of unimplemented offset {offset:#x}")

    # -- lifecycle ---------------------------------------------------------

    def reset(self) -> None:
        """Return to the power-on state (the state after a hardware reset)."""

    def save(self) -> DeviceState | None:
        return None

    def restore(self, state: DeviceState | None) -> None:
        if state is not None:
            raise SnapshotFormatError(f"{self.name}: has no state to restore")

    def port_ranges(self) -> list[tuple["Device", int, int]]:
        """Where this device sits by default: ``[(device, base, count), ...]``.

        Chips with several non-contiguous port ranges return one
        ``PortWindow`` per range.
        """
        return []

    # -- helpers for subclasses ---------------------------------------------

    def oddity(self, what: str, loud: bool = False) -> None:
        """Count a guest oddity; log the first occurrence of each kind.

        ``loud`` is for guest-visible features that are not implemented: the
        first one is a warning, so a user sees why a guest misbehaves.
        """
        self.oddities[what] += 1
        if self.oddities[what] == 1:
            if loud:
                self.log.warning("%s: %s (not emulated)", self.name, what)
            else:
                self.log.debug("%s: %s", self.name, what)

    def _check_state(self, state: Any, cls: type) -> None:
        if not isinstance(state, cls):
            raise SnapshotFormatError(
                f"{self.name}: restore() needs a {cls.__name__}, got {type(state).__name__}"
            )


class PortWindow(Device):
    """One port range of a chip that decodes several non-contiguous ranges.

    The window forwards accesses (with its own offsets) to the owner's
    handlers.  It holds no state: the owning device saves and restores it.
    """

    def __init__(
        self,
        name: str,
        read: Callable[[int, int], int],
        write: Callable[[int, int, int], None],
        widths: tuple[int, ...] = (1,),
    ) -> None:
        self.name = name
        self.io_widths = widths
        super().__init__()
        self._read = read
        self._write = write

    def io_read(self, offset: int, size: int) -> int:
        return self._read(offset, size)

    def io_write(self, offset: int, size: int, value: int) -> None:
        self._write(offset, size, value)


class PortBus:
    """The ISA I/O port space (0x0000-0xFFFF)."""

    def __init__(self) -> None:
        # port -> (device, base): a dict lookup per access, no range search.
        self._map: dict[int, tuple[Device, int]] = {}
        self._ranges: list[tuple[int, int, Device]] = []
        #: Accesses to ports nobody decodes, per port (for ``--stats``).
        self.unhandled_reads: Counter[int] = Counter()
        self.unhandled_writes: Counter[int] = Counter()

    def register(self, device: Device, base: int, count: int) -> None:
        """Map ports ``base .. base+count-1`` to ``device`` (offsets 0..count-1)."""
        if count <= 0 or base < 0 or base + count > 0x10000:
            raise PortConflictError(
                f"{device.name}: port range {base:#x}+{count} is outside 0x0000-0xFFFF"
            )
        for start, n, other in self._ranges:
            if base < start + n and start < base + count:
                raise PortConflictError(
                    f"{device.name}: ports {base:#06x}-{base + count - 1:#06x} overlap "
                    f"{other.name} at {start:#06x}-{start + n - 1:#06x}"
                )
        self._ranges.append((base, count, device))
        for port in range(base, base + count):
            self._map[port] = (device, base)

    def attach(self, device: Device) -> Device:
        """Register every range ``device.port_ranges()`` names; returns the device."""
        for dev, base, count in device.port_ranges():
            self.register(dev, base, count)
        return device

    def device_at(self, port: int) -> Device | None:
        hit = self._map.get(port)
        return hit[0] if hit else None

    def ranges(self) -> list[tuple[int, int, str]]:
        """``(base, count, device name)`` of every registration, sorted by port."""
        return sorted((b, n, d.name) for b, n, d in self._ranges)

    def read(self, port: int, size: int) -> int:
        port &= 0xFFFF
        hit = self._map.get(port)
        if hit is None:
            if size != 1:
                # Each byte lane floats independently; a device may sit at port+1.
                return self._split_read(port, size)
            self.unhandled_reads[port] += 1
            if self.unhandled_reads[port] == 1:
                log.debug("read of unmapped port %#06x (floating bus)", port)
            return 0xFF
        device, base = hit
        if size not in device.io_widths:
            return self._split_read(port, size)
        return device.io_read(port - base, size) & SIZE_MASK[size]

    def write(self, port: int, size: int, value: int) -> None:
        port &= 0xFFFF
        value &= SIZE_MASK[size]
        hit = self._map.get(port)
        if hit is None:
            if size != 1:
                self._split_write(port, size, value)
                return
            self.unhandled_writes[port] += 1
            if self.unhandled_writes[port] == 1:
                log.debug("write %#04x to unmapped port %#06x ignored", value, port)
            return
        device, base = hit
        if size not in device.io_widths:
            self._split_write(port, size, value)
            return
        device.io_write(port - base, size, value)

    def _split_read(self, port: int, size: int) -> int:
        value = 0
        for i in range(size):
            value |= self.read((port + i) & 0xFFFF, 1) << (8 * i)
        return value

    def _split_write(self, port: int, size: int, value: int) -> None:
        # Low byte first, as the ISA bus converter does (this is what makes
        # "out dx, ax" to 0x3D4 write the index and then the data register).
        for i in range(size):
            self.write((port + i) & 0xFFFF, 1, (value >> (8 * i)) & 0xFF)

