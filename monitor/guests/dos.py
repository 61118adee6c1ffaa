"""Build a scriptable variant of a DOS boot floppy.

`make_marker_image(src, dst)` copies a DOS boot image, adds MARKER.COM (this
project's program, monitor/guests/marker.asm, assembled with nasm) and appends
a line running it to AUTOEXEC.BAT, using Debian's mtools.  Booting the copy
ends with "HYBRID86-DOS-OK" on the debug console and exit status 0 through
port 0xF4 once AUTOEXEC.BAT has run to its end.  The source image is never
modified.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from importlib.resources import files

MARKER = b"HYBRID86-DOS-OK"


class GuestToolError(RuntimeError):
    """A tool the image builder needs is missing or failed (one clear line)."""


def _need(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise GuestToolError(f"'{tool}' is not installed; install Debian's {package} package (apt-get install {package})")
    return path


def _run(args: list[str], what: str) -> bytes:
    res = subprocess.run(args, capture_output=True)
    if res.returncode != 0:
        raise GuestToolError(f"{what} failed: {res.stderr.decode(errors='replace').strip() or res.returncode}")
    return res.stdout


def build_marker_com() -> bytes:
    nasm = _need("nasm", "nasm")
    source = files("monitor.guests").joinpath("marker.asm")
    with tempfile.TemporaryDirectory() as tmp:
        src, out = os.path.join(tmp, "marker.asm"), os.path.join(tmp, "MARKER.COM")
        with open(src, "w") as f:
            f.write(source.read_text())
        _run([nasm, "-f", "bin", "-o", out, src], "assembling MARKER.COM")
        with open(out, "rb") as f:
            return f.read()


def make_marker_image(src: str, dst: str) -> None:
    """Copy `src` to `dst` and make the copy run MARKER.COM at the end of AUTOEXEC.BAT."""
    mcopy, mtype = _need("mcopy", "mtools"), _need("mtype", "mtools")
    if not os.path.isfile(src):
        raise GuestToolError(f"{src}: no such image")
    shutil.copyfile(src, dst)
    os.chmod(dst, 0o644)
    autoexec = _run([mtype, "-i", dst, "::AUTOEXEC.BAT"], "reading AUTOEXEC.BAT")
    if not autoexec.endswith(b"\r\n"):
        autoexec += b"\r\n"
    autoexec += b"MARKER\r\n"
    with tempfile.TemporaryDirectory() as tmp:
        com, bat = os.path.join(tmp, "MARKER.COM"), os.path.join(tmp, "AUTOEXEC.BAT")
        with open(com, "wb") as f:
            f.write(build_marker_com())
        with open(bat, "wb") as f:
            f.write(autoexec)
        _run([mcopy, "-o", "-i", dst, com, "::MARKER.COM"], "copying MARKER.COM")
        _run([mcopy, "-o", "-i", dst, bat, "::AUTOEXEC.BAT"], "rewriting AUTOEXEC.BAT")
