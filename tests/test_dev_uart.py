"""16550A UART at COM1, driven through ports 0x3F8-0x3FF as a driver would."""

import json

import pytest

from devices.base import PortBus
from devices.clock import ClockState, VirtualClock
from devices.uart16550 import Uart16550, UartState
from irqprobe import Irq

B = 0x3F8
RBR, IER, IIR, FCR, LCR, MCR, LSR, MSR, SCR = B, B + 1, B + 2, B + 2, B + 3, B + 4, B + 5, B + 6, B + 7


@pytest.fixture
def m():
    clock = VirtualClock()
    bus = PortBus()
    irq = Irq()
    out = bytearray()
    uart = bus.attach(Uart16550(clock, irq, write=out.extend))
    return clock, bus, uart, irq, out


def setup_115200_8n1(bus):
    bus.write(LCR, 1, 0x80)  # DLAB
    bus.write(B, 1, 0x01)    # divisor 1 = 115200 baud
    bus.write(B + 1, 1, 0x00)
    bus.write(LCR, 1, 0x03)  # 8N1
    bus.write(MCR, 1, 0x0B)  # DTR, RTS, OUT2


def test_divisor_latch_and_scratch(m):
    _, bus, uart, _, _ = m
    bus.write(LCR, 1, 0x83)
    bus.write(B, 1, 0x0C)
    bus.write(B + 1, 1, 0x00)
    assert bus.read(B, 1) == 0x0C and bus.read(B + 1, 1) == 0
    bus.write(LCR, 1, 0x03)
    assert uart.baud() == 9600
    assert uart.char_time_ns() == 10 * 16 * 12 * 1_000_000_000 // 1_843_200  # 8N1 frame at 9600
    bus.write(SCR, 1, 0x5A)
    assert bus.read(SCR, 1) == 0x5A
    assert bus.read(IER, 1) == 0  # DLAB off: IER again


def test_transmit_goes_to_host_instantly(m):
    _, bus, _, _, out = m
    setup_115200_8n1(bus)
    for ch in b"hello":
        assert bus.read(LSR, 1) & 0x60 == 0x60  # THRE and TEMT
        bus.write(B, 1, ch)
    assert bytes(out) == b"hello"


def test_loopback_returns_bytes_and_modem_lines(m):
    _, bus, uart, irq, out = m
    setup_115200_8n1(bus)
    bus.write(MCR, 1, 0x1A)  # loop + RTS + OUT2 (Linux's autoconfig test)
    assert bus.read(MSR, 1) & 0xF0 == 0x90  # CTS (from RTS), DCD (from OUT2)
    bus.write(IER, 1, 0x01)
    bus.write(B, 1, 0x41)
    assert bytes(out) == b""  # loopback: nothing reaches the line
    assert bus.read(LSR, 1) & 0x01
    assert not irq.level  # OUT2 pin forced inactive in loopback
    assert bus.read(B, 1) == 0x41
    assert not bus.read(LSR, 1) & 0x01


def test_receive_data_interrupt_and_out2_gating(m):
    _, bus, uart, irq, _ = m
    setup_115200_8n1(bus)
    bus.write(MCR, 1, 0x03)  # OUT2 off: interrupt pending but the IRQ line is gated
    bus.write(IER, 1, 0x01)
    uart.feed(b"x")
    assert bus.read(IIR, 1) == 0x04 and not irq.level
    bus.write(MCR, 1, 0x0B)
    assert irq.level
    assert bus.read(B, 1) == ord("x")
    assert not irq.level and bus.read(IIR, 1) == 0x01


def test_fifo_trigger_levels(m):
    _, bus, uart, irq, _ = m
    setup_115200_8n1(bus)
    bus.write(IER, 1, 0x01)
    for fcr, level in ((0x01, 1), (0x41, 4), (0x81, 8), (0xC1, 14)):
        bus.write(FCR, 1, fcr | 0x06)  # enable, reset both FIFOs
        uart.feed(bytes(level - 1))
        assert bus.read(IIR, 1) == 0xC1, f"below trigger {level}"
        assert not irq.level
        uart.feed(b"\x00")
        assert bus.read(IIR, 1) == 0xC4, f"at trigger {level}"
        assert irq.level
        # Reading below the trigger level clears the condition.
        bus.read(B, 1)
        assert bus.read(IIR, 1) == 0xC1


