"""VGA text mode: registers through ports 0x3B0-0x3DF, screen from guest RAM at 0xB8000."""

import json

import pytest

from devices.base import PortBus
from devices.vga_text import VgaState, VgaText

RAM_SIZE = 1 << 20
TEXT = 0xB8000


@pytest.fixture
def m():
    ram = bytearray(RAM_SIZE)  # the monitor's guest RAM
    bus = PortBus()
    vga = bus.attach(VgaText(memoryview(ram)[TEXT:TEXT + 0x8000]))
    return ram, bus, vga


def put(ram, row, col, text, attr=0x07):
    for i, ch in enumerate(text.encode("cp437")):
        off = TEXT + 2 * (row * 80 + col + i)
        ram[off] = ch
        ram[off + 1] = attr


def crtc_write(bus, index, value):
    bus.write(0x3D4, 2, index | value << 8)  # "out dx, ax": index then data


def test_text_lines_read_guest_ram_without_copying(m):
    ram, _, vga = m
    put(ram, 0, 0, "C:\\>")
    put(ram, 24, 75, "hello")
    lines = vga.text_lines()
    assert len(lines) == 25 and all(len(line) == 80 for line in lines)
    assert lines[0].startswith("C:\\>")
    assert lines[24].endswith("hello")
    put(ram, 0, 0, "D")  # a later guest write is visible at once
    assert vga.text_lines()[0].startswith("D:\\>")


def test_cp437_glyphs(m):
    ram, _, vga = m
    for i, b in enumerate((0x01, 0xC9, 0xCD, 0xBB, 0xB0, 0xDB, 0x7F, 0x00)):
        ram[TEXT + 2 * i] = b
    assert vga.text_lines()[0][:8] == "☺╔═╗░█⌂ "


def test_cursor_location_and_shape(m):
    _, bus, vga = m
    pos = 12 * 80 + 40
    crtc_write(bus, 0x0E, pos >> 8)
    crtc_write(bus, 0x0F, pos & 0xFF)
    assert vga.cursor() == (12, 40)
    bus.write(0x3D4, 1, 0x0F)
    assert bus.read(0x3D5, 1) == pos & 0xFF
    assert vga.cursor_visible()
    crtc_write(bus, 0x0A, 0x20)  # cursor disable bit
    assert not vga.cursor_visible()


def test_start_address_scrolls_the_display(m):
    ram, bus, vga = m
    put(ram, 1, 0, "second line")
    crtc_write(bus, 0x0C, 0)
    crtc_write(bus, 0x0D, 80)  # start at the second row
    assert vga.text_lines()[0].startswith("second line")
    crtc_write(bus, 0x0E, 0)
    crtc_write(bus, 0x0F, 85)
    assert vga.cursor() == (0, 5)


def test_crtc_write_protect(m):
    _, bus, vga = m
    crtc_write(bus, 0x11, 0x8E)  # protect registers 0-7
    crtc_write(bus, 0x01, 0x00)
    bus.write(0x3D4, 1, 0x01)
    assert bus.read(0x3D5, 1) == 0x4F
    crtc_write(bus, 0x11, 0x0E)
    crtc_write(bus, 0x01, 0x27)
    assert bus.read(0x3D5, 1) == 0x27


def test_input_status_polling_loops_finish(m):
    _, bus, _ = m
    # The classic "wait for the end of retrace, then for its start" loop.
    for wanted in (0, 8, 0, 8):
        for _ in range(16):
            if bus.read(0x3DA, 1) & 0x08 == wanted:
                break
        else:
            pytest.fail("retrace bit never changed")
    seen = {bus.read(0x3DA, 1) & 0x01 for _ in range(4)}
    assert seen == {0, 1}


def test_attribute_controller_flip_flop(m):
    _, bus, vga = m
    bus.read(0x3DA, 1)           # reset the flip-flop to "index"
    bus.write(0x3C0, 1, 0x01)    # index 1
    bus.write(0x3C0, 1, 0x3A)    # data
    bus.write(0x3C0, 1, 0x10)    # index 0x10 (mode control)
    assert bus.read(0x3C0, 1) == 0x10
    assert bus.read(0x3C1, 1) == 0x0C
    bus.read(0x3DA, 1)
    bus.write(0x3C0, 1, 0x21)    # index 1 with PAS: reads back
    assert bus.read(0x3C1, 1) == 0x3A
    bus.read(0x3DA, 1)
    bus.write(0x3C0, 1, 0x20)    # a read of 0x3DA put us back on "index"
    assert vga.attr[1] == 0x3A


