"""The demo guest (monitor/guests/demo) against QEMU, the reference PC.

QEMU's TCG with SeaBIOS is the oracle: the demo must run every step to "ok",
print the marker and exit through isa-debug-exit with the success value
before hybrid86 is asked to do the same.  Skips where nasm or
qemu-system-i386 is not installed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from importlib.resources import files

import pytest

from monitor.guests.demo import (
    DEMO_MARKER, FLOPPY_SIZE, KERNEL_MAX, STEP_NAMES, build_demo_image, exit_status_ok, step_lines,
)

QEMU = "qemu-system-i386"
QEMU_TIMEOUT = 60
SECTOR_SIZE = 512


def need(tool: str, package: str) -> None:
    if shutil.which(tool) is None:
        pytest.skip(f"needs {tool} (apt-get install {package})")


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    need("nasm", "nasm")
    path = tmp_path_factory.mktemp("demo") / "demo.img"
    build_demo_image(str(path), cache=False)
    return path


def test_builder_makes_a_bootable_floppy_image(image):
    data = image.read_bytes()
    assert len(data) == FLOPPY_SIZE == 1_474_560
    assert data[510:512] == b"\x55\xaa"
    # The kernel follows the boot sector and fits below 0x12000 once loaded at 0x8000.
    kernel_end = len(data.rstrip(b"\0"))
    assert SECTOR_SIZE < kernel_end <= SECTOR_SIZE + KERNEL_MAX
    # The build is reproducible, and returns bytes without a path.
    assert build_demo_image(cache=False) == data



def test_step_names_match_the_kernel_source():
    source = files("monitor.guests").joinpath("demo", "kernel.asm").read_text()
    names = re.findall(r'^name(\d\d): db "([^"]+)", 0$', source, re.M)
    assert [(int(n), name) for n, name in names] == list(enumerate(STEP_NAMES, 1))
    assert step_lines()[0] == "step 01 real-mode: ok" and len(step_lines()) == 10


def test_runs_every_step_to_ok_under_qemu(image, tmp_path):
    need(QEMU, "qemu-system-x86")
    serial, debugcon = tmp_path / "serial.txt", tmp_path / "debugcon.txt"
    cmd = [QEMU, "-display", "none", "-no-reboot", "-m", "16",
           "-drive", f"if=floppy,format=raw,readonly=on,file={image}",
           "-serial", f"file:{serial}", "-debugcon", f"file:{debugcon}",
           "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=QEMU_TIMEOUT)
    except subprocess.TimeoutExpired:
        out = serial.read_text(errors="replace") if serial.exists() else ""
        pytest.fail(f"QEMU still running after {QEMU_TIMEOUT} s; serial output so far:\n{out}")
    out = serial.read_text(errors="replace")
    lines = [line.rstrip() for line in out.splitlines()]
    report = f"exit status {res.returncode}, stderr {res.stderr.strip()!r}, serial output:\n{out}"

    assert not [line for line in lines if "FAIL" in line], report
    # Every step's line, in order.
    positions = []
    for expected in step_lines():
        assert expected in lines, f"missing {expected!r}; {report}"
        positions.append(lines.index(expected))
    assert positions == sorted(positions), report
    # The marker comes last, on the serial port and on the 0xE9 console.
    assert lines.index(DEMO_MARKER.decode()) > positions[-1], report
    assert DEMO_MARKER in debugcon.read_bytes(), report
    # The guest wrote 0 to port 0xF4: isa-debug-exit exits with (0 << 1) | 1.
    assert exit_status_ok(res.returncode, qemu=True), report
