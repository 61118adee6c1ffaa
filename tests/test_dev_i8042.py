"""8042 keyboard controller, PS/2 keyboard, port 0x92 and the A20 gate, through their ports."""

import json

import pytest

from devices.base import PortBus
from devices.clock import VirtualClock
from devices.i8042 import KBD_BYTE_NS, I8042, KbcState
from devices.port92 import A20Gate, Port92, Port92State
from devices.scancodes import UnknownKeyError, make_set1
from irqprobe import Irq


@pytest.fixture
def m():
    clock = VirtualClock()
    bus = PortBus()
    irq = Irq()
    events = {"a20": [], "reset": 0}

    def on_reset():
        events["reset"] += 1

    kbc = bus.attach(I8042(clock, irq, on_a20=events["a20"].append, on_reset=on_reset))
    return clock, bus, kbc, irq, events


def cmd(bus, value):
    bus.write(0x64, 1, value)


def read_data(bus):
    assert bus.read(0x64, 1) & 0x01, "output buffer empty"
    return bus.read(0x60, 1)


def drain(clock, bus):
    """Read every byte the guest would see, waiting the transfer time between them."""
    out = []
    for _ in range(1000):
        if not bus.read(0x64, 1) & 0x01:
            clock.advance_by(KBD_BYTE_NS)
            if not bus.read(0x64, 1) & 0x01:
                break
        out.append(bus.read(0x60, 1))
    return out


def test_self_test_and_interface_tests(m):
    _, bus, _, _, _ = m
    cmd(bus, 0xAA)
    status = bus.read(0x64, 1)
    assert status & 0x01 and status & 0x04 and status & 0x08  # OBF, SYS, A2 (command)
    assert read_data(bus) == 0x55
    assert not bus.read(0x64, 1) & 0x01
    cmd(bus, 0xAB)
    assert read_data(bus) == 0x00
    cmd(bus, 0xA9)
    assert read_data(bus) == 0x00


def test_command_byte_round_trip_and_ram(m):
    _, bus, kbc, _, _ = m
    cmd(bus, 0x20)
    assert read_data(bus) == 0x45
    cmd(bus, 0x60)
    bus.write(0x60, 1, 0x65)
    assert not bus.read(0x64, 1) & 0x08  # A2 cleared by the data write
    cmd(bus, 0x20)
    assert read_data(bus) == 0x65
    cmd(bus, 0x7F)
    bus.write(0x60, 1, 0x5A)
    cmd(bus, 0x3F)
    assert read_data(bus) == 0x5A
    cmd(bus, 0xA7)
    cmd(bus, 0xAD)
    assert kbc.command_byte == 0x65 | 0x10  # aux (bit 5, already set) and keyboard disabled
    cmd(bus, 0xA8)
    cmd(bus, 0xAE)
    assert kbc.command_byte == 0x45


def test_a20_through_output_port_and_shortcuts(m):
    _, bus, kbc, _, events = m
    cmd(bus, 0xD0)
    assert read_data(bus) & 0x03 == 0x03  # A20 on, reset line high
    cmd(bus, 0xD1)
    bus.write(0x60, 1, 0xDD)  # the classic "A20 off" output port value
    assert events["a20"] == [False] and not kbc.a20
    cmd(bus, 0xD1)
    bus.write(0x60, 1, 0xDF)
    assert events["a20"] == [False, True]
    cmd(bus, 0xDD)
    cmd(bus, 0xDF)
    assert events["a20"] == [False, True, False, True]
    assert events["reset"] == 0


def test_system_reset_by_pulse_and_output_port(m):
    _, bus, kbc, _, events = m
    cmd(bus, 0xFE)
    assert events["reset"] == 1
    cmd(bus, 0xFF)  # pulses nothing
    assert events["reset"] == 1
    cmd(bus, 0xD1)
    bus.write(0x60, 1, 0xDE)  # bit 0 = 0: reset
    assert events["reset"] == 2


