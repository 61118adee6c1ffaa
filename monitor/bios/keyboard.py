"""IRQ1 (int 09h) scan-code translation and int 16h keyboard services.

The int 09h stub reads the set-1 scan code from port 60h (the 8042
translates the keyboard's set 2), offers it to int 15h AH=4Fh and calls
``irq1`` with it in AL.  ``irq1`` keeps the shift state in the BIOS data
area (0x417/0x418/0x496, LEDs in 0x497) and puts (scan code << 8 | ASCII)
words into the type-ahead ring buffer (head 0x41A, tail 0x41C, bounds
0x480/0x482, both as offsets from segment 40h), exactly where DOS and
every program that peeks at the BDA expect them.

References: IBM PC/AT Technical Reference (BIOS keyboard routines and the
"character codes" tables); Ralf Brown's Interrupt List (INT 09, INT 16,
tables 00006 "keyboard scan codes"); the translation table SeaBIOS uses in
kbd.c (``scan_to_keycode``), which is IBM's.

Emulated: Shift, Ctrl, Alt (left and right), Caps/Num/Scroll Lock with the
keyboard LEDs (command EDh through port 60h; its ACKs come back as
scan code FAh and set 0x497 bit 4), Insert mode, E0-prefixed grey keys
(cursor block, keypad Enter and /, right Ctrl/Alt) and the 8042's fake
shifts around them, Alt + keypad digits (decimal character entry),
Ctrl-Break (buffer flushed, 0x471 bit 7, int 1Bh, a 0000h key),
Print Screen (int 05h), Ctrl-Alt-Del (0x472 = 1234h, then a system reset
through the 8042, command FEh).

Not emulated: the Pause key (it would hold the machine inside int 09h
until the next key; it is ignored), SysReq (int 15h AH=85h is not called),
the beep on a full buffer, typematic repeat (the keyboard never repeats).
"""

from __future__ import annotations

from .memory import (
    BDA_ALT_KEYPAD, BDA_BREAK_FLAG, BDA_KBD_END, BDA_KBD_FLAGS1, BDA_KBD_FLAGS2,
    BDA_KBD_FLAGS3, BDA_KBD_HEAD, BDA_KBD_LEDS, BDA_KBD_START, BDA_KBD_TAIL, BDA_BASE,
    BDA_RESET_FLAG, KF1_ALT, KF1_CAPS, KF1_CTRL, KF1_INSERT, KF1_LSHIFT, KF1_NUM,
    KF1_RSHIFT, KF1_SCROLL, KF2_CAPS, KF2_INSERT, KF2_LALT, KF2_LCTRL, KF2_NUM, KF2_SCROLL,
    KF2_SYSREQ, KF3_LAST_E0, KF3_LAST_E1, KF3_RALT, KF3_RCTRL, KF4_ACK, KF4_LEDS, KF4_RESEND,
    once, raise_interrupt, rd16, wr16,
)
from .ports import outb

# --- set-1 scan codes --------------------------------------------------------------
SC_ESC = 0x01
SC_CTRL = 0x1D
SC_LSHIFT = 0x2A
SC_RSHIFT = 0x36
SC_KP_STAR = 0x37       # E0 37 = Print Screen
SC_ALT = 0x38
SC_CAPS = 0x3A
SC_NUM = 0x45           # E1 1D 45 = Pause
SC_SCROLL = 0x46        # E0 46 = Ctrl-Break on the 101-key keyboard
SC_INSERT = 0x52
SC_DELETE = 0x53
SC_SYSREQ = 0x54        # Alt + Print Screen
SC_KP_ENTER = 0x1C      # with E0
SC_KP_SLASH = 0x35      # with E0
BREAK_BIT = 0x80
PREFIX_E0 = 0xE0
PREFIX_E1 = 0xE1
KBD_ACK = 0xFA
KBD_RESEND = 0xFE
KBD_OVERRUN = (0x00, 0xFF)
KBD_CMD_LEDS = 0xED
KBD_CMD_TYPEMATIC = 0xF3
KBC_CMD_RESET = 0xFE    # 8042 command: pulse the CPU reset line

# Keypad keys 47h-53h and the digit each gives in numeric mode.
KEYPAD_DIGITS = {0x47: 7, 0x48: 8, 0x49: 9, 0x4B: 4, 0x4C: 5, 0x4D: 6,
                 0x4F: 1, 0x50: 2, 0x51: 3, 0x52: 0}

