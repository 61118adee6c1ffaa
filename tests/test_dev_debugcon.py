"""Port 0xE9 debug console and port 0xF4 exit port."""

from devices.base import PortBus
from devices.debugcon import DebugCon
from devices.exit_port import ExitPort


def test_debugcon_writes_bytes_and_reads_e9():
    out = bytearray()
    bus = PortBus()
    con = bus.attach(DebugCon(out.extend))
    for ch in b"ok\n":
        bus.write(0xE9, 1, ch)
    bus.write(0xE9, 2, 0x4121)  # a word write sends its low byte
    assert bytes(out) == b"ok\n!"
    assert bus.read(0xE9, 1) == 0xE9
    assert con.bytes_written == 4
    assert con.save() is None
    con.restore(None)


def test_debugcon_without_writer_counts():
    con = DebugCon()
    con.io_write(0, 1, 0x41)
    assert con.bytes_written == 1


def test_exit_port_passes_the_value_of_any_width():
    codes = []
    bus = PortBus()
    ep = bus.attach(ExitPort(codes.append))
    bus.write(0xF4, 1, 0x31)
    bus.write(0xF4, 4, 0x12345678)
    bus.write(0xF4, 2, 0xBEEF)
    assert codes == [0x31, 0x12345678, 0xBEEF]
    assert ep.exit_value == 0xBEEF
    assert bus.read(0xF4, 1) == 0xFF


def test_exit_port_without_callback_records_the_value():
    ep = ExitPort()
    ep.io_write(0, 1, 3)
    assert ep.exit_value == 3
