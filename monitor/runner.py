"""`hybrid86 run`: boot a guest and watch it, interactively or headless.

Exit status: the value the guest wrote to port 0xF4; 0 when --expect text
appeared or the user quit; 124 on --timeout; 1 when the machine stopped for
another reason (the reason is printed); 2 for bad input.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field

from devices.disk import DiskError, RawImage
from monitor.pc import PC, PCConfig

EXIT_TIMEOUT = 124
DEFAULT_MB = 16          # --memory without --kernel
LINUX_DEFAULT_MB = 128   # --memory with --kernel (QEMU's default; Debian's i386 kernel runs from 16 MiB)


class RunError(Exception):
    """Bad input: one line, exit status 2."""


def _unescape(text: str, option: str, escapes: dict):
    """(True, escapes[c]) for each backslash escape \\c of `text`, (False, ch)
    for every other character; an unknown escape is a RunError naming `option`."""
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt not in escapes:
                known = " ".join("\\" + k for k in escapes if k != "\\")
                raise RunError(f"{option}: unknown escape \\{nxt} (use {known} or \\\\)")
            yield True, escapes[nxt]
            i += 2
            continue
        yield False, ch
        i += 1


def parse_serial_keys(text: str, option: str = "--serial-keys") -> bytes:
    """--serial-keys: bytes for COM1, with \\r \\n \\t \\e (Esc) and \\\\ escapes."""
    out = bytearray()
    for escaped, value in _unescape(text, option, {"r": 13, "n": 10, "t": 9, "e": 27, "\\": 92}):
        if not escaped and ord(value) > 0x7E:
            raise RunError(f"{option}: character {value!r} is not ASCII")
        out.append(value if escaped else ord(value))
    return bytes(out)


def parse_keys(text: str) -> list[str]:
    """--keys: printable characters plus \\r (Enter), \\n, \\t, \\b, \\e (Esc), \\\\."""
    keys = []
    escapes = {"r": "Enter", "n": "Enter", "t": "Tab", "b": "Backspace", "e": "Esc", "\\": "\\"}
    for escaped, value in _unescape(text, "--keys", escapes):
        if escaped:
            keys.append(value)
        elif value in "\r\n":
            keys.append("Enter")
        elif not (0x20 <= ord(value) < 0x7F):
            raise RunError(f"--keys: character {value!r} cannot be typed on the emulated keyboard")
        else:
            keys.append(value)
    return keys


class Sink:
    """An output destination for --serial / --debugcon: stdio, file:PATH or none."""

    def __init__(self, spec: str, option: str):
        self.buffer = bytearray()
        self.file = None
        self.stdio = False
        if spec == "stdio":
            self.stdio = True
        elif spec.startswith("file:") and len(spec) > 5:
            try:
                self.file = open(spec[5:], "wb")
            except OSError as exc:
                raise RunError(f"{option} {spec}: {exc.strerror}") from exc
        elif spec != "none":
            raise RunError(f"{option} takes stdio, file:PATH or none, not {spec!r}")

    def write(self, data: bytes) -> None:
        self.buffer += data
        if self.stdio:
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
        elif self.file is not None:
            self.file.write(data)
            self.file.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def check_image(path: str, option: str, floppy: bool, boot: bool) -> None:
    """Fail early with one line for a missing, unreadable, odd-sized or (for the
    boot drive) unbootable image.  The disk errors name the file themselves."""
    try:
        image = RawImage(path, writable=False, media="floppy" if floppy else "hdd")
    except DiskError as exc:
        raise RunError(f"{option}: {exc}") from exc
    try:
        if boot:
            image.check_bootable()
    except DiskError as exc:
        raise RunError(f"{option}: {exc}") from exc
    finally:
        image.close()


@dataclass
class RunResult:
    status: int
    reason: str
    statistics: dict = field(default_factory=dict)


class Runner:
    def __init__(self, args):
        self.args = args
        self.demo_path = None
        kernel = getattr(args, "kernel", None)
        for option, value in (("--initrd", getattr(args, "initrd", None)), ("--append", getattr(args, "append", None))):
            if value is not None and kernel is None:
                raise RunError(f"{option} needs --kernel (a Linux bzImage to boot)")
        if kernel is not None and args.boot:
            raise RunError("--boot: with --kernel the kernel is what boots; leave --boot out "
                           "(--fda/--hda stay available to the guest)")
        if args.memory is None:
            args.memory = LINUX_DEFAULT_MB if kernel is not None else DEFAULT_MB
        if not args.fda and not args.hda and kernel is None:
            if args.boot == "c":
                raise RunError("--boot c needs a hard-disk image (--hda)")
            self._use_demo(args)
        if args.memory < 1 or args.memory > 3072:
            raise RunError(f"--memory {args.memory}: give a size between 1 and 3072 MiB")
        if args.timeout is not None and args.timeout <= 0:
            raise RunError("--timeout must be a positive number of seconds")
        self.keys = parse_keys(args.keys) if args.keys else []
        self.serial_keys = parse_serial_keys(getattr(args, "serial_keys", None) or "")
        after = getattr(args, "serial_keys_after", None)
        self.serial_keys_after = parse_serial_keys(after, "--serial-keys-after") if after else None
        boot = args.boot or ("a" if args.fda else "c")
        if kernel is None and boot == "a" and not args.fda:
            raise RunError("--boot a needs a floppy image (--fda)")
        if kernel is None and boot == "c" and not args.hda:
            raise RunError("--boot c needs a hard-disk image (--hda)")
        for path, option, floppy, drive in ((args.fda, "--fda", True, "a"), (args.hda, "--hda", False, "c")):
            if path:
                check_image(path, option, floppy, boot=(kernel is None and drive == boot))
        self.linux = None
        if kernel is not None:
            from monitor.linux import LinuxBootError, prepare

            try:
                self.linux = prepare(kernel, getattr(args, "initrd", None), getattr(args, "append", None),
                                     args.memory << 20)
            except LinuxBootError as exc:
                raise RunError(str(exc)) from exc
        self.serial_console = self.linux is not None or bool(getattr(args, "serial_console", False))
        if self.serial_console and not args.headless and args.serial == "none":
            args.serial = "stdio"                 # the serial console is the terminal (SerialTerminal)
        elif getattr(args, "serial_console", False) and not args.headless and args.serial != "stdio":
            raise RunError("--serial-console shows COM1 in the terminal: give --serial stdio or leave --serial out")
        self.serial = Sink(args.serial, "--serial")
        self.debugcon = Sink(args.debugcon, "--debugcon")
        self.pc = PC(PCConfig(memory_mb=args.memory, fda=args.fda, hda=args.hda, boot=boot,
                              writable=args.writable, serial_write=self.serial.write,
                              debugcon_write=self.debugcon.write, linux_boot=self.linux))
        self.expect = args.expect.encode() if args.expect else None
        self.found = False
        self.quit = False
        self.typed = 0
        self.waiting_started = False

    def _use_demo(self, args) -> None:
        """No image: boot the built-in demo guest (monitor/guests/demo,
        docs/demo-guest.md), headless, COM1 on stdout, statistics at the end."""
        import tempfile

        from monitor.guests.demo import GuestToolError, build_demo_image

        print("hybrid86: no image given: booting the built-in demo guest "
              "(protected mode, paging, ring 3, V8086; docs/demo-guest.md)", file=sys.stderr)
        fd, path = tempfile.mkstemp(prefix="hybrid86-demo-", suffix=".img")
        os.close(fd)
        try:
            build_demo_image(path)
        except GuestToolError as exc:
            os.unlink(path)
            raise RunError(f"the built-in demo guest could not be built: {exc}") from exc
        self.demo_path = args.fda = path
        args.headless = True
        if args.serial == "none":
            args.serial = "stdio"
        if args.stats is None:
            args.stats = "-"
        if args.timeout is None:
            args.timeout = 300.0

    # -- watching the guest --------------------------------------------------------

    def _expect_seen(self) -> bool:
        text = self.expect.decode("latin-1")
        return (self.expect in self.serial.buffer or self.expect in self.debugcon.buffer
                or text in self.pc.vga.screen_dump())

    def _feed_keys(self) -> None:
        """Type --keys one at a time, whenever the BIOS keyboard buffer is empty,
        starting once the guest first asked the BIOS for a key."""
        if self.typed >= len(self.keys):
            return
        ram = self.pc.machine.memory.ram
        if not self.waiting_started:
            self.waiting_started = self.pc.bios.calls.get(0x16, 0) > 0
            if not self.waiting_started:
                return
        head, tail = ram[0x41A] | ram[0x41B] << 8, ram[0x41C] | ram[0x41D] << 8
        if head == tail and self.pc.kbc.pending_bytes() == 0:
            self.pc.kbc.press(self.keys[self.typed])
            self.typed += 1

    def _feed_serial(self) -> None:
        """Type --serial-keys into COM1 once the guest listens on it (receive
        interrupt enabled), as fast as its receiver takes them."""
        if not self.serial_keys:
            return
        if self.serial_keys_after is not None:
            if self.serial_keys_after not in self.serial.buffer:
                return
            self.serial_keys_after = None
        uart = self.pc.uart
        if not uart.ier & 0x01:
            return
        room = uart.rx_room()
        if room > 0:
            chunk, self.serial_keys = self.serial_keys[:room], self.serial_keys[room:]
            uart.feed(chunk)

    def poll(self) -> None:
        self._feed_keys()
        self._feed_serial()
        if self.expect is not None and not self.found and self._expect_seen():
            self.found = True
            self.pc.machine.stop(f"found {self.args.expect!r}")

    # -- running --------------------------------------------------------------------

    def run(self) -> RunResult:
        machine = self.pc.machine
        machine.on_poll = self.poll
        started = time.monotonic()
        try:
            if self.args.headless:
                reason = machine.run(timeout_s=self.args.timeout)
            else:
                reason = self._interactive()
        finally:
            self.serial.close()
            self.debugcon.close()
            if self.demo_path:
                os.unlink(self.demo_path)
        elapsed = time.monotonic() - started
        if self.args.screen_dump:
            with open(self.args.screen_dump, "w", encoding="utf-8") as f:
                f.write(self.pc.vga.screen_dump())
        stats = machine.statistics()
        stats["seconds"] = round(elapsed, 3)
        stats["bios_calls"] = {f"{k:02x}": v for k, v in sorted(self.pc.bios.calls.items())}
        stats["key_waits"] = self.pc.key_waits
        stats["idle_halts"] = self.pc.idle_halts
        self.pc.close()
        if self.found or self.quit:
            status = 0
        elif machine.exit_status is not None:
            status = machine.exit_status
        elif reason.startswith("timeout"):
            status = EXIT_TIMEOUT
        else:
            status = 1
        return RunResult(status, reason, stats)

    def _interactive(self) -> str:
        from monitor.terminal import Terminal

        if not sys.stdin.isatty():
            raise RunError("interactive mode needs a terminal; use --headless (with --expect/--timeout)")

        def quit_():
            self.quit = True
            self.pc.machine.stop("quit by the user")

        if self.serial_console:
            from monitor.terminal import SerialTerminal

            with SerialTerminal(self.pc.uart, quit_) as term:
                def poll_serial():
                    term.poll()
                    self.poll()
                self.pc.machine.on_poll = poll_serial
                return self.pc.machine.run(timeout_s=self.args.timeout)
        with Terminal(self.pc.vga, self.pc.kbc, quit_) as term:
            def poll():
                term.poll()
                self.poll()
            self.pc.machine.on_poll = poll
            return self.pc.machine.run(timeout_s=self.args.timeout)


def format_statistics(stats: dict) -> str:
    lines = ["hybrid86 statistics"]
    for key, value in stats.items():
        if isinstance(value, dict):
            lines.append(f"  {key}:")
            for k, v in value.items():
                lines.append(f"    {k:<30}{v}")
        else:
            lines.append(f"  {key:<32}{value}")
    return "\n".join(lines)


def write_statistics(stats: dict, spec: str) -> None:
    if spec == "-":
        print(format_statistics(stats), file=sys.stderr)
    elif spec.startswith("json:"):
        with open(spec[5:], "w") as f:
            json.dump(stats, f, indent=2, sort_keys=True)
    else:
        raise RunError(f"--stats takes no value or json:FILE, not {spec!r}")