# scan code -> (normal, shift, ctrl, alt) keycodes (scan << 8 | ASCII); 0 =
# the combination produces nothing.  IBM PC/AT "character codes" tables.
KEYCODES: dict[int, tuple[int, int, int, int]] = {
    0x01: (0x011B, 0x011B, 0x011B, 0x0100),  # Esc
    0x02: (0x0231, 0x0221, 0x0000, 0x7800),  # 1 !
    0x03: (0x0332, 0x0340, 0x0300, 0x7900),  # 2 @  (Ctrl-2 = NUL)
    0x04: (0x0433, 0x0423, 0x0000, 0x7A00),  # 3 #
    0x05: (0x0534, 0x0524, 0x0000, 0x7B00),  # 4 $
    0x06: (0x0635, 0x0625, 0x0000, 0x7C00),  # 5 %
    0x07: (0x0736, 0x075E, 0x071E, 0x7D00),  # 6 ^  (Ctrl-6 = RS)
    0x08: (0x0837, 0x0826, 0x0000, 0x7E00),  # 7 &
    0x09: (0x0938, 0x092A, 0x0000, 0x7F00),  # 8 *
    0x0A: (0x0A39, 0x0A28, 0x0000, 0x8000),  # 9 (
    0x0B: (0x0B30, 0x0B29, 0x0000, 0x8100),  # 0 )
    0x0C: (0x0C2D, 0x0C5F, 0x0C1F, 0x8200),  # - _
    0x0D: (0x0D3D, 0x0D2B, 0x0000, 0x8300),  # = +
    0x0E: (0x0E08, 0x0E08, 0x0E7F, 0x0E00),  # Backspace
    0x0F: (0x0F09, 0x0F00, 0x9400, 0xA500),  # Tab
    0x10: (0x1071, 0x1051, 0x1011, 0x1000),  # q
    0x11: (0x1177, 0x1157, 0x1117, 0x1100),  # w
    0x12: (0x1265, 0x1245, 0x1205, 0x1200),  # e
    0x13: (0x1372, 0x1352, 0x1312, 0x1300),  # r
    0x14: (0x1474, 0x1454, 0x1414, 0x1400),  # t
    0x15: (0x1579, 0x1559, 0x1519, 0x1500),  # y
    0x16: (0x1675, 0x1655, 0x1615, 0x1600),  # u
    0x17: (0x1769, 0x1749, 0x1709, 0x1700),  # i
    0x18: (0x186F, 0x184F, 0x180F, 0x1800),  # o
    0x19: (0x1970, 0x1950, 0x1910, 0x1900),  # p
    0x1A: (0x1A5B, 0x1A7B, 0x1A1B, 0x1A00),  # [ {
    0x1B: (0x1B5D, 0x1B7D, 0x1B1D, 0x1B00),  # ] }
    0x1C: (0x1C0D, 0x1C0D, 0x1C0A, 0x1C00),  # Enter
    0x1E: (0x1E61, 0x1E41, 0x1E01, 0x1E00),  # a
    0x1F: (0x1F73, 0x1F53, 0x1F13, 0x1F00),  # s
    0x20: (0x2064, 0x2044, 0x2004, 0x2000),  # d
    0x21: (0x2166, 0x2146, 0x2106, 0x2100),  # f
    0x22: (0x2267, 0x2247, 0x2207, 0x2200),  # g
    0x23: (0x2368, 0x2348, 0x2308, 0x2300),  # h
    0x24: (0x246A, 0x244A, 0x240A, 0x2400),  # j
    0x25: (0x256B, 0x254B, 0x250B, 0x2500),  # k
    0x26: (0x266C, 0x264C, 0x260C, 0x2600),  # l
    0x27: (0x273B, 0x273A, 0x0000, 0x2700),  # ; :
    0x28: (0x2827, 0x2822, 0x0000, 0x2800),  # ' "
    0x29: (0x2960, 0x297E, 0x0000, 0x2900),  # ` ~
    0x2B: (0x2B5C, 0x2B7C, 0x2B1C, 0x2B00),  # \ |
    0x2C: (0x2C7A, 0x2C5A, 0x2C1A, 0x2C00),  # z
    0x2D: (0x2D78, 0x2D58, 0x2D18, 0x2D00),  # x
    0x2E: (0x2E63, 0x2E43, 0x2E03, 0x2E00),  # c
    0x2F: (0x2F76, 0x2F56, 0x2F16, 0x2F00),  # v
    0x30: (0x3062, 0x3042, 0x3002, 0x3000),  # b
    0x31: (0x316E, 0x314E, 0x310E, 0x3100),  # n
    0x32: (0x326D, 0x324D, 0x320D, 0x3200),  # m
    0x33: (0x332C, 0x333C, 0x0000, 0x3300),  # , <
    0x34: (0x342E, 0x343E, 0x0000, 0x3400),  # . >
    0x35: (0x352F, 0x353F, 0x0000, 0x3500),  # / ?
    0x37: (0x372A, 0x372A, 0x9600, 0x3700),  # keypad *
    0x39: (0x3920, 0x3920, 0x3920, 0x3920),  # Space
    0x3B: (0x3B00, 0x5400, 0x5E00, 0x6800),  # F1
    0x3C: (0x3C00, 0x5500, 0x5F00, 0x6900),  # F2
    0x3D: (0x3D00, 0x5600, 0x6000, 0x6A00),  # F3
    0x3E: (0x3E00, 0x5700, 0x6100, 0x6B00),  # F4
    0x3F: (0x3F00, 0x5800, 0x6200, 0x6C00),  # F5
    0x40: (0x4000, 0x5900, 0x6300, 0x6D00),  # F6
    0x41: (0x4100, 0x5A00, 0x6400, 0x6E00),  # F7
    0x42: (0x4200, 0x5B00, 0x6500, 0x6F00),  # F8
    0x43: (0x4300, 0x5C00, 0x6600, 0x7000),  # F9
    0x44: (0x4400, 0x5D00, 0x6700, 0x7100),  # F10
    0x47: (0x4700, 0x4737, 0x7700, 0x0000),  # keypad 7 / Home
    0x48: (0x4800, 0x4838, 0x8D00, 0x0000),  # keypad 8 / Up
    0x49: (0x4900, 0x4939, 0x8400, 0x0000),  # keypad 9 / PgUp
    0x4A: (0x4A2D, 0x4A2D, 0x8E00, 0x4A00),  # keypad -
    0x4B: (0x4B00, 0x4B34, 0x7300, 0x0000),  # keypad 4 / Left
    0x4C: (0x4C00, 0x4C35, 0x8F00, 0x0000),  # keypad 5
    0x4D: (0x4D00, 0x4D36, 0x7400, 0x0000),  # keypad 6 / Right
    0x4E: (0x4E2B, 0x4E2B, 0x9000, 0x4E00),  # keypad +
    0x4F: (0x4F00, 0x4F31, 0x7500, 0x0000),  # keypad 1 / End
    0x50: (0x5000, 0x5032, 0x9100, 0x0000),  # keypad 2 / Down
    0x51: (0x5100, 0x5133, 0x7600, 0x0000),  # keypad 3 / PgDn
    0x52: (0x5200, 0x5230, 0x9200, 0x0000),  # keypad 0 / Ins
    0x53: (0x5300, 0x532E, 0x9300, 0x0000),  # keypad . / Del
    0x56: (0x565C, 0x567C, 0x0000, 0x0000),  # 102nd key \ |
    0x57: (0x8500, 0x8700, 0x8900, 0x8B00),  # F11
    0x58: (0x8600, 0x8800, 0x8A00, 0x8C00),  # F12
}

