"""The interactive front end: the guest's VGA text screen in the terminal and
the terminal's keys on the guest's keyboard.

* A reader thread turns bytes from stdin (raw mode) into key names and queues
  them; the run loop, which owns every device, takes them off the queue at
  each iteration (`poll`) and presses them on the 8042.
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


class Terminal:
    """Owns the tty while a guest runs interactively."""

    def __init__(self, vga, keyboard, on_quit, stdin=None, stdout=None):
        self.vga = vga
        self.keyboard = keyboard
        self.on_quit = on_quit
        self.stdin = stdin or sys.stdin
        self.stdout = stdout or sys.stdout
        self.keys: queue.Queue[str] = queue.Queue()
        self._saved = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_screen = None
        self._last_draw = 0.0

    def __enter__(self):
        import termios
        import tty

        fd = self.stdin.fileno()
        self._saved = termios.tcgetattr(fd)
        tty.setraw(fd)
        self.stdout.write("\x1b[?1049h\x1b[?25l\x1b[2J")   # alternate screen, hide cursor
        self.stdout.flush()
        self._thread = threading.Thread(target=self._reader, name="hybrid86-keys", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        import termios

        self._stop.set()
        self.stdout.write("\x1b[0m\x1b[?25h\x1b[?1049l")
        self.stdout.flush()
        if self._saved is not None:
            termios.tcsetattr(self.stdin.fileno(), termios.TCSADRAIN, self._saved)
        return False

    def _reader(self) -> None:
        fd = self.stdin.fileno()
        while not self._stop.is_set():
            ready, _, _ = select.select([fd], [], [], 0.1)
            if not ready:
                continue
            data = os.read(fd, 64)
            if not data:
                return
            if QUIT_BYTE in data:
                self.keys.put("\0quit")
                return
            for key in decode_keys(data):
                self.keys.put(key)

    def poll(self) -> None:
        """Called by the run loop: deliver queued keys, redraw when needed."""
        while True:
            try:
                key = self.keys.get_nowait()
            except queue.Empty:
                break
            if key == "\0quit":
                self.on_quit()
                return
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


class SerialTerminal:
    """The interactive front end for a serial-console guest (Linux with
    console=ttyS0), as QEMU's -nographic: the terminal's bytes go to COM1's
    receiver, COM1's output is written to stdout by the run's serial sink.
    Ctrl-] quits."""

    def __init__(self, uart, on_quit, stdin=None):
        self.uart = uart
        self.on_quit = on_quit
        self.stdin = stdin or sys.stdin
        self.pending = bytearray()
        self.incoming: queue.Queue[bytes] = queue.Queue()
        self._saved = None
        self._stop = threading.Event()

    def __enter__(self):
        import termios
        import tty

        fd = self.stdin.fileno()
        self._saved = termios.tcgetattr(fd)
        tty.setraw(fd)
        threading.Thread(target=self._reader, name="hybrid86-serial-in", daemon=True).start()
        return self

    def __exit__(self, *exc):
        import termios

        self._stop.set()
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

    def poll(self) -> None:
        while True:
            try:
                data = self.incoming.get_nowait()
            except queue.Empty:
                break
            if QUIT_BYTE in data:
                self.on_quit()
                return
            self.pending += data
        if self.pending:
            room = self.uart.rx_room()
            if room > 0:
                chunk, self.pending = bytes(self.pending[:room]), self.pending[room:]
                self.uart.feed(chunk)