def test_character_timeout_interrupt(m):
    clock, bus, uart, irq, _ = m
    setup_115200_8n1(bus)
    bus.write(FCR, 1, 0x87)  # FIFO, trigger 8
    bus.write(IER, 1, 0x01)
    uart.feed(b"abc")
    assert bus.read(IIR, 1) == 0xC1
    four_chars = 4 * uart.char_time_ns()
    clock.advance_by(four_chars - 1)
    assert not irq.level
    clock.advance_by(1)
    assert bus.read(IIR, 1) == 0xCC and irq.level
    assert bus.read(B, 1) == ord("a")  # a read clears the time-out ...
    assert bus.read(IIR, 1) == 0xC1
    clock.advance_by(four_chars)       # ... and restarts it
    assert bus.read(IIR, 1) == 0xCC
    assert bus.read(B, 1) == ord("b") and bus.read(B, 1) == ord("c")
    clock.advance_by(10 * four_chars)
    assert bus.read(IIR, 1) == 0xC1 and not irq.level


def test_thre_interrupt_and_its_clearing_rule(m):
    _, bus, _, irq, _ = m
    setup_115200_8n1(bus)
    bus.write(IER, 1, 0x02)  # enabling ETBEI with THR empty interrupts at once
    assert irq.level
    assert bus.read(IIR, 1) == 0x02  # reading IIR that reports THRE clears it
    assert not irq.level
    assert bus.read(IIR, 1) == 0x01
    bus.write(B, 1, 0x20)  # THR empties again at once
    assert irq.level and irq.rising == 2
    assert bus.read(IIR, 1) == 0x02
    bus.write(IER, 1, 0x00)
    bus.write(IER, 1, 0x02)
    assert bus.read(IIR, 1) == 0x02


def test_interrupt_priorities(m):
    _, bus, uart, _, _ = m
    setup_115200_8n1(bus)
    bus.write(FCR, 1, 0x01)  # FIFO, trigger 1
    bus.write(IER, 1, 0x0F)
    uart.set_modem_inputs(cts=False)  # modem status change
    uart.feed(bytes(17))              # data + overrun
    assert bus.read(IIR, 1) == 0xC6   # 1: line status (overrun)
    assert bus.read(LSR, 1) & 0x03 == 0x03
    assert bus.read(IIR, 1) == 0xC4   # 2: received data
    for _ in range(16):
        bus.read(B, 1)
    assert bus.read(IIR, 1) == 0xC2   # 3: THR empty (cleared by this read)
    assert bus.read(IIR, 1) == 0xC0   # 4: modem status
    assert bus.read(MSR, 1) & 0x11 == 0x01  # DCTS set, CTS now off
    assert bus.read(IIR, 1) == 0xC1


def test_overrun_in_fifo_and_16450_modes(m):
    _, bus, uart, _, _ = m
    setup_115200_8n1(bus)
    bus.write(FCR, 1, 0x07)
    assert uart.feed(bytes(range(20))) == 4
    lsr = bus.read(LSR, 1)
    assert lsr & 0x03 == 0x03
    assert not bus.read(LSR, 1) & 0x02  # OE clears on read
    assert [bus.read(B, 1) for _ in range(16)] == list(range(16))  # the late bytes were lost
    bus.write(FCR, 1, 0x00)  # 16450 mode: one holding register
    uart.feed(b"AB")
    assert bus.read(LSR, 1) & 0x03 == 0x03
    assert bus.read(B, 1) == ord("B")  # the unread byte was overwritten


def test_modem_status_deltas_and_trailing_edge_of_ri(m):
    _, bus, uart, _, _ = m
    uart.set_modem_inputs(ri=True)
    assert bus.read(MSR, 1) == 0xF0  # RI rising: no delta (TERI is the falling edge)
    uart.set_modem_inputs(ri=False, dcd=False)
    assert bus.read(MSR, 1) == 0x30 | 0x04 | 0x08
    assert bus.read(MSR, 1) == 0x30


def test_snapshot_keeps_fifo_bytes_and_pending_timeout(m):
    clock, bus, uart, irq, _ = m
    setup_115200_8n1(bus)
    bus.write(FCR, 1, 0xC7)
    bus.write(IER, 1, 0x03)
    uart.feed(b"snap")
    bus.read(IIR, 1)  # clears the THRE interrupt
    bus.write(SCR, 1, 0x99)
    data = json.loads(json.dumps(uart.save().to_dict()))
    clock_state = ClockState.from_dict(clock.save().to_dict())

    clock2 = VirtualClock()
    bus2 = PortBus()
    irq2 = Irq()
    uart2 = bus2.attach(Uart16550(clock2, irq2))
    clock2.restore(clock_state)
    uart2.restore(UartState.from_dict(data))
    assert bus2.read(IIR, 1) == 0xC1
    clock2.advance_by(4 * uart2.char_time_ns())
    assert bus2.read(IIR, 1) == 0xCC  # the armed time-out fired after restore
    assert bytes(bus2.read(B, 1) for _ in range(4)) == b"snap"
    assert bus2.read(SCR, 1) == 0x99 and bus2.read(LCR, 1) == 0x03