# Ctrl with the grey (E0) cursor keys keeps E0h as the ASCII byte.
GREY_CTRL = {0x47: 0x77, 0x48: 0x8D, 0x49: 0x84, 0x4B: 0x73, 0x4D: 0x74,
             0x4F: 0x75, 0x50: 0x91, 0x51: 0x76, 0x52: 0x92, 0x53: 0x93}
GREY_ALT_OFFSET = 0x50   # Alt + grey cursor key: scan code + 50h, ASCII 0


# -- the ring buffer ----------------------------------------------------------------------


def _bounds(m) -> tuple[int, int]:
    start, end = rd16(m, BDA_KBD_START), rd16(m, BDA_KBD_END)
    if not (0x1E <= start < end <= 0x100 and (end - start) % 2 == 0):
        start, end = 0x1E, 0x3E   # corrupt bounds: fall back to the default buffer
    return start, end


def store_key(ctx, keycode: int) -> bool:
    """Append ``keycode`` to the buffer; False (and dropped) when full."""
    m = ctx.mem
    start, end = _bounds(m)
    tail = rd16(m, BDA_KBD_TAIL)
    nxt = tail + 2
    if nxt >= end:
        nxt = start
    if nxt == rd16(m, BDA_KBD_HEAD):
        once(ctx, "keyboard buffer full: key dropped")
        return False
    wr16(m, BDA_BASE + tail, keycode)
    wr16(m, BDA_KBD_TAIL, nxt)
    return True


