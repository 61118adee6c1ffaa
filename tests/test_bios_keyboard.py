"""Keys typed on the real 8042 reach the BDA through the int 09h service and
come out of int 16h with the right ASCII / scan code words."""

import pytest

from devices.i8042 import KBD_BYTE_NS
from monitor.bios import Bios
from monitor.bios import memory as bm
from monitor.bios.post import post
from monitor.bios.ports import inb
from monitor.bios.standalone import make_machine

BIOS = Bios()


@pytest.fixture
def ctx():
    c = make_machine()
    post(c)
    return c


def deliver(ctx):
    """Play the IRQ1 handler for every byte the keyboard sends: read port
    60h (as the int 09h stub does) and run service 09h with it in AL."""
    kbd = ctx.devices.kbd
    seen = []
    for _ in range(1000):
        if not kbd.pending_bytes():
            break
        ctx.clock.advance_by(KBD_BYTE_NS)
        if kbd.obuf_full:
            ctx.regs.al = inb(ctx, 0x60)
            seen.append(ctx.regs.al)
            BIOS.service(0x09, ctx)
    return seen


def int16(ctx, ah):
    ctx.regs.ah = ah
    ctx.regs.cs, ctx.regs.ip = 0xF000, 0xE832      # just past the int 16h callout
    BIOS.service(0x16, ctx)
    return ctx.regs


def read_all(ctx, ah=0x10):
    keys = []
    while True:
        r = int16(ctx, ah + 1)
        if r.zf:
            return keys
        keys.append(int16(ctx, ah).ax)


def test_typing_text(ctx):
    ctx.devices.kbd.type_text("aZ1!\n")
    deliver(ctx)
    assert read_all(ctx) == [0x1E61, 0x2C5A, 0x0231, 0x0221, 0x1C0D]
    assert ctx.mem[bm.BDA_KBD_FLAGS1] & 3 == 0          # shift released again


def test_ctrl_alt_and_function_keys(ctx):
    kbd = ctx.devices.kbd
    kbd.key_down("Ctrl"); kbd.press("c"); kbd.key_up("Ctrl")
    kbd.key_down("Alt"); kbd.press("x"); kbd.key_up("Alt")
    kbd.press("F1"); kbd.press("F12"); kbd.press("Esc"); kbd.press("Backspace")
    kbd.key_down("Shift"); kbd.press("Tab"); kbd.key_up("Shift")
    deliver(ctx)
    assert read_all(ctx) == [0x2E03, 0x2D00, 0x3B00, 0x8600, 0x011B, 0x0E08, 0x0F00]


def test_caps_lock_letters_only_and_leds(ctx):
    kbd = ctx.devices.kbd
    kbd.press("CapsLock")
    kbd.type_text("a1A")
    deliver(ctx)
    assert read_all(ctx) == [0x1E41, 0x0231, 0x1E61]   # shift + caps = lower case
    assert ctx.mem[bm.BDA_KBD_FLAGS1] & bm.KF1_CAPS
    assert kbd.leds == 0x04                            # Caps Lock LED sent (command EDh)
    assert ctx.mem[bm.BDA_KBD_LEDS] & bm.KF4_ACK       # and the keyboard's ACK came back


def test_grey_keys_and_keypad(ctx):
    kbd = ctx.devices.kbd
    for key in ("Up", "KPEnter", "KP/", "KP8", "Home"):
        kbd.press(key)
    kbd.press("NumLock")
    kbd.press("KP8")
    kbd.key_down("Ctrl"); kbd.press("Left"); kbd.key_up("Ctrl")
    deliver(ctx)
    keys = read_all(ctx)
    assert keys == [0x48E0, 0xE00D, 0xE02F, 0x4800, 0x47E0, 0x4838, 0x73E0]
    assert not ctx.mem[bm.BDA_KBD_FLAGS1] & (bm.KF1_LSHIFT | bm.KF1_RSHIFT)


