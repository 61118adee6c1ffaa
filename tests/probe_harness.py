"""Transparency probes: build each guest program of tests/probes/ into a boot
floppy, run it under qemu-system-i386 and under hybrid86, and compare what it
printed on the 0xE9 debug console (docs/transparency.md).

As a script:

    python tests/probe_harness.py                 # every probe: hybrid86 vs QEMU, diffs
    python tests/probe_harness.py flags io        # some probes
    python tests/probe_harness.py --update        # rewrite tests/probes/<name>.expected from QEMU
    python tests/probe_harness.py --show NAME     # print both outputs of one probe

hybrid86 runs as `python -m monitor run` in a child process (a crash of the
emulator cannot take pytest down with it), QEMU as

    qemu-system-i386 -display none -no-reboot -m 16 -fda IMG -debugcon file:OUT
                     -device isa-debug-exit,iobase=0xf4,iosize=0x04
"""

from __future__ import annotations

import argparse
import difflib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROBES_DIR = os.path.join(REPO, "tests", "probes")
FLOPPY_SIZE = 1474560
TIMEOUT_S = 30
QEMU = "qemu-system-i386"


def have_nasm() -> bool:
    return shutil.which("nasm") is not None


def have_qemu() -> bool:
    return shutil.which(QEMU) is not None


def probe_names() -> list[str]:
    return sorted(f[:-4] for f in os.listdir(PROBES_DIR) if f.endswith(".asm"))


def expected_path(name: str) -> str:
    return os.path.join(PROBES_DIR, f"{name}.expected")


def read_expected(name: str) -> bytes | None:
    path = expected_path(name)
    if not os.path.isfile(path):
        return None
    with open(path, "rb") as f:
        return f.read()


def build(name: str, workdir: str) -> str:
    """Assemble tests/probes/<name>.asm into a 1.44 MB floppy image in `workdir`."""
    src = os.path.join(PROBES_DIR, f"{name}.asm")
    binary = os.path.join(workdir, f"{name}.bin")
    res = subprocess.run(["nasm", "-f", "bin", "-I", PROBES_DIR + os.sep, "-o", binary, src],
                         capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"nasm failed for {name}:\n{res.stderr}")
    with open(binary, "rb") as f:
        code = f.read()
    if len(code) > FLOPPY_SIZE:
        raise RuntimeError(f"{name}: {len(code)} bytes do not fit a floppy")
    image = os.path.join(workdir, f"{name}.img")
    with open(image, "wb") as f:
        f.write(code + bytes(FLOPPY_SIZE - len(code)))
    return image


@dataclass
class Run:
    output: bytes           # what the guest wrote to port 0xE9
    status: int | None      # exit status of the emulator process (None: killed on timeout)
    detail: str             # stderr / stop reason, for failure messages
    seconds: float

    @property
    def text(self) -> str:
        return self.output.decode("latin-1")


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return b""


def run_qemu(image: str, timeout_s: float = TIMEOUT_S) -> Run:
    """The probe under qemu-system-i386 (TCG); a clean end is exit status 1 ((0 << 1) | 1)."""
    out = image + ".qemu.out"
    cmd = [QEMU, "-display", "none", "-no-reboot", "-m", "16", "-fda", image,
           "-debugcon", f"file:{out}", "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
           "-monitor", "none", "-serial", "none", "-parallel", "none"]
    started = time.monotonic()
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL)
        status, detail = res.returncode, res.stderr.strip()
    except subprocess.TimeoutExpired:
        status, detail = None, f"QEMU timed out after {timeout_s} s"
    return Run(_read(out), status, detail, time.monotonic() - started)


def run_hybrid86(image: str, timeout_s: float = TIMEOUT_S) -> Run:
    """The probe under hybrid86 (`python -m monitor run`); a clean end is exit status 0."""
    out = image + ".hybrid86.out"
    cmd = [sys.executable, "-m", "monitor", "run", "--fda", image, "--headless",
           "--debugcon", f"file:{out}", "--serial", "none", "--timeout", str(timeout_s)]
    started = time.monotonic()
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s + 30, cwd=REPO,
                             stdin=subprocess.DEVNULL)
        status, detail = res.returncode, res.stderr.strip()
    except subprocess.TimeoutExpired:
        status, detail = None, f"hybrid86 did not end {timeout_s + 30} s after start"
    return Run(_read(out), status, detail, time.monotonic() - started)


def qemu_ok(run: Run) -> bool:
    return run.status == 1


def hybrid86_ok(run: Run) -> bool:
    return run.status == 0


def diff(expected: bytes, actual: bytes, expected_name: str, actual_name: str) -> str:
    a = expected.decode("latin-1").splitlines(keepends=True)
    b = actual.decode("latin-1").splitlines(keepends=True)
    return "".join(difflib.unified_diff(a, b, expected_name, actual_name, n=2))


def line_diffs(expected: bytes, actual: bytes) -> list[tuple[str | None, str | None]]:
    """(expected line, actual line) pairs that differ, in order (None: missing)."""
    a = expected.decode("latin-1").splitlines()
    b = actual.decode("latin-1").splitlines()
    out = []
    sm = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    for tag, i1, i2, j1, j2 in sm.get_opcodes():
        if tag == "equal":
            continue
        xa, xb = a[i1:i2], b[j1:j2]
        for k in range(max(len(xa), len(xb))):
            out.append((xa[k] if k < len(xa) else None, xb[k] if k < len(xb) else None))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="*", help="probes to run (default: all)")
    ap.add_argument("--update", action="store_true", help="write tests/probes/<name>.expected from QEMU's output")
    ap.add_argument("--show", action="store_true", help="print both outputs in full")
    ap.add_argument("--keep", metavar="DIR", help="build into DIR and keep the images and outputs")
    args = ap.parse_args(argv)
    if not have_nasm():
        print("nasm is not installed", file=sys.stderr)
        return 2
    names = args.names or probe_names()
    workdir = args.keep or tempfile.mkdtemp(prefix="probes-")
    os.makedirs(workdir, exist_ok=True)
    worst = 0
    for name in names:
        image = build(name, workdir)
        h = run_hybrid86(image)
        q = run_qemu(image) if have_qemu() else None
        ref = q.output if q is not None else read_expected(name)
        same = ref is not None and ref == h.output
        print(f"== {name}: hybrid86 {h.seconds:.2f} s status {h.status}"
              + (f", QEMU {q.seconds:.2f} s status {q.status}" if q else "")
              + f": {'IDENTICAL' if same else 'DIFFERENT'}")
        if h.status != 0:
            print(f"   hybrid86: {h.detail.splitlines()[-1] if h.detail else ''}")
        if args.show:
            print("-- hybrid86:\n" + h.text)
            if q is not None:
                print("-- QEMU:\n" + q.text)
        if not same and ref is not None:
            print(diff(ref, h.output, "qemu" if q else "expected", "hybrid86"))
            worst = 1
        if args.update:
            if q is None or not qemu_ok(q):
                print(f"   not updating {name}.expected: QEMU missing or did not end cleanly", file=sys.stderr)
                worst = 1
            else:
                with open(expected_path(name), "wb") as f:
                    f.write(q.output)
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return worst


if __name__ == "__main__":
    sys.exit(main())