def _peek(ctx) -> int | None:
    m = ctx.mem
    head = rd16(m, BDA_KBD_HEAD)
    if head == rd16(m, BDA_KBD_TAIL):
        return None
    return rd16(m, BDA_BASE + head)


def _pop(ctx) -> None:
    m = ctx.mem
    start, end = _bounds(m)
    head = rd16(m, BDA_KBD_HEAD) + 2
    wr16(m, BDA_KBD_HEAD, start if head >= end else head)


def _flush(ctx) -> None:
    wr16(ctx.mem, BDA_KBD_HEAD, rd16(ctx.mem, BDA_KBD_TAIL))


# -- LEDs ------------------------------------------------------------------------------------


def _update_leds(ctx) -> None:
    """Send command EDh with the lock state when it differs from the LEDs.
    The keyboard ACKs each byte; those ACKs arrive later through IRQ1."""
    m = ctx.mem
    f1 = m[BDA_KBD_FLAGS1]
    leds = (1 if f1 & KF1_SCROLL else 0) | (2 if f1 & KF1_NUM else 0) | (4 if f1 & KF1_CAPS else 0)
    if leds != m[BDA_KBD_LEDS] & KF4_LEDS:
        m[BDA_KBD_LEDS] = (m[BDA_KBD_LEDS] & ~KF4_LEDS) | leds
        outb(ctx, 0x60, KBD_CMD_LEDS)
        outb(ctx, 0x60, leds)


# -- IRQ1 ------------------------------------------------------------------------------------------


def _set(m, addr: int, bit: int, on: bool) -> None:
    m[addr] = (m[addr] | bit) if on else (m[addr] & ~bit & 0xFF)


