"""The device interface: port bus dispatch, floating bus, IRQ lines, snapshot dicts."""

import json
from dataclasses import dataclass
from typing import Optional

import pytest

from devices.base import (
    Device, DeviceState, IrqLine, PortBus, PortConflictError, SnapshotFormatError,
    SnapshotVersionError,
)


class Latch(Device):
    """A byte-wide register file: writes stored per offset, reads return them."""

    name = "latch"

    def __init__(self, count=4):
        super().__init__()
        self.regs = [0] * count
        self.log_ = []

    def io_read(self, offset, size):
        self.log_.append(("r", offset, size))
        return self.regs[offset]

    def io_write(self, offset, size, value):
        self.log_.append(("w", offset, size, value))
        self.regs[offset] = value


def test_dispatch_uses_offsets_from_the_base():
    bus = PortBus()
    dev = Latch()
    bus.register(dev, 0x300, 4)
    bus.write(0x302, 1, 0xAB)
    assert dev.regs == [0, 0, 0xAB, 0]
    assert bus.read(0x302, 1) == 0xAB
    assert dev.log_[0] == ("w", 2, 1, 0xAB)


def test_overlapping_ranges_are_refused_with_both_names():
    bus = PortBus()
    bus.register(Latch(), 0x300, 4)
    other = Latch()
    other.name = "other"
    with pytest.raises(PortConflictError, match=r"other.*0x0302.*overlap.*latch"):
        bus.register(other, 0x302, 2)
    bus.register(other, 0x304, 2)  # adjacent is fine
    assert bus.ranges() == [(0x300, 4, "latch"), (0x304, 2, "other")]


def test_range_outside_port_space_is_refused():
    with pytest.raises(PortConflictError):
        PortBus().register(Latch(), 0xFFFF, 2)


@pytest.mark.parametrize("size,value", [(1, 0xFF), (2, 0xFFFF), (4, 0xFFFFFFFF)])
def test_unmapped_ports_float_high_and_are_counted(size, value):
    bus = PortBus()
    assert bus.read(0x1234, size) == value
    bus.write(0x1234, size, 0)
    assert bus.unhandled_reads[0x1234] == 1
    assert bus.unhandled_writes[0x1234] == 1


def test_wide_access_to_byte_device_is_split_low_byte_first():
    # "out dx, ax" to an 8-bit card: the bus writes port then port+1.
    bus = PortBus()
    dev = Latch()
    bus.register(dev, 0x3D4, 2)
    bus.write(0x3D4, 2, 0x0E0F)
    assert dev.log_ == [("w", 0, 1, 0x0F), ("w", 1, 1, 0x0E)]
    assert bus.read(0x3D4, 2) == 0x0E0F


def test_split_access_straddling_a_hole_floats_the_missing_lane():
    bus = PortBus()
    dev = Latch(1)
    bus.register(dev, 0x80, 1)
    dev.regs[0] = 0x12
    assert bus.read(0x80, 2) == 0xFF12
    assert bus.read(0x7F, 4) == 0xFFFF12FF


def test_device_that_decodes_wide_accesses_gets_them_whole():
    class Wide(Latch):
        io_widths = (1, 2, 4)

    bus = PortBus()
    dev = Wide(1)
    bus.register(dev, 0xF4, 1)
    bus.write(0xF4, 4, 0xDEADBEEF)
    assert dev.log_ == [("w", 0, 4, 0xDEADBEEF)]


def test_default_device_handlers_never_raise():
    dev = Device()
    assert dev.io_read(3, 2) == 0xFFFF
    dev.io_write(3, 1, 0)
    assert sum(dev.oddities.values()) == 2


def test_irq_line_levels_and_pulse():
    seen = []
    line = IrqLine(seen.append, "irq5")
    line.raise_()
    line.lower()
    line.pulse()
    assert seen == [True, False, True, False]
    assert line.level is False


@dataclass
class Inner(DeviceState):
    KIND = "inner"
    VERSION = 1
    data: bytes
    flag: bool


@dataclass
class Outer(DeviceState):
    KIND = "outer"
    VERSION = 3
    count: int
    maybe: Optional[int]
    items: list[Inner]
    name: str


def _outer():
    return Outer(count=7, maybe=None, items=[Inner(b"\x00\xff", True), Inner(b"", False)], name="x")


def test_state_round_trips_through_json():
    state = _outer()
    d = json.loads(json.dumps(state.to_dict()))
    assert d["version"] == 3 and d["items"][0]["data"] == "00ff"
    assert Outer.from_dict(d) == state


def test_state_of_another_version_is_refused():
    d = _outer().to_dict()
    d["version"] = 2
    with pytest.raises(SnapshotVersionError, match="version 2.*version 3"):
        Outer.from_dict(d)


def test_state_of_another_device_or_with_bad_fields_is_refused():
    d = _outer().to_dict()
    with pytest.raises(SnapshotFormatError, match="not 'inner'"):
        Inner.from_dict(d)
    bad = dict(d, count="7")
    with pytest.raises(SnapshotFormatError, match="expected an int"):
        Outer.from_dict(bad)
    missing = dict(d)
    del missing["name"]
    with pytest.raises(SnapshotFormatError, match="missing"):
        Outer.from_dict(missing)
    with pytest.raises(SnapshotFormatError, match="unknown"):
        Outer.from_dict(dict(d, extra=1))
