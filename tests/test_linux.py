"""Debian's i386 kernel and a busybox initramfs (../shared/guests/linux) on
hybrid86: the boot protocol, the real-mode setup code through the BT, the
kernel in BT, user space in DE, the interrupt-driven 16550 console (issue 5).

Each test boots the kernel once (about a minute on this machine type)."""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import subprocess
import sys

import pytest

from guests import guest_image
from monitor.linux import cpio

KERNEL = "linux/vmlinuz-6.1.0-50-686"
INITRD = "linux/initramfs-busybox.cpio.gz"
TIMEOUT = 600


def _run(tmp_path, append: str, *extra: str):
    stats = tmp_path / "stats.json"
    cmd = [sys.executable, "-m", "monitor", "run", "--headless", "--kernel", guest_image(KERNEL),
           "--initrd", guest_image(INITRD), "--append", append, "--serial", "stdio",
           "--timeout", str(TIMEOUT), "--stats", f"json:{stats}", *extra]
    res = subprocess.run(cmd, capture_output=True, timeout=TIMEOUT + 60)
    return res, res.stdout.decode("latin-1"), json.loads(stats.read_text())


def test_linux_boots_to_its_marker_and_powers_off(tmp_path):
    res, out, st = _run(tmp_path, "console=ttyS0")
    assert "LINUX-BOOT-OK 6.1.0-50-686" in out, (out[-2000:], res.stderr.decode()[-2000:])
    # /init ran "poweroff -f": the kernel halts with interrupts off, an orderly end.
    assert b"the guest halted with interrupts disabled" in res.stderr
    assert st["bt_instructions_real_mode"] > 10_000           # the kernel's real-mode setup code
    assert st["bt_instructions_protected"] > 100_000_000      # the kernel, translated
    assert st["de_instructions"] > 100_000                    # busybox, run directly
    assert st["world_switches"] > 100
    assert st["page_faults_reflected"] > 50                   # user-space demand paging
    assert st["sysenter"] + st["de_software_interrupts"] > 50  # system calls
    assert st["interrupts_delivered"] > 100                   # PIT and the UART on the 8259


def test_the_busybox_shell_answers_over_the_serial_console(tmp_path):
    commands = r"uname -a\rcat /proc/interrupts\rls /proc\rmd5sum /bin/busybox\recho DONE-$((6*7))\r"
    res, out, st = _run(tmp_path, "console=ttyS0 hybrid86.shell", "--serial-keys", commands,
                        "--serial-keys-after", "/ # ", "--expect", "DONE-42")
    assert res.returncode == 0, (out[-2000:], res.stderr.decode()[-2000:])
    # Each answer follows the shell's prompt and the command it answers (the
    # commands are typed once the first prompt shows, and the tty echoes them).
    # (busybox asks the terminal for the cursor position, ESC [6n, at a prompt
    # with no input pending: the escape sequences are dropped first)
    out = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out)
    answers = {part.split("\r\n", 1)[0].strip(): part for part in out.split("/ # ")[1:]}
    assert "Linux (none) 6.1.0-50-686" in answers["uname -a"] and "i686 GNU/Linux" in answers["uname -a"]
    interrupts = answers["cat /proc/interrupts"]
    assert "XT-PIC" in interrupts and "timer" in interrupts and "ttyS0" in interrupts
    assert "interrupts" in answers["ls /proc"] and "cpuinfo" in answers["ls /proc"]
    with open(guest_image(INITRD), "rb") as f:
        entries = {e.name.lstrip("/").lstrip("./"): e for e in cpio.read(gzip.decompress(f.read()))}
    expected = hashlib.md5(entries["bin/busybox"].data).hexdigest()
    assert f"{expected}  /bin/busybox" in answers["md5sum /bin/busybox"]


def test_linux_boots_from_a_hard_disk_through_syslinux(tmp_path):
    """A boot loader (SYSLINUX, from `hybrid86 guest linux-disk`) loads the
    kernel and the initrd through int 13h, then the same boot as above."""
    from monitor.linux.disk import build_boot_disk, missing_tools

    if missing_tools():
        pytest.skip(f"{', '.join(missing_tools())} not installed (Debian: apt-get install mtools syslinux)")
    disk = build_boot_disk(guest_image(KERNEL), guest_image(INITRD), str(tmp_path / "linux-hd.img"))
    stats = tmp_path / "stats.json"
    cmd = [sys.executable, "-m", "monitor", "run", "--headless", "--hda", disk, "--memory", "128",
           "--serial", "stdio", "--timeout", str(TIMEOUT), "--stats", f"json:{stats}"]
    res = subprocess.run(cmd, capture_output=True, timeout=TIMEOUT + 60)
    out = res.stdout.decode("latin-1")
    assert "Kernel command line: BOOT_IMAGE=vmlinuz console=ttyS0 initrd=initrd.gz" in out, out[-2000:]
    assert "LINUX-BOOT-OK 6.1.0-50-686" in out, (out[-2000:], res.stderr.decode()[-2000:])
    assert b"the guest halted with interrupts disabled" in res.stderr
    st = json.loads(stats.read_text())
    # 5.7 MB of kernel and 1 MB of initrd came through the BIOS disk service
    assert st["bios_calls"]["13"] > 20
    assert st["bt_instructions_real_mode"] > 10_000 and st["de_instructions"] > 100_000
