"""`hybrid86 bench`: figures, never pass/fail.

boot-dos  time from process start to the FreeDOS marker (monitor/guests/dos.py)
          under hybrid86 and under qemu-system-i386 (TCG) when installed;
          whole-process wall time, median of --runs runs, and the ratio.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

DEFAULT_FREEDOS = os.path.join("..", "shared", "guests", "freedos", "freedos-boot-1440k.img")


class BenchError(Exception):
    """Cannot run the benchmark (one line, exit status 2)."""


def _timed(cmd: list[str], timeout: float, ok) -> float:
    start = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, timeout=timeout)
    elapsed = time.perf_counter() - start
    if not ok(res):
        raise BenchError(f"{cmd[0]} did not reach the marker (status {res.returncode}): "
                         f"{res.stderr.decode(errors='replace').strip().splitlines()[-1:]}")
    return elapsed


def boot_dos(image: str | None, runs: int, qemu: str | None, progress=print) -> dict:
    from monitor.guests.dos import MARKER, GuestToolError, make_marker_image

    source = image or DEFAULT_FREEDOS
    if not os.path.isfile(source):
        raise BenchError(f"FreeDOS boot floppy not found at {source}; give one with --image")
    with tempfile.TemporaryDirectory() as tmp:
        marked = os.path.join(tmp, "freedos-marker.img")
        try:
            make_marker_image(source, marked)
        except GuestToolError as exc:
            raise BenchError(str(exc)) from exc
        ours_cmd = [sys.executable, "-m", "monitor", "run", "--fda", marked, "--headless",
                    "--debugcon", "stdio", "--timeout", "120"]
        ours = []
        for i in range(runs):
            ours.append(_timed(ours_cmd, 180, lambda r: r.returncode == 0 and MARKER in r.stdout))
            progress(f"  hybrid86 run {i + 1}/{runs}: {ours[-1]:.3f} s")
        result = {"runs": runs, "hybrid86_s": statistics.median(ours), "hybrid86_all": ours}
        qemu_bin = qemu or shutil.which("qemu-system-i386")
        if qemu_bin:
            qemu_cmd = [qemu_bin, "-drive", f"file={marked},format=raw,if=floppy,readonly=on", "-boot", "a",
                        "-m", "16", "-display", "none", "-no-reboot", "-debugcon", "stdio",
                        "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]
            theirs = []
            for i in range(runs):
                # isa-debug-exit turns the guest's 0 into exit status (0 << 1) | 1 = 1.
                theirs.append(_timed(qemu_cmd, 180, lambda r: r.returncode == 1 and MARKER in r.stdout))
                progress(f"  qemu run {i + 1}/{runs}: {theirs[-1]:.3f} s")
            result.update(qemu_s=statistics.median(theirs), qemu_all=theirs,
                          ratio=statistics.median(ours) / statistics.median(theirs))
        return result


def format_boot_dos(r: dict) -> str:
    lines = [f"boot-dos: FreeDOS floppy to HYBRID86-DOS-OK, whole process, median of {r['runs']} runs",
             f"  hybrid86              {r['hybrid86_s']:.3f} s"]
    if "qemu_s" in r:
        lines.append(f"  qemu-system-i386 TCG  {r['qemu_s']:.3f} s")
        lines.append(f"  ratio hybrid86/qemu   {r['ratio']:.2f}x (goal: <= 1.00x)")
    else:
        lines.append("  qemu-system-i386      not installed (apt-get install qemu-system-x86 to compare)")
    return "\n".join(lines)