def test_typed_text_arrives_as_set1_scancodes_with_irq1(m):
    clock, bus, kbc, irq, _ = m
    kbc.type_text("Hi!\n")
    assert irq.level
    got = drain(clock, bus)
    assert got == [
        0x2A, 0x23, 0xA3, 0xAA,  # Shift down, H, H up, Shift up
        0x17, 0x97,              # i
        0x2A, 0x02, 0x82, 0xAA,  # Shift + 1
        0x1C, 0x9C,              # Enter
    ]
    assert irq.rising == len(got)  # one IRQ1 edge per byte
    assert not irq.level


def test_special_keys(m):
    clock, bus, kbc, _, _ = m
    for key in ("Esc", "Backspace", "Tab", "F1", "F12", "Up", "Left"):
        kbc.press(key)
    assert drain(clock, bus) == [
        0x01, 0x81, 0x0E, 0x8E, 0x0F, 0x8F, 0x3B, 0xBB, 0x58, 0xD8,
        0xE0, 0x48, 0xE0, 0xC8, 0xE0, 0x4B, 0xE0, 0xCB,
    ]
    assert make_set1("a") == b"\x1e"
    with pytest.raises(UnknownKeyError):
        kbc.type_text("é")


def test_translation_off_gives_raw_set2(m):
    clock, bus, kbc, _, _ = m
    cmd(bus, 0x60)
    bus.write(0x60, 1, 0x05)  # IRQ1 + SYS, no translation
    kbc.press("a")
    kbc.press("Up")
    assert drain(clock, bus) == [0x1C, 0xF0, 0x1C, 0xE0, 0x75, 0xE0, 0xF0, 0x75]


def test_keyboard_commands_are_acked(m):
    clock, bus, kbc, _, _ = m
    bus.write(0x60, 1, 0xFF)
    assert drain(clock, bus) == [0xFA, 0xAA]
    bus.write(0x60, 1, 0xF2)  # identify: ID 0xAB 0x83, translated to 0xAB 0x41
    assert drain(clock, bus) == [0xFA, 0xAB, 0x41]
    bus.write(0x60, 1, 0xED)
    bus.write(0x60, 1, 0x04)  # Caps Lock LED
    assert drain(clock, bus) == [0xFA, 0xFA]
    assert kbc.leds == 0x04
    bus.write(0x60, 1, 0xF3)
    bus.write(0x60, 1, 0x00)
    assert drain(clock, bus) == [0xFA, 0xFA]
    bus.write(0x60, 1, 0xEE)
    assert drain(clock, bus) == [0xEE]
    bus.write(0x60, 1, 0xF0)
    bus.write(0x60, 1, 0x00)  # get: ACK, ACK of the parameter, set 2 (translated to 0x41)
    assert drain(clock, bus) == [0xFA, 0xFA, 0x41]
    bus.write(0x60, 1, 0xF0)
    bus.write(0x60, 1, 0x03)  # set 3 is refused
    assert drain(clock, bus) == [0xFA, 0xFE]
    bus.write(0x60, 1, 0x12)  # not a command
    assert drain(clock, bus) == [0xFE]


def test_scanning_disabled_drops_keys(m):
    clock, bus, kbc, _, _ = m
    bus.write(0x60, 1, 0xF5)
    assert drain(clock, bus) == [0xFA]
    kbc.press("a")
    assert drain(clock, bus) == [] and kbc.dropped_keys == 2  # make and break
    bus.write(0x60, 1, 0xF4)
    kbc.press("a")
    assert drain(clock, bus) == [0xFA, 0x1E, 0x9E]


def test_scan_code_set_1_without_translation(m):
    clock, bus, kbc, _, _ = m
    cmd(bus, 0x60)
    bus.write(0x60, 1, 0x01)
    bus.write(0x60, 1, 0xF0)
    bus.write(0x60, 1, 0x01)
    assert drain(clock, bus) == [0xFA, 0xFA]
    kbc.press("Down")
    assert drain(clock, bus) == [0xE0, 0x50, 0xE0, 0xD0]


def test_irq1_disabled_still_fills_the_buffer(m):
    clock, bus, kbc, irq, _ = m
    cmd(bus, 0x60)
    bus.write(0x60, 1, 0x44)  # translation + SYS, no IRQ1
    kbc.press("a")
    assert bus.read(0x64, 1) & 0x01 and not irq.level and irq.rising == 0
    assert bus.read(0x60, 1) == 0x1E


