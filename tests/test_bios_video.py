"""int 10h through the dispatcher on a real VGA device: text, cursor, BDA, CRTC."""

import pytest

from monitor.bios import Bios
from monitor.bios import memory as bm
from monitor.bios.post import post
from monitor.bios.standalone import make_machine

BIOS = Bios()


@pytest.fixture
def ctx():
    c = make_machine()
    post(c)
    return c


def call(ctx, **regs):
    for name, value in regs.items():
        setattr(ctx.regs, name, value)
    BIOS.service(0x10, ctx)
    return ctx.regs


def tty(ctx, text):
    for ch in text.encode("latin-1"):
        call(ctx, ah=0x0E, al=ch)


def bda_cursor(ctx, page=0):
    pos = bm.rd16(ctx.mem, bm.BDA_CURSOR_POS + 2 * page)
    return pos >> 8, pos & 0xFF


def test_post_leaves_mode3_blank_screen(ctx):
    vga = ctx.devices.vga
    assert all(line == " " * 80 for line in vga.text_lines())
    m = ctx.mem
    assert m[bm.BDA_VIDEO_MODE] == 3
    assert bm.rd16(m, bm.BDA_VIDEO_COLUMNS) == 80
    assert bm.rd16(m, bm.BDA_VIDEO_PAGE_SIZE) == 0x1000
    assert bm.rd16(m, bm.BDA_CRTC_PORT) == 0x3D4
    assert m[bm.BDA_VIDEO_ROWS] == 24
    assert bm.rd16(m, bm.BDA_CURSOR_TYPE) == 0x0607
    assert vga.cursor() == (0, 0) and vga.cursor_visible()
    assert m[0xB8001] == 0x07


def test_teletype_text_cr_lf_bs_bel(ctx):
    tty(ctx, "Hello\r\nWorld!\x08?\x07")
    lines = ctx.devices.vga.text_lines()
    assert lines[0].rstrip() == "Hello"
    assert lines[1].rstrip() == "World?"
    assert bda_cursor(ctx) == (1, 6)
    assert ctx.devices.vga.cursor() == (1, 6)


def test_teletype_wraps_and_scrolls(ctx):
    for i in range(25):
        tty(ctx, f"line {i}\r\n")
    lines = ctx.devices.vga.text_lines()
    assert lines[0].rstrip() == "line 1"
    assert lines[23].rstrip() == "line 24"
    assert lines[24].strip() == ""
    assert bda_cursor(ctx) == (24, 0)
    tty(ctx, "x" * 85)                          # wraps after column 79
    lines = ctx.devices.vga.text_lines()
    assert lines[23] == "x" * 80 and lines[24].rstrip() == "xxxxx"
    assert lines[0].rstrip() == "line 2"        # wrapping past the last row scrolled
    assert ctx.devices.vga.cursor() == (24, 5)


def test_teletype_scroll_fills_with_the_attribute_at_the_cursor(ctx):
    call(ctx, ah=0x06, al=0, bh=0x1F, cx=0, dx=0x184F)   # whole screen blue
    call(ctx, ah=0x02, bh=0, dx=0x1800)
    tty(ctx, "\n")
    assert ctx.mem[0xB8000 + (24 * 80) * 2 + 1] == 0x1F


def test_cursor_position_per_page_and_crtc(ctx):
    call(ctx, ah=0x02, bh=0, dh=5, dl=10)
    call(ctx, ah=0x02, bh=3, dh=7, dl=1)
    assert bda_cursor(ctx, 0) == (5, 10) and bda_cursor(ctx, 3) == (7, 1)
    vga = ctx.devices.vga
    assert vga.cursor_address() == 5 * 80 + 10     # only the active page moves the hardware
    r = call(ctx, ah=0x03, bh=3)
    assert (r.dh, r.dl, r.cx) == (7, 1, 0x0607)
    call(ctx, ah=0x05, al=3)                        # select page 3
    assert ctx.mem[bm.BDA_VIDEO_ACTIVE_PAGE] == 3
    assert bm.rd16(ctx.mem, bm.BDA_VIDEO_PAGE_START) == 0x3000
    assert vga.start_address() == 0x1800
    assert vga.cursor() == (7, 1)
    tty(ctx, "P3")
    assert vga.text_lines()[7][1:3] == "P3"
    assert ctx.mem[0xB8000 + 0x3000 + (7 * 80 + 1) * 2] == ord("P")


def test_cursor_shape_emulation_and_hide(ctx):
    vga = ctx.devices.vga
    call(ctx, ah=0x01, cx=0x0007)                    # block cursor in CGA terms
    assert bm.rd16(ctx.mem, bm.BDA_CURSOR_TYPE) == 0x0007
    assert (vga.crtc[0x0A], vga.crtc[0x0B]) == (1, 15)   # scaled to the 16-line cell
    call(ctx, ah=0x01, cx=0x2000)
    assert not vga.cursor_visible()


def test_write_char_attr_and_read_back(ctx):
    call(ctx, ah=0x02, bh=0, dx=0x0203)
    call(ctx, ah=0x09, al=ord("*"), bh=0, bl=0x4E, cx=3)
    call(ctx, ah=0x0A, al=ord("#"), bh=0, cx=1)
    line = ctx.devices.vga.text_lines()[2]
    assert line[3:6] == "#**"
    assert ctx.mem[0xB8000 + (2 * 80 + 3) * 2 + 1] == 0x4E   # 0Ah kept the attribute
    assert bda_cursor(ctx) == (2, 3)                         # not moved
    r = call(ctx, ah=0x08, bh=0)
    assert (r.ah, r.al) == (0x4E, ord("#"))


