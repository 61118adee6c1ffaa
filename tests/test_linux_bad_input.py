"""`hybrid86 run --kernel/--initrd/--append` with bad input: one line on
stderr, exit status 2, the files untouched (docs/linux-boot.md)."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest

from test_linux_boot_protocol import make_bzimage
from test_run_errors import one_line_error


def run(*args):
    return subprocess.run([sys.executable, "-m", "monitor", "run", "--headless", "--timeout", "30", *args],
                          capture_output=True, text=True, timeout=120)


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def kernel(tmp_path):
    path = tmp_path / "bzImage"
    path.write_bytes(make_bzimage())
    return path


def write(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_not_a_bzimage(tmp_path):
    path = write(tmp_path, "notes.txt", b"just some text, not a kernel\n" * 100)
    before = digest(path)
    one_line_error(run("--kernel", str(path)), "--kernel", "notes.txt", "HdrS")
    assert digest(path) == before


def test_missing_kernel(tmp_path):
    one_line_error(run("--kernel", str(tmp_path / "nope")), "--kernel", "nope", "No such file")


def test_truncated_kernel(tmp_path):
    path = write(tmp_path, "cut", make_bzimage(truncate=100))
    one_line_error(run("--kernel", str(path)), "--kernel", "cut", "truncated")


def test_syssize_beyond_the_file(tmp_path):
    path = write(tmp_path, "big-syssize", make_bzimage(syssize=0x100000))
    one_line_error(run("--kernel", str(path)), "truncated", "file has")


def test_protocol_too_old(tmp_path):
    path = write(tmp_path, "old", make_bzimage(version=0x0202))
    one_line_error(run("--kernel", str(path)), "--kernel", "2.02", "too old", "2.04")


def test_zimage(tmp_path):
    path = write(tmp_path, "zImage", make_bzimage(loadflags=0))
    one_line_error(run("--kernel", str(path)), "zImage")


def test_initrd_too_large_for_the_memory(tmp_path, kernel):
    initrd = write(tmp_path, "huge.img", b"\0" * (15 << 20))
    before = digest(initrd), digest(kernel)
    one_line_error(run("--kernel", str(kernel), "--initrd", str(initrd), "--memory", "16"),
                   "--initrd", "huge.img", "too large", "--memory 20 or more")
    assert (digest(initrd), digest(kernel)) == before


def test_initrd_above_initrd_addr_max(tmp_path):
    kernel = write(tmp_path, "k", make_bzimage(initrd_addr_max=0x3FFFFF))
    initrd = write(tmp_path, "rd", b"\1" * (2 << 20))
    one_line_error(run("--kernel", str(kernel), "--initrd", str(initrd), "--memory", "64"),
                   "too large", "initrd_addr_max 0x3fffff", "cannot take")


def test_kernel_needs_more_memory(tmp_path):
    kernel = write(tmp_path, "k", make_bzimage(pref_address=0x1000000, init_size=0x1000000))
    one_line_error(run("--kernel", str(kernel), "--memory", "16"), "--kernel", "32.0 MiB", "--memory 32 or more")


def test_missing_and_empty_initrd(tmp_path, kernel):
    one_line_error(run("--kernel", str(kernel), "--initrd", str(tmp_path / "gone")), "--initrd", "gone")
    empty = write(tmp_path, "empty", b"")
    one_line_error(run("--kernel", str(kernel), "--initrd", str(empty)), "--initrd", "empty")


def test_command_line_over_cmdline_size(tmp_path):
    kernel = write(tmp_path, "k", make_bzimage(cmdline_size=20))
    one_line_error(run("--kernel", str(kernel), "--append", "x" * 21), "--append", "21 bytes", "at most 20")


def test_initrd_and_append_need_a_kernel(tmp_path):
    initrd = write(tmp_path, "rd", b"\1" * 4096)
    one_line_error(run("--initrd", str(initrd)), "--initrd needs --kernel")
    one_line_error(run("--append", "console=ttyS0"), "--append needs --kernel")


def test_boot_option_with_a_kernel(kernel):
    one_line_error(run("--kernel", str(kernel), "--boot", "a"), "--boot", "--kernel")


def test_a_kernel_boots_with_a_disk_attached(tmp_path, kernel):
    """--fda is allowed next to --kernel: the kernel boots (a blank floppy
    would be refused as a boot disk), the disk stays for the guest."""
    floppy = write(tmp_path, "blank.img", b"\0" * 1474560)
    before = digest(floppy), digest(kernel)
    res = run("--kernel", str(kernel), "--fda", str(floppy), "--append", "with a floppy", "--debugcon", "stdio")
    assert res.returncode == 0xFF, res.stderr                  # type_of_loader, written by the test kernel
    assert res.stdout == "with a floppy"
    assert (digest(floppy), digest(kernel)) == before


def test_a_kernel_boot_defaults_to_128_mib(kernel, tmp_path):
    # 128 MiB is needed for the initrd to fit; with the default 16 it would not.
    initrd = write(tmp_path, "rd", b"\2" * (40 << 20))
    res = run("--kernel", str(kernel), "--initrd", str(initrd), "--debugcon", "stdio")
    assert res.returncode == 0xFF, res.stderr