def irq1(ctx) -> None:
    """Service 09h: the scan code in AL (set 1, as translated by the 8042)."""
    m = ctx.mem
    code = ctx.regs.al
    f3 = m[BDA_KBD_FLAGS3]

    if code == PREFIX_E0:
        m[BDA_KBD_FLAGS3] = f3 | KF3_LAST_E0
        return
    if code == PREFIX_E1:
        m[BDA_KBD_FLAGS3] = f3 | KF3_LAST_E1
        return
    if code == KBD_ACK:
        m[BDA_KBD_LEDS] |= KF4_ACK
        return
    if code == KBD_RESEND:
        m[BDA_KBD_LEDS] |= KF4_RESEND
        return
    if code in KBD_OVERRUN:
        once(ctx, f"keyboard overrun/error byte {code:#04x}")
        return

    extended = bool(f3 & KF3_LAST_E0)
    m[BDA_KBD_FLAGS3] = f3 & ~KF3_LAST_E0 & 0xFF
    if f3 & KF3_LAST_E1:
        # Pause is E1 1D 45 E1 9D C5: swallow the sequence.
        if code & 0x7F == SC_CTRL:
            return
        m[BDA_KBD_FLAGS3] &= ~KF3_LAST_E1 & 0xFF
        if code == SC_NUM:
            once(ctx, "Pause key is not emulated (ignored)")
        return

    release = bool(code & BREAK_BIT)
    key = code & 0x7F
    f1, f2 = m[BDA_KBD_FLAGS1], m[BDA_KBD_FLAGS2]

    # -- modifier and lock keys ----------------------------------------------------------
    if key in (SC_LSHIFT, SC_RSHIFT):
        if extended:
            return     # the 8042's "fake shift" around grey keys: not a shift
        _set(m, BDA_KBD_FLAGS1, KF1_LSHIFT if key == SC_LSHIFT else KF1_RSHIFT, not release)
        return
    if key == SC_CTRL:
        if extended:
            _set(m, BDA_KBD_FLAGS3, KF3_RCTRL, not release)
        else:
            _set(m, BDA_KBD_FLAGS2, KF2_LCTRL, not release)
        held = m[BDA_KBD_FLAGS2] & KF2_LCTRL or m[BDA_KBD_FLAGS3] & KF3_RCTRL
        _set(m, BDA_KBD_FLAGS1, KF1_CTRL, bool(held))
        return
    if key == SC_ALT:
        if extended:
            _set(m, BDA_KBD_FLAGS3, KF3_RALT, not release)
        else:
            _set(m, BDA_KBD_FLAGS2, KF2_LALT, not release)
        held = m[BDA_KBD_FLAGS2] & KF2_LALT or m[BDA_KBD_FLAGS3] & KF3_RALT
        _set(m, BDA_KBD_FLAGS1, KF1_ALT, bool(held))
        if release and not held and m[BDA_ALT_KEYPAD]:
            # Alt released after keypad digits: the decimal code is the key.
            store_key(ctx, m[BDA_ALT_KEYPAD])
            m[BDA_ALT_KEYPAD] = 0
        return
    if key in (SC_CAPS, SC_NUM) or (key == SC_SCROLL and not (f1 & KF1_CTRL)):
        lock, held_bit = {SC_CAPS: (KF1_CAPS, KF2_CAPS), SC_NUM: (KF1_NUM, KF2_NUM),
                          SC_SCROLL: (KF1_SCROLL, KF2_SCROLL)}[key]
        if release:
            _set(m, BDA_KBD_FLAGS2, held_bit, False)
        elif not f2 & held_bit:               # toggle once per press, not on repeat
            m[BDA_KBD_FLAGS1] = f1 ^ lock
            _set(m, BDA_KBD_FLAGS2, held_bit, True)
            _update_leds(ctx)
        return
    if key == SC_SYSREQ:
        _set(m, BDA_KBD_FLAGS2, KF2_SYSREQ, not release)
        once(ctx, "SysReq: int 15h AH=85h is not called")
        return
    if key == SC_INSERT and release:
        _set(m, BDA_KBD_FLAGS2, KF2_INSERT, False)
        return
    if release:
        return

    ctrl, alt = bool(f1 & KF1_CTRL), bool(f1 & KF1_ALT)
    shift = bool(f1 & (KF1_LSHIFT | KF1_RSHIFT))

    # -- system keys ---------------------------------------------------------------------
    if key == SC_SCROLL and ctrl:
        # Ctrl-Break (Ctrl + Scroll Lock, or E0 46 from Ctrl + Pause): IBM
        # order: flush the buffer, set the break flag, int 1Bh, store 0000h.
        _flush(ctx)
        m[BDA_BREAK_FLAG] |= 0x80
        store_key(ctx, 0x0000)
        raise_interrupt(ctx, 0x1B)
        return
    if key == SC_DELETE and ctrl and alt:
        # Ctrl-Alt-Del: warm boot.  0x472 = 1234h tells POST it is a warm
        # start; the reset itself goes through the 8042 (command FEh), the
        # same path as a guest's own reboot.
        wr16(m, BDA_RESET_FLAG, 0x1234)
        outb(ctx, 0x64, KBC_CMD_RESET)
        return
    if extended and key == SC_KP_STAR:
        if not ctrl:
            raise_interrupt(ctx, 0x05)   # Print Screen
        return

    # -- keys that produce a keycode -------------------------------------------------------
    if extended:
        keycode = _grey_key(key, ctrl, alt)
    elif key in KEYPAD_DIGITS and alt and not ctrl:
        m[BDA_ALT_KEYPAD] = (m[BDA_ALT_KEYPAD] * 10 + KEYPAD_DIGITS[key]) & 0xFF
        return
    else:
        codes = KEYCODES.get(key)
        if codes is None:
            return
        normal, shifted, ctrl_code, alt_code = codes
        if alt:
            keycode = alt_code
        elif ctrl:
            keycode = ctrl_code
        elif 0x47 <= key <= 0x53 and key not in (0x4A, 0x4E):
            # Keypad: digits when Num Lock and Shift disagree.
            keycode = shifted if bool(f1 & KF1_NUM) != shift else normal
        else:
            if f1 & KF1_CAPS and 0x61 <= normal & 0xFF <= 0x7A:
                shift = not shift               # Caps Lock affects letters only
            keycode = shifted if shift else normal
    if key == SC_INSERT and (extended or (keycode & 0xFF) == 0) and not (ctrl or alt):
        if not f2 & KF2_INSERT:
            m[BDA_KBD_FLAGS1] ^= KF1_INSERT
        _set(m, BDA_KBD_FLAGS2, KF2_INSERT, True)
    if keycode:
        store_key(ctx, keycode)


