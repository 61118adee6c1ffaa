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


QEMU_MISSING = "qemu-system-i386 not installed (apt-get install qemu-system-x86 to compare)"


def _versus_qemu(r: dict, hybrid: str, qemu: str, ratio: str, goal: str) -> list[str]:
    """The side-by-side lines of a boot benchmark (format specs for each figure)."""
    lines = [f"  hybrid86              {r['hybrid86_s']:{hybrid}} s"]
    if "qemu_s" in r:
        lines.append(f"  qemu-system-i386 TCG  {r['qemu_s']:{qemu}} s")
        lines.append(f"  ratio hybrid86/qemu   {r['ratio']:{ratio}}x (goal: <= {goal})")
    else:
        lines.append(f"  {QEMU_MISSING}")
    return lines


def format_boot_dos(r: dict) -> str:
    return "\n".join([f"boot-dos: FreeDOS floppy to HYBRID86-DOS-OK, whole process, median of {r['runs']} runs",
                      *_versus_qemu(r, ".3f", ".3f", ".2f", "1.00x")])


DEFAULT_LINUX = os.path.join("..", "shared", "guests", "linux")
LINUX_MARKER = b"LINUX-BOOT-OK"


def boot_linux(folder: str | None, runs: int, qemu: str | None, memory_mb: int = 128, progress=print) -> dict:
    """Time to LINUX-BOOT-OK (kernel + initramfs, console=ttyS0), whole process,
    hybrid86 and qemu-system-i386 (TCG) side by side, median of `runs`; plus
    the statistics of the first hybrid86 run."""
    import json

    base = folder or DEFAULT_LINUX
    kernel = os.path.join(base, "vmlinuz-6.1.0-50-686")
    initrd = os.path.join(base, "initramfs-busybox.cpio.gz")
    for path in (kernel, initrd):
        if not os.path.isfile(path):
            raise BenchError(f"{path} not found; give the folder holding the kernel and initramfs with --image")
    with tempfile.TemporaryDirectory() as tmp:
        stats_path = os.path.join(tmp, "stats.json")
        ours_cmd = [sys.executable, "-m", "monitor", "run", "--headless", "--kernel", kernel, "--initrd", initrd,
                    "--append", "console=ttyS0", "--memory", str(memory_mb), "--serial", "stdio",
                    "--expect", LINUX_MARKER.decode(), "--timeout", "900"]
        ours = []
        stats = None
        for i in range(runs):
            cmd = ours_cmd + (["--stats", f"json:{stats_path}"] if i == 0 else [])
            ours.append(_timed(cmd, 1000, lambda r: r.returncode == 0 and LINUX_MARKER in r.stdout))
            progress(f"  hybrid86 run {i + 1}/{runs}: {ours[-1]:.1f} s")
            if i == 0:
                with open(stats_path) as f:
                    stats = json.load(f)
        result = {"runs": runs, "memory_mb": memory_mb, "hybrid86_s": statistics.median(ours),
                  "hybrid86_all": ours, "statistics": stats}
        qemu_bin = qemu or shutil.which("qemu-system-i386")
        if qemu_bin:
            theirs = []
            for i in range(runs):
                proc = subprocess.Popen([qemu_bin, "-kernel", kernel, "-initrd", initrd, "-append", "console=ttyS0",
                                         "-m", str(memory_mb), "-display", "none", "-no-reboot", "-serial", "stdio"],
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
                start, seen = time.perf_counter(), b""
                while LINUX_MARKER not in seen:
                    chunk = proc.stdout.read1(4096) if hasattr(proc.stdout, "read1") else proc.stdout.read(1)
                    if not chunk or time.perf_counter() - start > 600:
                        break
                    seen += chunk
                elapsed = time.perf_counter() - start
                proc.kill()
                proc.wait()
                if LINUX_MARKER not in seen:
                    raise BenchError("qemu-system-i386 did not reach LINUX-BOOT-OK")
                theirs.append(elapsed)
                progress(f"  qemu run {i + 1}/{runs}: {elapsed:.2f} s")
            result.update(qemu_s=statistics.median(theirs), qemu_all=theirs,
                          ratio=statistics.median(ours) / statistics.median(theirs))
        return result


def format_boot_linux(r: dict) -> str:
    st = r["statistics"] or {}
    lines = [f"boot-linux: Debian 6.1 i386 kernel + busybox initramfs to LINUX-BOOT-OK, {r['memory_mb']} MiB, "
             f"whole process, median of {r['runs']} runs",
             *_versus_qemu(r, ".1f", ".2f", ".1f", "1.5x")]
    if st:
        bt, de = st.get("bt_instructions") or 0, st.get("de_instructions") or 0
        secs = st.get("seconds") or 1
        lines.append(f"  one run: {bt + de:,} guest instructions, {100 * de / max(1, bt + de):.3f}% in DE, "
                     f"{100 * bt / max(1, bt + de):.3f}% in BT; {st.get('world_switches')} world switches")
        lines.append(f"  TLB fills {st.get('tlb_fills'):,}; TC {st.get('tc_bytes'):,} bytes in "
                     f"{st.get('units_translated'):,} units, {st.get('tc_flushes')} flushes")
        calls = sorted((st.get("callouts") or {}).items(), key=lambda kv: -kv[1])
        lines.append("  callouts per second: " + ", ".join(f"{k} {v / secs:,.0f}" for k, v in calls[:8]))
    return "\n".join(lines)
