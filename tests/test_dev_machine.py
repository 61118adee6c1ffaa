"""All devices wired as in docs/devices.md: IRQs through the PIC, a whole-machine snapshot."""

import json
from datetime import datetime

from devices.base import PortBus
from devices.clock import ClockState, VirtualClock
from devices.cmos_rtc import CmosRtc, RtcState
from devices.debugcon import DebugCon
from devices.exit_port import ExitPort
from devices.i8042 import KBD_BYTE_NS, I8042, KbcState
from devices.pic8259 import PicState, Pic8259Pair
from devices.pit8254 import PitState, Pit8254
from devices.port61 import Port61State, SystemControlPortB
from devices.port92 import A20Gate, Port92, Port92State
from devices.uart16550 import Uart16550, UartState
from devices.vga_text import VgaState, VgaText

STATES = {
    "pic": PicState, "pit": PitState, "port61": Port61State, "cmos_rtc": RtcState,
    "i8042": KbcState, "port92": Port92State, "uart": UartState, "vga": VgaState,
}


class Machine:
    def __init__(self):
        self.clock = VirtualClock()
        self.bus = bus = PortBus()
        self.ram = bytearray(1 << 20)
        self.console = bytearray()
        self.exits = []
        self.a20_changes = []
        self.pic = bus.attach(Pic8259Pair())
        self.pit = bus.attach(Pit8254(self.clock, self.pic.irq_line(0)))
        self.port61 = bus.attach(SystemControlPortB(self.pit))
        self.rtc = bus.attach(CmosRtc(self.clock, self.pic.irq_line(8), start_time=datetime(2025, 1, 1)))
        self.a20 = A20Gate(self.a20_changes.append, initial=True)
        self.kbc = bus.attach(I8042(self.clock, self.pic.irq_line(1), on_a20=self.a20.source("kbc")))
        self.port92 = bus.attach(Port92(on_a20=self.a20.source("port92")))
        self.uart = bus.attach(Uart16550(self.clock, self.pic.irq_line(4), write=self.console.extend))
        self.vga = bus.attach(VgaText(memoryview(self.ram)[0xB8000:0xC0000]))
        bus.attach(DebugCon(self.console.extend))
        bus.attach(ExitPort(self.exits.append))
        self.pic.bios_init()
        self.pit.bios_init()

    def devices(self):
        return [self.pic, self.pit, self.port61, self.rtc, self.kbc, self.port92, self.uart, self.vga]

    def snapshot(self):
        return json.dumps({
            "clock": self.clock.save().to_dict(),
            "devices": {d.name: d.save().to_dict() for d in self.devices()},
        })

    def restore(self, text):
        data = json.loads(text)
        self.clock.restore(ClockState.from_dict(data["clock"]))
        for d in self.devices():
            d.restore(STATES[d.name].from_dict(data["devices"][d.name]))


def take_interrupt(m):
    assert m.pic.has_interrupt()
    return m.pic.acknowledge()


def test_irqs_reach_the_cpu_through_the_pic():
    m = Machine()
    m.clock.advance_to(60_000_000)  # 18.2 Hz: first IRQ0 edge at 54.9 ms
    assert take_interrupt(m) == 0x08
    m.bus.write(0x20, 1, 0x20)
    m.kbc.press("a")
    assert take_interrupt(m) == 0x09
    assert m.bus.read(0x60, 1) == 0x1E
    m.bus.write(0x20, 1, 0x20)
    m.bus.write(0x70, 1, 0x0B)
    m.bus.write(0x71, 1, 0x12)  # RTC update-ended interrupt
    m.clock.advance_to(1_000_000_000)
    vectors = set()
    while m.pic.has_interrupt():
        vec = m.pic.acknowledge()
        vectors.add(vec)
        if vec >= 0x70:
            m.bus.write(0x70, 1, 0x0C)
            m.bus.read(0x71, 1)
            m.bus.write(0xA0, 1, 0x20)
        m.bus.write(0x20, 1, 0x20)
    assert vectors == {0x08, 0x09, 0x70}  # timer, the 'a' break code, RTC
    m.bus.write(0xE9, 1, ord("!"))
    m.bus.write(0xF4, 1, 0)
    assert m.console == b"!" and m.exits == [0]


def test_whole_machine_snapshot_round_trip_keeps_work_in_flight():
    m = Machine()
    m.kbc.type_text("dir\n")
    m.bus.read(0x60, 1)                    # guest consumed one byte
    m.bus.write(0x3F8 + 2, 1, 0xC7)        # UART FIFO on
    m.uart.feed(b"serial")
    m.clock.advance_to(100_000_000)        # IRQ0 and IRQ1 pending in the PIC
    m.bus.write(0x92, 1, 0x02)
    m.ram[0xB8000] = ord("X")
    snap = m.snapshot()

    m2 = Machine()
    m2.ram[:] = m.ram                     # guest RAM is the monitor's to save
    m2.restore(snap)
    assert m2.snapshot() == snap
    assert take_interrupt(m2) == 0x08
    assert m2.vga.text_lines()[0][0] == "X"
    assert bytes(m2.bus.read(0x3F8, 1) for _ in range(6)) == b"serial"
    m2.clock.advance_by(KBD_BYTE_NS)
    keys = []
    while m2.bus.read(0x64, 1) & 1:
        keys.append(m2.bus.read(0x60, 1))
        m2.clock.advance_by(KBD_BYTE_NS)
    assert keys == [0xA0, 0x17, 0x97, 0x13, 0x93, 0x1C, 0x9C]  # rest of "dir\n"
    assert m2.a20.enabled
