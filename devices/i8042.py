"""Intel 8042 keyboard controller (ports 0x60, 0x64) with a PS/2 keyboard.

References: IBM PS/2 Hardware Interface Technical Reference, "Keyboard and
Auxiliary Device Controller" and "Keyboard" chapters; Adam Chapweske's
"The PS/2 keyboard interface"; the AT output-port wiring (bit 0 = system
reset, bit 1 = A20 gate) from the IBM PC/AT Technical Reference.

Emulated, controller: the status register (OBF, SYS, A2, INH, AUXB,
timeout), the command byte and the rest of the 32-byte controller RAM
(0x20-0x3F read, 0x60-0x7F write), 0xA7/0xA8 (aux port disable/enable),
0xA9 (aux interface test), 0xAA (self-test, 0x55), 0xAB (keyboard interface
test), 0xAD/0xAE (keyboard interface disable/enable), 0xC0 (input port),
0xD0/0xD1 (read/write output port: A20 and reset), 0xD2 (write keyboard
output buffer), 0xD3 (aux loopback), 0xD4 (write to aux device), 0xDD/0xDF
(A20 off/on), 0xE0 (test inputs), 0xF0-0xFF (pulse output port; 0xFE resets
the system), set 2 -> set 1 translation (command byte bit 6) and IRQ1/IRQ12
on a full output buffer.

Emulated, keyboard: 0xED (LEDs), 0xEE (echo), 0xF0 (get/set scan code set
1 or 2), 0xF2 (identify: 0xAB 0x83), 0xF3 (typematic), 0xF4/0xF5 (enable /
disable scanning), 0xF6 (defaults), 0xF7-0xFD (set-3 key types, ACKed),
0xFE (resend), 0xFF (reset: 0xFA 0xAA), unknown commands answered with 0xFE;
host-side ``press``/``type_text`` queue make and break codes.  A keyboard
byte becomes visible 500 us of virtual time after the previous one was read
(the serial transfer time), so a guest that reads port 0x60 twice in its
IRQ1 handler sees the same byte twice, as on hardware.

Not emulated: a PS/2 mouse (0xD4 bytes time out: status timeout bit and a
0xFE aux byte, which guests take as "no mouse"), scan code set 3 (refused
with 0xFE), typematic repeat (keys are pressed and released, never held),
the password and keyboard-lock features, parity errors.

Reset behaviour: ``reset()`` leaves the controller as a PC BIOS leaves it
after POST (self-test passed, command byte 0x45: translation, system flag and
IRQ1 on; keyboard scanning in set 2; A20 gate on in the output port), since
the monitor's BIOS does not run the POST sequence through the ports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from .base import Device, DeviceState, PortWindow, no_irq
from .clock import TimerHandle, VirtualClock
from .scancodes import (
    SET2_BREAK, TRANSLATE_8042, break_set1, break_set2, char_strokes, key_name, make_set1,
    make_set2,
)

KBC_DATA_PORT = 0x60
KBC_CMD_PORT = 0x64

# --- status register (read 0x64) -----------------------------------------------
ST_OBF = 0x01      # output buffer full (data for the CPU at 0x60)
ST_IBF = 0x02      # input buffer full (never: commands complete at once)
ST_SYS = 0x04      # system flag (command byte bit 2; set after self-test)
ST_A2 = 0x08       # last write was to 0x64 (command) rather than 0x60 (data)
ST_INH = 0x10      # 1 = keyboard not inhibited (key lock switch open)
ST_AUXB = 0x20     # the output buffer holds a byte from the aux device
ST_TIMEOUT = 0x40  # general/transmit time-out
ST_PARITY = 0x80   # parity error

# --- command byte (controller RAM byte 0) ----------------------------------------
CB_KBD_INT = 0x01      # IRQ1 when the output buffer fills with keyboard data
CB_AUX_INT = 0x02      # IRQ12 when it fills with aux data
CB_SYS = 0x04          # system flag, mirrored in status bit 2
CB_IGN_INH = 0x08      # ignore keyboard lock (AT only)
CB_KBD_DISABLE = 0x10  # keyboard interface disabled (clock held low)
CB_AUX_DISABLE = 0x20  # aux interface disabled
CB_XLATE = 0x40        # translate set 2 to set 1
CB_POST_DEFAULT = CB_XLATE | CB_SYS | CB_KBD_INT  # 0x45

# --- output port (0xD0 / 0xD1) ----------------------------------------------------
OP_RESET = 0x01     # 0 = assert the CPU reset line
OP_A20 = 0x02       # A20 gate
OP_AUX_CLK = 0x04
OP_AUX_DATA = 0x08
OP_IRQ1 = 0x10      # output buffer full, keyboard (drives IRQ1)
OP_IRQ12 = 0x20     # output buffer full, aux (drives IRQ12)
OP_KBD_CLK = 0x40
OP_KBD_DATA = 0x80
OP_POST_DEFAULT = OP_KBD_DATA | OP_KBD_CLK | OP_AUX_DATA | OP_AUX_CLK | OP_A20 | OP_RESET

# --- controller commands (write 0x64) ----------------------------------------------
CMD_READ_RAM = 0x20       # 0x20-0x3F: read RAM byte (0x20 = command byte)
CMD_WRITE_RAM = 0x60      # 0x60-0x7F: write RAM byte (0x60 = command byte)
CMD_AUX_DISABLE = 0xA7
CMD_AUX_ENABLE = 0xA8
CMD_AUX_TEST = 0xA9
CMD_SELF_TEST = 0xAA
CMD_KBD_TEST = 0xAB
CMD_KBD_DISABLE = 0xAD
CMD_KBD_ENABLE = 0xAE
CMD_READ_INPUT = 0xC0
CMD_READ_OUTPUT = 0xD0
CMD_WRITE_OUTPUT = 0xD1
CMD_WRITE_KBD_OBUF = 0xD2
CMD_WRITE_AUX_OBUF = 0xD3
CMD_WRITE_AUX = 0xD4
CMD_A20_OFF = 0xDD
CMD_A20_ON = 0xDF
CMD_READ_TEST = 0xE0
CMD_PULSE = 0xF0          # 0xF0-0xFF: pulse output port bits 3-0 where the command bit is 0
SELF_TEST_OK = 0x55
INPUT_PORT = 0x80         # keyboard not inhibited; other jumpers 0

# --- keyboard commands and replies (write 0x60) -------------------------------------
KBD_SET_LEDS = 0xED
KBD_ECHO = 0xEE
KBD_SCANCODE_SET = 0xF0
KBD_IDENTIFY = 0xF2
KBD_TYPEMATIC = 0xF3
KBD_ENABLE = 0xF4
KBD_DISABLE = 0xF5
KBD_DEFAULTS = 0xF6
KBD_RESEND = 0xFE
KBD_RESET = 0xFF
KBD_ACK = 0xFA
KBD_BAT_OK = 0xAA
KBD_NAK = 0xFE            # "resend": also the answer to unknown commands
KBD_ID = (0xAB, 0x83)     # MF2 keyboard
TYPEMATIC_DEFAULT = 0x2B  # 10.9 characters/s, 500 ms delay

AUX_FLAG = 0x100          # marks an aux byte in the controller's reply queue
KEY_QUEUE_LIMIT = 4096    # host typing buffer; more is dropped and counted
KBD_BYTE_NS = 500_000     # virtual time between two keyboard bytes


@dataclass
class KbcState(DeviceState):
    KIND = "i8042"
    VERSION = 1
    ram: bytes                # controller RAM; byte 0 is the command byte
    status_extra: int         # latched status bits: timeout, parity
    a2: bool                  # status A2: last write was a command
    output_port: int          # output port bits 0-3, 6-7 (4-5 are computed)
    obuf: int                 # output buffer byte
    obuf_full: bool           # OBF
    obuf_aux: bool            # the byte came from the aux side
    pending_cmd: int          # controller command waiting for its data byte, 0 if none
    replies: list[int]        # controller replies waiting for the output buffer (| AUX_FLAG)
    xlat_break: bool          # translation saw 0xF0: set bit 7 on the next byte
    kbd_ready_ns: int         # the next keyboard byte may enter the buffer at this time
    kbd_replies: list[int]    # keyboard command responses (sent before key codes)
    kbd_keys: list[int]       # queued scan code bytes
    kbd_scanning: bool        # keyboard enabled (0xF4) / disabled (0xF5)
    kbd_set: int              # scan code set in use: 1 or 2
    kbd_leds: int             # LED bits from 0xED
    kbd_typematic: int        # rate/delay byte from 0xF3
    kbd_expect: int           # keyboard command waiting for its parameter, 0 if none
    kbd_last: int             # last byte sent (for 0xFE resend)


class I8042(Device):
    """Keyboard controller; ``irq`` is IRQ1, ``irq12`` the (mouse) IRQ12."""

    name = "i8042"

    def __init__(
        self,
        clock: VirtualClock,
        irq: Callable[[bool], None] = no_irq,
        on_a20: Optional[Callable[[bool], None]] = None,
        on_reset: Optional[Callable[[], None]] = None,
        irq12: Callable[[bool], None] = no_irq,
    ) -> None:
        super().__init__()
        self.clock = clock
        self._irq1 = irq
        self._irq12 = irq12
        self._on_a20 = on_a20
        self._on_reset = on_reset
        self._timer: Optional[TimerHandle] = None
        self._irq1_level = False
        self._irq12_level = False
        #: Key events (makes and breaks) dropped: scanning off or queue full.
        self.dropped_keys = 0
        #: System resets requested through the controller.
        self.resets = 0
        self.data_ports = PortWindow("i8042.data", self._data_read, self._data_write)
        self.cmd_ports = PortWindow("i8042.cmd", self._cmd_read, self._cmd_write)
        self.reset()

    def port_ranges(self):
        return [(self.data_ports, KBC_DATA_PORT, 1), (self.cmd_ports, KBC_CMD_PORT, 1)]

    # -- state helpers ----------------------------------------------------------

    @property
    def command_byte(self) -> int:
        return self.ram[0]

    @property
    def a20(self) -> bool:
        """The A20 gate bit of the output port."""
        return bool(self.output_port & OP_A20)

    def status(self) -> int:
        value = ST_INH | self.status_extra
        if self.obuf_full:
            value |= ST_OBF
            if self.obuf_aux:
                value |= ST_AUXB
        if self.ram[0] & CB_SYS:
            value |= ST_SYS
        if self.a2:
            value |= ST_A2
        return value

    def _update_irqs(self) -> None:
        cb = self.ram[0]
        irq1 = self.obuf_full and not self.obuf_aux and bool(cb & CB_KBD_INT)
        irq12 = self.obuf_full and self.obuf_aux and bool(cb & CB_AUX_INT)
        if irq1 != self._irq1_level:
            self._irq1_level = irq1
            self._irq1(irq1)
        if irq12 != self._irq12_level:
            self._irq12_level = irq12
            self._irq12(irq12)

    def _fill(self) -> None:
        """Move the next byte into an empty output buffer.

        Controller replies go first; then, if the keyboard interface is
        enabled and the serial transfer time has passed, a keyboard byte,
        translated to set 1 when command-byte bit 6 is set (a 0xF0 prefix is
        swallowed and sets bit 7 of the byte after it).
        """
        if self.obuf_full:
            return
        if self.replies:
            value = self.replies.pop(0)
            self._load(value & 0xFF, bool(value & AUX_FLAG))
            return
        if self.ram[0] & CB_KBD_DISABLE or not (self.kbd_replies or self.kbd_keys):
            return
        now = self.clock.now_ns
        if now < self.kbd_ready_ns:
            if self._timer is None:
                self._timer = self.clock.schedule(self.kbd_ready_ns, self._on_timer)
            return
        while self.kbd_replies or self.kbd_keys:
            byte = self._kbd_next()
            if self.ram[0] & CB_XLATE:
                if byte == SET2_BREAK:
                    self.xlat_break = True
                    continue
                byte = TRANSLATE_8042[byte] | (0x80 if self.xlat_break else 0)
                self.xlat_break = False
            self._load(byte, False)
            return

    def _kbd_next(self) -> int:
        byte = self.kbd_replies.pop(0) if self.kbd_replies else self.kbd_keys.pop(0)
        self.kbd_last = byte
        return byte

    def _load(self, byte: int, aux: bool) -> None:
        self.obuf = byte
        self.obuf_full = True
        self.obuf_aux = aux
        self._update_irqs()

    def _on_timer(self) -> None:
        self._timer = None
        self._fill()

    def _reply(self, byte: int, aux: bool = False) -> None:
        self.replies.append(byte | (AUX_FLAG if aux else 0))

    # -- port 0x60 ------------------------------------------------------------------

    def _data_read(self, offset: int, size: int) -> int:
        # Reading the data port empties the output buffer (and drops the IRQ
        # line); an empty buffer returns the last byte again.
        value = self.obuf
        if self.obuf_full:
            self.obuf_full = False
            if not self.obuf_aux:
                self.kbd_ready_ns = self.clock.now_ns + KBD_BYTE_NS
            self._update_irqs()
            self._fill()
        return value

    def _data_write(self, offset: int, size: int, value: int) -> None:
        self.a2 = False
        cmd, self.pending_cmd = self.pending_cmd, 0
        if cmd:
            self._command_data(cmd, value)
        else:
            # No controller command is waiting for data: the byte goes to
            # the keyboard, whose answers queue behind the output buffer.
            self._keyboard_command(value)
        self._fill()

    def _command_data(self, cmd: int, value: int) -> None:
        if CMD_WRITE_RAM <= cmd <= CMD_WRITE_RAM + 0x1F:
            self.ram[cmd - CMD_WRITE_RAM] = value
            if cmd == CMD_WRITE_RAM:
                self._update_irqs()
        elif cmd == CMD_WRITE_OUTPUT:
            self._write_output_port(value)
        elif cmd == CMD_WRITE_KBD_OBUF:
            # The byte appears as if the keyboard had sent it (translation
            # does not apply: it is placed directly in the buffer).
            self._reply(value)
        elif cmd == CMD_WRITE_AUX_OBUF:
            self._reply(value, aux=True)
        elif cmd == CMD_WRITE_AUX:
            # No aux device is attached: the transmission times out.
            self.status_extra |= ST_TIMEOUT
            self._reply(KBD_NAK, aux=True)
            self.oddity("byte sent to the (absent) PS/2 mouse")

    # -- port 0x64 ----------------------------------------------------------------------

    def _cmd_read(self, offset: int, size: int) -> int:
        return self.status()

    def _cmd_write(self, offset: int, size: int, cmd: int) -> None:
        self.a2 = True
        self.pending_cmd = 0
        if CMD_READ_RAM <= cmd <= CMD_READ_RAM + 0x1F:
            self._reply(self.ram[cmd - CMD_READ_RAM])
        elif CMD_WRITE_RAM <= cmd <= CMD_WRITE_RAM + 0x1F or cmd in (
            CMD_WRITE_OUTPUT, CMD_WRITE_KBD_OBUF, CMD_WRITE_AUX_OBUF, CMD_WRITE_AUX
        ):
            self.pending_cmd = cmd
        elif cmd == CMD_AUX_DISABLE:
            self.ram[0] |= CB_AUX_DISABLE
        elif cmd == CMD_AUX_ENABLE:
            self.ram[0] &= ~CB_AUX_DISABLE
        elif cmd == CMD_AUX_TEST:
            self._reply(0x00)
        elif cmd == CMD_SELF_TEST:
            # Self-test passes; the system flag goes up and the output
            # buffer holds 0x55.
            self.ram[0] |= CB_SYS
            self._reply(SELF_TEST_OK)
        elif cmd == CMD_KBD_TEST:
            self._reply(0x00)
        elif cmd == CMD_KBD_DISABLE:
            self.ram[0] |= CB_KBD_DISABLE
        elif cmd == CMD_KBD_ENABLE:
            self.ram[0] &= ~CB_KBD_DISABLE
        elif cmd == CMD_READ_INPUT:
            self._reply(INPUT_PORT)
        elif cmd == CMD_READ_OUTPUT:
            self._reply(self._output_port_value())
        elif cmd == CMD_A20_OFF:
            self._write_output_port(self.output_port & ~OP_A20)
        elif cmd == CMD_A20_ON:
            self._write_output_port(self.output_port | OP_A20)
        elif cmd == CMD_READ_TEST:
            self._reply(0x00)
        elif cmd >= CMD_PULSE:
            # Pulse output-port bits 3-0 low for 6 us where the command has a
            # 0 bit: bit 0 is the CPU reset line (0xFE is the classic reset).
            if not cmd & OP_RESET:
                self._system_reset()
        else:
            self.oddity(f"controller command {cmd:#04x}")
        self._fill()

    def _output_port_value(self) -> int:
        value = self.output_port & ~(OP_IRQ1 | OP_IRQ12)
        if self._irq1_level:
            value |= OP_IRQ1
        if self._irq12_level:
            value |= OP_IRQ12
        return value

    def _write_output_port(self, value: int) -> None:
        old = self.output_port
        self.output_port = value & ~(OP_IRQ1 | OP_IRQ12)
        if (old ^ value) & OP_A20 and self._on_a20 is not None:
            self._on_a20(bool(value & OP_A20))
        if not value & OP_RESET:
            # Writing 0 to bit 0 asserts the reset line; the line comes back
            # up when the system restarts.
            self.output_port |= OP_RESET
            self._system_reset()

    def _system_reset(self) -> None:
        self.resets += 1
        self.log.debug("system reset requested by the keyboard controller")
        if self._on_reset is not None:
            self._on_reset()

    # -- the keyboard ----------------------------------------------------------------

    def _kbd_defaults(self) -> None:
        self.kbd_set = 2
        self.kbd_typematic = TYPEMATIC_DEFAULT
        self.kbd_leds = 0

    def _keyboard_command(self, value: int) -> None:
        """A byte from the controller to the keyboard.

        1. If a command is waiting for its parameter, this byte is it.
        2. Otherwise the byte is a command: most are ACKed (0xFA) at once;
           those with a parameter ACK and wait for it.
        """
        expect, self.kbd_expect = self.kbd_expect, 0
        out = self.kbd_replies
        if expect == KBD_SET_LEDS:
            self.kbd_leds = value & 0x07
            out.append(KBD_ACK)
            return
        if expect == KBD_TYPEMATIC:
            self.kbd_typematic = value & 0x7F
            out.append(KBD_ACK)
            return
        if expect == KBD_SCANCODE_SET:
            if value == 0:
                out += [KBD_ACK, self.kbd_set]
            elif value in (1, 2):
                self.kbd_set = value
                self.kbd_keys.clear()
                out.append(KBD_ACK)
            else:
                self.oddity(f"scan code set {value}", loud=True)
                out.append(KBD_NAK)
            return
        if value in (KBD_SET_LEDS, KBD_TYPEMATIC, KBD_SCANCODE_SET):
            self.kbd_expect = value
            out.append(KBD_ACK)
        elif value == KBD_ECHO:
            out.append(KBD_ECHO)
        elif value == KBD_IDENTIFY:
            out += [KBD_ACK, *KBD_ID]
        elif value == KBD_ENABLE:
            self.kbd_keys.clear()
            self.kbd_scanning = True
            out.append(KBD_ACK)
        elif value == KBD_DISABLE:
            self.kbd_keys.clear()
            self._kbd_defaults()
            self.kbd_scanning = False
            out.append(KBD_ACK)
        elif value == KBD_DEFAULTS:
            self.kbd_keys.clear()
            self._kbd_defaults()
            out.append(KBD_ACK)
        elif value == KBD_RESEND:
            out.append(self.kbd_last)
        elif value == KBD_RESET:
            # Reset: ACK, run the basic assurance test, report 0xAA; scanning
            # on, set 2, defaults.
            self.kbd_keys.clear()
            self.kbd_replies.clear()
            self._kbd_defaults()
            self.kbd_scanning = True
            out += [KBD_ACK, KBD_BAT_OK]
        elif 0xF7 <= value <= 0xFD:
            out.append(KBD_ACK)  # set-3 key type commands: accepted, no effect
        else:
            self.oddity(f"keyboard command {value:#04x}")
            out.append(KBD_NAK)

    @property
    def leds(self) -> int:
        """Keyboard LEDs: bit 0 Scroll Lock, bit 1 Num Lock, bit 2 Caps Lock."""
        return self.kbd_leds

    # -- host side ----------------------------------------------------------------------

    def _queue(self, codes: bytes) -> None:
        if not self.kbd_scanning or len(self.kbd_keys) + len(codes) > KEY_QUEUE_LIMIT:
            self.dropped_keys += 1
            self.oddity("key dropped (scanning disabled or typing buffer full)")
            return
        self.kbd_keys.extend(codes)
        self._fill()

    def key_down(self, key: str) -> None:
        self._queue(make_set2(key) if self.kbd_set == 2 else make_set1(key))

    def key_up(self, key: str) -> None:
        self._queue(break_set2(key) if self.kbd_set == 2 else break_set1(key))

    def press(self, key: str) -> None:
        """Press and release ``key``: a key name ("Enter", "F1", "Up", "a")
        or a character, shifted as a US keyboard needs ("A", "!")."""
        name = key_name(key) if len(key) != 1 else None
        if name is None:
            name, shift = char_strokes(key)
        else:
            shift = False
        if shift:
            self.key_down("Shift")
        self.key_down(name)
        self.key_up(name)
        if shift:
            self.key_up("Shift")

    def type_text(self, text: str) -> None:
        """Type ``text`` (printable ASCII plus \\n, \\t, \\b, ESC) key by key."""
        for ch in text:
            self.press(ch)

    def pending_bytes(self) -> int:
        return len(self.kbd_keys) + len(self.kbd_replies) + len(self.replies) + int(self.obuf_full)

    # -- lifecycle --------------------------------------------------------------------

    def reset(self) -> None:
        self.clock.cancel(self._timer)
        self._timer = None
        self.ram = bytearray(32)
        self.ram[0] = CB_POST_DEFAULT
        self.status_extra = 0
        self.a2 = False
        self.output_port = OP_POST_DEFAULT
        self.obuf = 0
        self.obuf_full = False
        self.obuf_aux = False
        self.pending_cmd = 0
        self.replies: list[int] = []
        self.xlat_break = False
        self.kbd_ready_ns = 0
        self.kbd_replies: list[int] = []
        self.kbd_keys: list[int] = []
        self.kbd_scanning = True
        self._kbd_defaults()
        self.kbd_expect = 0
        self.kbd_last = 0
        self._update_irqs()

    def save(self) -> KbcState:
        return KbcState(
            ram=bytes(self.ram), status_extra=self.status_extra, a2=self.a2,
            output_port=self.output_port, obuf=self.obuf, obuf_full=self.obuf_full,
            obuf_aux=self.obuf_aux, pending_cmd=self.pending_cmd, replies=list(self.replies),
            xlat_break=self.xlat_break, kbd_ready_ns=self.kbd_ready_ns,
            kbd_replies=list(self.kbd_replies), kbd_keys=list(self.kbd_keys),
            kbd_scanning=self.kbd_scanning, kbd_set=self.kbd_set, kbd_leds=self.kbd_leds,
            kbd_typematic=self.kbd_typematic, kbd_expect=self.kbd_expect, kbd_last=self.kbd_last,
        )

    def restore(self, state: KbcState) -> None:
        """Restore; the A20 output is re-announced through ``on_a20`` so the
        A20 gate combiner (``port92.A20Gate``) agrees with the controller."""
        self._check_state(state, KbcState)
        self.clock.cancel(self._timer)
        self._timer = None
        self.ram = bytearray(state.ram)
        for name in KbcState.__dataclass_fields__:
            if name != "ram":
                value = getattr(state, name)
                setattr(self, name, list(value) if isinstance(value, list) else value)
        # The IRQ line levels are in the PIC's snapshot; recompute ours.
        cb = self.ram[0]
        self._irq1_level = self.obuf_full and not self.obuf_aux and bool(cb & CB_KBD_INT)
        self._irq12_level = self.obuf_full and self.obuf_aux and bool(cb & CB_AUX_INT)
        if self._on_a20 is not None:
            self._on_a20(self.a20)
        self._fill()
