"""Print the per-call cost of the CPU adapter, native versus its Python twin.

    python tools/measure_adapter.py [--calls N]
"""

import argparse
import time

from unicorn import UC_ARCH_X86, UC_MODE_32, Uc

import _native


def per_call_us(fn, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=20000)
    calls = ap.parse_args().calls
    print(f"{'operation':<34}{'native':>10}{'twin':>10}   (µs per call, {calls} calls)")
    rows = {}
    for impl in (_native.Cpu, _native.PyCpu):
        uc = Uc(UC_ARCH_X86, UC_MODE_32)
        uc.mem_map(0, 0x1000)
        cpu = impl(uc)
        rows.setdefault("read_gprs()", []).append(per_call_us(cpu.read_gprs, calls))
        rows.setdefault("reset_old_exception() (no-op)", []).append(per_call_us(cpu.reset_old_exception, calls))
        rows.setdefault("fault_info()", []).append(per_call_us(cpu.fault_info, calls))
    for name, (native, twin) in rows.items():
        print(f"{name:<34}{native:>10.2f}{twin:>10.2f}")


if __name__ == "__main__":
    main()
