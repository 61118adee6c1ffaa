"""Run small protected-mode programs through hybrid86 (tests/pm/prologue.inc
gives them a GDT, IDT, TSS, exception printing and ring-3 entry)."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile

from devices.debugcon import DebugCon
from devices.exit_port import ExitPort
from monitor.machine import Machine

HERE = os.path.dirname(__file__)
ORG = 0x7C00


def build(body: str) -> tuple[bytes, dict[str, int]]:
    """Assemble prologue + body; returns the image and its symbols."""
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "t.asm")
        with open(src, "w") as f:
            f.write(f'[map symbols {tmp}/t.map]\n%include "{HERE}/pm/prologue.inc"\n{body}\n')
        out = os.path.join(tmp, "t.bin")
        res = subprocess.run(["nasm", "-f", "bin", "-o", out, src], capture_output=True, text=True)
        if res.returncode:
            raise RuntimeError(res.stderr)
        symbols = {}
        with open(os.path.join(tmp, "t.map")) as f:
            for line in f:
                m = re.match(r"\s*([0-9A-F]+)\s+([0-9A-F]+)\s+(\S+)", line)
                if m:
                    symbols[m.group(3)] = int(m.group(2), 16)
        with open(out, "rb") as f:
            return f.read(), symbols


def run_pm(body: str, native: bool = True, timeout_s: float = 10.0, memory_mb: int = 4):
    """(machine, output lines, exit status, symbols)."""
    image, symbols = build(body)
    m = Machine(memory_mb=memory_mb, native=native)
    out = bytearray()
    m.attach(DebugCon(write=lambda b: out.extend(b)))
    m.attach(ExitPort(on_exit=lambda v: m.stop(f"guest exit {v}", v)))
    m.memory.write(ORG, image)
    m.enter_real_mode(0, ORG)
    m.run(timeout_s=timeout_s)
    return m, out.decode("latin-1").splitlines(), m.exit_status, symbols