def test_misc_output_selects_mono_crtc_ports(m):
    _, bus, vga = m
    assert bus.read(0x3CC, 1) == 0x67
    bus.write(0x3C2, 1, 0x66)  # mono I/O addressing
    assert bus.read(0x3D5, 1) == 0xFF  # colour CRTC no longer decoded
    bus.write(0x3B4, 1, 0x0E)
    bus.write(0x3B5, 1, 0x01)
    assert vga.cursor_address() >> 8 == 0x01
    bus.write(0x3C2, 1, 0x67)


def test_sequencer_graphics_and_dac(m):
    _, bus, vga = m
    bus.write(0x3C4, 2, 0x0F02)  # map mask
    bus.write(0x3C4, 1, 0x02)
    assert bus.read(0x3C5, 1) == 0x0F
    bus.write(0x3CE, 1, 0x06)
    assert bus.read(0x3CF, 1) == 0x0E
    bus.write(0x3C8, 1, 0x07)
    for c in (63, 32, 1):
        bus.write(0x3C9, 1, c)
    bus.write(0x3C7, 1, 0x07)
    assert bus.read(0x3C7, 1) == 0x03
    assert [bus.read(0x3C9, 1) for _ in range(3)] == [63, 32, 1]
    assert bus.read(0x3C8, 1) == 0x08


def test_render_ansi_uses_attribute_colours(m):
    ram, bus, vga = m
    put(ram, 0, 0, "A", attr=0x1F)  # bright white on blue
    put(ram, 0, 1, "B", attr=0x4E)  # yellow on red
    text = vga.render_ansi()
    assert "\x1b[0;38;2;255;255;255;48;2;0;0;170mA" in text
    assert "38;2;255;255;85;48;2;170;0;0mB" in text
    assert text.count("\n") == 25
    put(ram, 0, 2, "C", attr=0x9F)  # blink bit with blink enabled
    assert ";5mC" in vga.render_ansi()
    bus.read(0x3DA, 1)
    bus.write(0x3C0, 1, 0x10)
    bus.write(0x3C0, 1, 0x04)  # mode control: blink off -> bright backgrounds
    assert "48;2;85;85;255mC" in vga.render_ansi()


def test_screen_dump(m):
    ram, _, vga = m
    put(ram, 0, 0, "line one   ")
    put(ram, 2, 3, "x")
    dump = vga.screen_dump()
    assert dump.splitlines()[:3] == ["line one", "", "   x"]
    assert dump.count("\n") == 25


def test_snapshot_round_trip(m):
    ram, bus, vga = m
    crtc_write(bus, 0x0E, 0x02)
    crtc_write(bus, 0x0F, 0x10)
    bus.read(0x3DA, 1)
    bus.write(0x3C0, 1, 0x05)  # attribute flip-flop left on "data"
    bus.write(0x3C8, 1, 0x10)
    bus.write(0x3C9, 1, 0x11)  # a DAC entry half written
    data = json.loads(json.dumps(vga.save().to_dict()))
    vga2 = VgaText(memoryview(ram)[TEXT:TEXT + 0x8000])
    vga2.restore(VgaState.from_dict(data))
    assert vga2.cursor_address() == 0x0210
    vga2.io_write(0x3C0 - 0x3B0, 1, 0x3F)
    assert vga2.attr[5] == 0x3F
    vga2.io_write(0x3C9 - 0x3B0, 1, 0x22)
    vga2.io_write(0x3C9 - 0x3B0, 1, 0x33)
    assert vga2.dac[3 * 0x10: 3 * 0x10 + 3] == bytes((0x11, 0x22, 0x33))


def test_read_only_or_small_memory_is_refused():
    with pytest.raises(ValueError, match="writable"):
        VgaText(bytes(4000))
    with pytest.raises(ValueError, match="smaller"):
        VgaText(bytearray(100))