def _grey_key(key: int, ctrl: bool, alt: bool) -> int:
    """Keycodes of the E0-prefixed keys (101-key keyboard, IBM tables)."""
    if key == SC_KP_ENTER:
        return 0xA600 if alt else (0xE00A if ctrl else 0xE00D)
    if key == SC_KP_SLASH:
        return 0xA400 if alt else (0x9500 if ctrl else 0xE02F)
    if key in GREY_CTRL:
        if alt:
            return (key + GREY_ALT_OFFSET) << 8
        if ctrl:
            return (GREY_CTRL[key] << 8) | 0xE0
        return (key << 8) | 0xE0
    return 0


# -- int 16h -------------------------------------------------------------------------------------------


def _compat(keycode: int) -> int:
    """What AH=00h/01h (the pre-101-key functions) return for a buffered
    keycode: grey keys look like their keypad twins (SeaBIOS dequeue_key)."""
    ascii_ = keycode & 0xFF
    if ascii_ == 0xE0 and keycode & 0xFF00:
        return keycode & 0xFF00
    if keycode in (0xE00D, 0xE00A):
        return 0x1C00 | ascii_
    if keycode == 0xE02F:
        return 0x352F
    return keycode


def _extended_read(keycode: int) -> int:
    # AH=10h/11h: E0h ASCII is kept, except for F0h-style "no ASCII" codes.
    if keycode & 0xFF == 0xF0 and keycode & 0xFF00:
        return keycode & 0xFF00
    return keycode


def int16(ctx) -> None:
    r = ctx.regs
    fn = r.ah
    m = ctx.mem
    if fn in (0x00, 0x10):
        key = _peek(ctx)
        if key is None:
            # Empty: wait for IRQ1 and execute the callout again (context.py).
            ctx.wait_for_key()
            r.ip = (r.ip - 3) & 0xFFFF
            return
        _pop(ctx)
        r.ax = _compat(key) if fn == 0x00 else _extended_read(key)
    elif fn in (0x01, 0x11):
        key = _peek(ctx)
        if key is None:
            r.zf = True
        else:
            r.zf = False
            r.ax = _compat(key) if fn == 0x01 else _extended_read(key)
    elif fn == 0x02:
        r.al = m[BDA_KBD_FLAGS1]
    elif fn == 0x12:
        f2, f3 = m[BDA_KBD_FLAGS2], m[BDA_KBD_FLAGS3]
        r.al = m[BDA_KBD_FLAGS1]
        r.ah = ((0x01 if f2 & KF2_LCTRL else 0) | (0x02 if f2 & KF2_LALT else 0)
                | (0x04 if f3 & KF3_RCTRL else 0) | (0x08 if f3 & KF3_RALT else 0)
                | (0x10 if f2 & KF2_SCROLL else 0) | (0x20 if f2 & KF2_NUM else 0)
                | (0x40 if f2 & KF2_CAPS else 0) | (0x80 if f2 & KF2_SYSREQ else 0))
    elif fn == 0x03:
        if r.al == 0x05:
            # Typematic rate BL (0-1Fh) and delay BH (0-3): command F3h.
            outb(ctx, 0x60, KBD_CMD_TYPEMATIC)
            outb(ctx, 0x60, ((r.bh & 0x03) << 5) | (r.bl & 0x1F))
        else:
            once(ctx, f"int 16h AX={r.ax:#06x}: typematic subfunction not emulated")
    elif fn == 0x05:
        r.al = 0 if store_key(ctx, r.cx) else 1
    else:
        once(ctx, f"int 16h AH={fn:#04x}: function not emulated")