def test_disabled_keyboard_interface_holds_bytes(m):
    clock, bus, kbc, _, _ = m
    cmd(bus, 0xAD)
    kbc.press("b")
    assert not bus.read(0x64, 1) & 0x01
    cmd(bus, 0xAE)
    assert drain(clock, bus) == [0x30, 0xB0]


def test_second_read_in_the_same_handler_sees_the_same_byte(m):
    clock, bus, kbc, _, _ = m
    kbc.press("a")
    assert bus.read(0x60, 1) == 0x1E
    assert bus.read(0x60, 1) == 0x1E  # the next byte is still on the wire
    assert not bus.read(0x64, 1) & 0x01
    clock.advance_by(KBD_BYTE_NS)
    assert bus.read(0x64, 1) & 0x01
    assert bus.read(0x60, 1) == 0x9E


def test_absent_mouse_times_out(m):
    clock, bus, kbc, _, _ = m
    cmd(bus, 0xD3)
    bus.write(0x60, 1, 0x5A)  # aux loopback
    status = bus.read(0x64, 1)
    assert status & 0x21 == 0x21
    assert bus.read(0x60, 1) == 0x5A
    cmd(bus, 0xD4)
    bus.write(0x60, 1, 0xFF)
    status = bus.read(0x64, 1)
    assert status & 0x61 == 0x61  # OBF, AUXB, timeout
    assert bus.read(0x60, 1) == 0xFE


def test_snapshot_keeps_queued_scancodes_and_buffer(m):
    clock, bus, kbc, irq, _ = m
    kbc.type_text("ok")
    assert bus.read(0x60, 1) == 0x18  # 'o' make read; 'o' break and 'k' queued
    clock.advance_by(KBD_BYTE_NS)
    cmd(bus, 0x60)  # a controller command waiting for its data byte
    data = json.loads(json.dumps(kbc.save().to_dict()))

    clock2 = VirtualClock(clock.now_ns)
    bus2 = PortBus()
    irq2 = Irq()
    a20 = []
    kbc2 = bus2.attach(I8042(clock2, irq2, on_a20=a20.append))
    kbc2.restore(KbcState.from_dict(data))
    assert a20 == [True]  # the A20 output is re-announced
    bus2.write(0x60, 1, 0x45)  # completes the pending command-byte write
    assert kbc2.command_byte == 0x45
    assert drain(clock2, bus2) == [0x98, 0x25, 0xA5]


def test_port92_fast_a20_and_reset():
    bus = PortBus()
    a20, resets = [], []
    p92 = bus.attach(Port92(on_a20=a20.append, on_reset=lambda: resets.append(1)))
    bus.write(0x92, 1, 0x02)
    assert a20 == [True] and bus.read(0x92, 1) == 0x02
    bus.write(0x92, 1, 0x03)  # bit 0: 0 -> 1 resets
    assert resets == [1]
    bus.write(0x92, 1, 0x03)  # no new transition
    assert resets == [1]
    bus.write(0x92, 1, 0x00)
    assert a20 == [True, False]
    bus.write(0x92, 1, 0x02)
    data = json.loads(json.dumps(p92.save().to_dict()))
    a20b = []
    p92b = Port92(on_a20=a20b.append)
    p92b.restore(Port92State.from_dict(data))
    assert a20b == [True] and p92b.io_read(0, 1) == 0x02


def test_a20_gate_ors_the_keyboard_controller_and_port92():
    changes = []
    gate = A20Gate(changes.append)
    clock = VirtualClock()
    bus = PortBus()
    bus.attach(I8042(clock, on_a20=gate.source("kbc")))
    bus.attach(Port92(on_a20=gate.source("port92")))
    cmd(bus, 0xDF)  # already on in the output port: no change reported
    cmd(bus, 0xDD)
    assert changes == []
    bus.write(0x92, 1, 0x02)
    assert changes == [True]
    cmd(bus, 0xDF)
    bus.write(0x92, 1, 0x00)
    assert changes == [True]  # the 8042 still holds A20 on
    cmd(bus, 0xDD)
    assert changes == [True, False] and not gate.enabled