def test_compatible_read_translates_grey_keys(ctx):
    kbd = ctx.devices.kbd
    for key in ("Up", "KPEnter", "KP/"):
        kbd.press(key)
    deliver(ctx)
    assert read_all(ctx, ah=0x00) == [0x4800, 0x1C0D, 0x352F]


def test_alt_keypad_entry(ctx):
    kbd = ctx.devices.kbd
    kbd.key_down("Alt")
    for key in ("KP6", "KP5"):
        kbd.press(key)
    kbd.key_up("Alt")
    deliver(ctx)
    assert read_all(ctx) == [0x0041]                   # Alt+65 = 'A', scan code 0


def test_shift_flags_functions(ctx):
    kbd = ctx.devices.kbd
    kbd.key_down("Shift")
    kbd.key_down("RightCtrl")
    deliver(ctx)
    r = int16(ctx, 0x02)
    assert r.al == bm.KF1_LSHIFT | bm.KF1_CTRL
    r = int16(ctx, 0x12)
    assert r.al == bm.KF1_LSHIFT | bm.KF1_CTRL and r.ah == 0x04   # right Ctrl held


def test_read_waits_when_empty_and_reexecutes(ctx):
    r = int16(ctx, 0x00)
    assert ctx.key_waits == 1
    assert (r.cs, r.ip) == (0xF000, 0xE82F)           # back on the callout
    assert r.ah == 0x00                                # registers untouched
    ctx.devices.kbd.press("q")
    deliver(ctx)
    r.ip = 0xE832                                      # the callout executes again
    BIOS.service(0x16, ctx)
    assert r.ax == 0x1071 and ctx.key_waits == 1


def test_check_sets_zf_in_the_frame(ctx):
    # An int 16h frame on the stack at 0000:7000 (IP, CS, FLAGS with ZF clear).
    r = ctx.regs
    r.ss, r.sp = 0, 0x7000
    bm.wr16(ctx.mem, 0x7004, 0x0202)
    int16(ctx, 0x01)
    assert r.zf and bm.rd16(ctx.mem, 0x7004) == 0x0242   # ZF set, IF kept
    ctx.devices.kbd.press("w")
    deliver(ctx)
    int16(ctx, 0x01)
    assert not r.zf and r.ax == 0x1177 and bm.rd16(ctx.mem, 0x7004) == 0x0202
    assert int16(ctx, 0x01).ax == 0x1177               # peeking does not consume


def test_store_key_and_buffer_full(ctx):
    for i in range(15):
        ctx.regs.cx = 0x1E00 + i
        assert int16(ctx, 0x05).al == 0
    ctx.regs.cx = 0x1234
    assert int16(ctx, 0x05).al == 1                    # 16 slots hold 15 keys
    assert read_all(ctx)[0] == 0x1E00


def test_ctrl_break_raises_int1b(ctx):
    r = ctx.regs
    r.ss, r.sp = 0, 0x7000
    ctx.devices.kbd.press("x")
    deliver(ctx)
    r.cs, r.ip = 0xF000, 0xE994                        # inside the int 09h stub
    kbd = ctx.devices.kbd
    kbd.key_down("Ctrl")
    kbd.press("ScrollLock")
    kbd.key_up("Ctrl")
    deliver(ctx)
    assert ctx.mem[bm.BDA_BREAK_FLAG] & 0x80
    assert (r.cs, r.ip) == bm.get_vector(ctx.mem, 0x1B)   # now in the int 1Bh handler
    assert bm.rd16(ctx.mem, (r.ss << 4) + r.sp) == 0xE994  # returning into the stub
    assert read_all(ctx) == [0x0000]                   # buffer flushed, break key stored


def test_ctrl_alt_del_resets_through_the_8042(ctx):
    kbd = ctx.devices.kbd
    kbd.key_down("Ctrl"); kbd.key_down("Alt"); kbd.press("Delete")
    deliver(ctx)
    assert bm.rd16(ctx.mem, bm.BDA_RESET_FLAG) == 0x1234
    assert ctx.resets