def test_write_char_runs_to_the_next_rows(ctx):
    call(ctx, ah=0x02, bh=0, dx=0x184E)               # row 24, column 78
    call(ctx, ah=0x09, al=ord("z"), bh=0, bl=7, cx=500)   # clipped at the end of the page
    assert ctx.devices.vga.text_lines()[24][78:] == "zz"


def test_scroll_window_up_and_down(ctx):
    for row in range(5):
        call(ctx, ah=0x02, bh=0, dh=row, dl=0)
        tty(ctx, str(row) * 8)
    call(ctx, ah=0x06, al=1, bh=0x70, ch=1, cl=2, dh=3, dl=4)   # rows 1-3, cols 2-4 up 1
    lines = ctx.devices.vga.text_lines()
    assert [line[:8] for line in lines[:5]] == [
        "00000000", "11222111", "22333222", "33   333", "44444444"]
    assert ctx.mem[0xB8000 + (3 * 80 + 2) * 2 + 1] == 0x70
    assert ctx.mem[0xB8000 + (3 * 80 + 5) * 2 + 1] == 0x07
    call(ctx, ah=0x07, al=2, bh=0x07, ch=0, cl=0, dh=4, dl=79)  # rows 0-4 down 2
    lines = ctx.devices.vga.text_lines()
    assert [line[:8] for line in lines[:6]] == [
        " " * 8, " " * 8, "00000000", "11222111", "22333222", " " * 8]
    call(ctx, ah=0x06, al=0, bh=0x07, cx=0, dx=0x184F)          # AL=0 clears
    assert all(line.strip() == "" for line in ctx.devices.vga.text_lines())


def test_get_mode_and_set_modes(ctx, caplog):
    r = call(ctx, ah=0x0F)
    assert (r.al, r.ah, r.bh) == (3, 80, 0)
    tty(ctx, "keep")
    call(ctx, ah=0x00, al=0x83)                     # bit 7: do not clear
    assert ctx.devices.vga.text_lines()[0].startswith("keep")
    assert call(ctx, ah=0x0F).al == 0x83
    call(ctx, ah=0x00, al=0x02)
    assert ctx.devices.vga.text_lines()[0].strip() == ""
    assert call(ctx, ah=0x0F).al == 2
    with caplog.at_level("WARNING"):
        call(ctx, ah=0x00, al=0x13)                 # VGA 320x200: not emulated
    assert "0x13 is not emulated" in caplog.text
    assert ctx.mem[bm.BDA_VIDEO_MODE] == 3


def test_write_string(ctx):
    s = b"Hi\r\nthere"
    ctx.mem[0x2000:0x2000 + len(s)] = s
    call(ctx, ah=0x13, al=0x01, bh=0, bl=0x2F, cx=len(s), dh=10, dl=5, es=0x0200, bp=0)
    lines = ctx.devices.vga.text_lines()
    assert lines[10][5:7] == "Hi" and lines[11][:5] == "there"
    assert ctx.mem[0xB8000 + (10 * 80 + 5) * 2 + 1] == 0x2F
    assert bda_cursor(ctx) == (11, 5)
    # Mode 2: characters and attributes alternate, cursor restored (bit 0 clear).
    ctx.mem[0x2100:0x2104] = b"A\x1eB\x1f"
    call(ctx, ah=0x02, bh=0, dx=0)
    call(ctx, ah=0x13, al=0x02, bh=0, cx=2, dh=20, dl=0, es=0x0210, bp=0)
    assert ctx.devices.vga.text_lines()[20][:2] == "AB"
    assert ctx.mem[0xB8000 + (20 * 80 + 1) * 2 + 1] == 0x1F
    assert bda_cursor(ctx) == (0, 0)


def test_display_combination_ega_info_font_info(ctx):
    r = call(ctx, ax=0x1A00)
    assert (r.al, r.bl, r.bh) == (0x1A, 0x08, 0x00)
    r = call(ctx, ah=0x12, bl=0x10)
    assert (r.bh, r.bl) == (0, 3)
    r = call(ctx, ax=0x1130, bh=0x06)
    assert (r.es, r.cx, r.dl) == (0xF000, 16, 24)
    r = call(ctx, ax=0x4F00)                        # VESA: AL stays != 4Fh
    assert r.al != 0x4F


def test_blink_and_palette(ctx):
    vga = ctx.devices.vga
    call(ctx, ax=0x1003, bl=0)
    assert not vga.attr[0x10] & 0x08
    call(ctx, ax=0x1003, bl=1)
    assert vga.attr[0x10] & 0x08
    call(ctx, ax=0x1010, bx=5, dh=1, ch=2, cl=3)
    r = call(ctx, ax=0x1015, bx=5)
    assert (r.dh, r.ch, r.cl) == (1, 2, 3)
    call(ctx, ax=0x1000, bl=1, bh=0x3F)
    assert call(ctx, ax=0x1007, bl=1).bh == 0x3F
