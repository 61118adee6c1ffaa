"""The interactive front end: the guest's VGA text screen in the terminal and
the terminal's keys on the guest's keyboard.

* A reader thread queues the bytes from stdin (raw mode); the run loop,
  which owns every device, takes them at each iteration (`poll`) and turns
  them into key presses on the 8042 (`Terminal`) or bytes for COM1's
  receiver (`SerialTerminal`, a serial-console guest).
* The screen is redrawn (24-bit colour ANSI) when text memory, the cursor or
  the attribute controller changed, at most every REDRAW_S seconds.
* Ctrl-] quits (as telnet does); the terminal is restored on every exit path.
"""

from __future__ import annotations

import os
import queue
import select
import sys
import threading
import time

QUIT_BYTE = 0x1D            # Ctrl-]
QUIT_KEY_HELP = "Ctrl-]"
REDRAW_S = 0.05

# Escape sequences of common terminals -> key names understood by devices.i8042.
ESCAPES = {
    b"\x1b[A": "Up", b"\x1b[B": "Down", b"\x1b[C": "Right", b"\x1b[D": "Left",
    b"\x1b[H": "Home", b"\x1b[F": "End", b"\x1b[2~": "Insert", b"\x1b[3~": "Delete",
    b"\x1b[5~": "PageUp", b"\x1b[6~": "PageDown",
    b"\x1bOP": "F1", b"\x1bOQ": "F2", b"\x1bOR": "F3", b"\x1bOS": "F4",
    b"\x1b[15~": "F5", b"\x1b[17~": "F6", b"\x1b[18~": "F7", b"\x1b[19~": "F8",
    b"\x1b[20~": "F9", b"\x1b[21~": "F10", b"\x1b[23~": "F11", b"\x1b[24~": "F12",
}


def decode_keys(data: bytes) -> list[str]:
    """Split terminal input into key names / characters for I8042.press()."""
    keys: list[str] = []
    i = 0
    while i < len(data):
        if data[i] == 0x1B:
            for seq, name in ESCAPES.items():
                if data.startswith(seq, i):
                    keys.append(name)
                    i += len(seq)
                    break
            else:
                keys.append("Esc")
                i += 1
            continue
        b = data[i]
        i += 1
        if b in (0x0D, 0x0A):
            keys.append("Enter")
        elif b in (0x7F, 0x08):
            keys.append("Backspace")
        elif b == 0x09:
            keys.append("Tab")
        elif 0x20 <= b < 0x7F:
            keys.append(chr(b))
        # other control bytes are not typed
    return keys


class RawTty:
    """Owns the tty while a guest runs interactively: raw mode, a reader
    thread queueing what is typed, the tty restored on every exit path.
    `typed()` hands the run loop what arrived since; Ctrl-] quits."""

    ENTER = LEAVE = ""                      # escape sequences written around the session

    def __init__(self, on_quit, stdin=None, stdout=None):
        self.on_quit = on_quit
        self.stdin = stdin or sys.stdin
        self.stdout = stdout or sys.stdout
        self.incoming: queue.Queue[bytes] = queue.Queue()
        self._saved = None
        self._stop = threading.Event()

    def __enter__(self):
        import termios
        import tty

        fd = self.stdin.fileno()
        self._saved = termios.tcgetattr(fd)
        tty.setraw(fd)
        if self.ENTER:
            self.stdout.write(self.ENTER)
            self.stdout.flush()
        threading.Thread(target=self._reader, name="hybrid86-tty-in", daemon=True).start()
        return self

    def __exit__(self, *exc):
        import termios

        self._stop.set()
        if self.LEAVE:
            self.stdout.write(self.LEAVE)
            self.stdout.flush()
        if self._saved is not None:
            termios.tcsetattr(self.stdin.fileno(), termios.TCSADRAIN, self._saved)
        return False

    def _reader(self) -> None:
        fd = self.stdin.fileno()
        while not self._stop.is_set():
            ready, _, _ = select.select([fd], [], [], 0.1)
            if ready:
                data = os.read(fd, 256)
                if not data:
                    return
                self.incoming.put(data)

    def typed(self) -> bytes | None:
        """The bytes typed since the last call, or None when the user quit
        (`on_quit` has then been called)."""
        out = bytearray()
        while True:
            try:
                data = self.incoming.get_nowait()
            except queue.Empty:
                return bytes(out)
            if QUIT_BYTE in data:
                self.on_quit()
                return None
            out += data


class Terminal(RawTty):
    """The guest's VGA text screen in the terminal, the terminal's keys on its keyboard."""

    ENTER = "\x1b[?1049h\x1b[?25l\x1b[2J"        # alternate screen, hide cursor
    LEAVE = "\x1b[0m\x1b[?25h\x1b[?1049l"

    def __init__(self, vga, keyboard, on_quit, stdin=None, stdout=None):
        super().__init__(on_quit, stdin, stdout)
        self.vga = vga
        self.keyboard = keyboard
        self._last_screen = None
        self._last_draw = 0.0

    def poll(self) -> None:
        """Called by the run loop: press the typed keys, redraw when needed."""
        data = self.typed()
        if data is None:
            return
        for key in decode_keys(data):
            self.keyboard.press(key)
        now = time.monotonic()
        if now - self._last_draw >= REDRAW_S:
            self._last_draw = now
            screen = (self.vga.render_ansi(), self.vga.cursor())
            if screen != self._last_screen:
                self._last_screen = screen
                text, (row, col) = screen
                self.stdout.write("\x1b[H" + text.replace("\n", "\r\n")
                                  + f"\x1b[{row + 1};{col + 1}H\x1b[?25h")
                self.stdout.flush()


class SerialTerminal(RawTty):
    """The interactive front end for a serial-console guest (Linux with
    console=ttyS0), as QEMU's -nographic: the terminal's bytes go to COM1's
    receiver, COM1's output is written to stdout by the run's serial sink.
    Ctrl-] quits."""

    def __init__(self, uart, on_quit, stdin=None):
        super().__init__(on_quit, stdin)
        self.uart = uart
        self.pending = bytearray()

    def poll(self) -> None:
        data = self.typed()
        if data is None:
            return
        self.pending += data
        if self.pending:
            room = self.uart.rx_room()
            if room > 0:
                chunk, self.pending = bytes(self.pending[:room]), self.pending[room:]
                self.uart.feed(chunk)
