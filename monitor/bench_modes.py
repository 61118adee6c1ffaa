"""`hybrid86 bench modes`: one compute workload as real-mode, ring-0 and ring-3
code, under hybrid86 and on bare Unicorn, in one run.

The workload (monitor/guests/bench/workload.inc) is loops, direct calls and
returns, indirect calls through a table and a read-modify-write sweep over a
buffer.  Each system runs the same image twice, with a short and a long
iteration count; the difference divided by the extra iterations is the cost
of one iteration without the set-up (boot, mode switches, exit).  The ratio
is bare Unicorn's cost over hybrid86's: 1.0 means no overhead.

The references run on bare Unicorn with no monitor and no hooks but the exit
port's: the real-mode image in UC_MODE_16, and for both protected-mode
variants the ring-0 image (the guest at real ring 0), as the brief defines.
Ring 3 under hybrid86 runs directly (DE); ring 0 and real mode are translated (BT).

With qemu-system-i386 installed, each image also runs under QEMU (TCG) from
a floppy whose boot sector loads it to 0x7C00 (guests/bench/floppyload.asm),
as its own mode: real mode, ring 0 and ring 3 for real.  QEMU's start-up
(about 0.2 s) is far larger than the 200,000-iteration run, so QEMU's two
images run 100 times as many iterations; the per-iteration difference is
what is compared.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import tempfile
import time
from importlib.resources import files

from unicorn import UC_ARCH_X86, UC_HOOK_INSN, UC_MODE_16, UC_MODE_32, Uc
from unicorn.x86_const import UC_X86_INS_OUT

from monitor.bench import QEMU_MISSING

MODES = (("ring3", 2, "DE"), ("ring0", 1, "BT"), ("real", 0, "BT"))
GOALS = {"DE": 0.95, "BT": 0.8}
ORG = 0x7C00


def _assemble(source: str, defines: dict) -> bytes:
    from monitor.guests.dos import _need, _run

    nasm = _need("nasm", "nasm")
    src = files("monitor.guests").joinpath("bench")
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("modes.asm", "workload.inc", "floppyload.asm"):
            with open(os.path.join(tmp, name), "w") as f:
                f.write(src.joinpath(name).read_text())
        out = os.path.join(tmp, "b.bin")
        _run([nasm, "-f", "bin", *(f"-D{k}={v}" for k, v in defines.items()), "-I", tmp + "/", "-o", out,
              os.path.join(tmp, source)], "assembling the bench workload")
        with open(out, "rb") as f:
            return f.read()


def build(mode: int, iters: int) -> bytes:
    return _assemble("modes.asm", {"MODE": mode, "ITER": iters})


def floppy(image: bytes) -> bytes:
    """A 1.44 MB floppy: the loader's boot sector, then `image` from sector 2."""
    sectors = -(-len(image) // 512)
    if sectors > 17:
        raise ValueError("bench image larger than one floppy track")
    boot = _assemble("floppyload.asm", {"NSECT": sectors})
    disk = bytearray(1474560)
    disk[:512] = boot
    disk[512:512 + len(image)] = image
    return bytes(disk)


def run_qemu(image: bytes, qemu: str) -> float:
    """Wall time of qemu-system-i386 running `image` to its exit port (start-up included)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bench.img")
        with open(path, "wb") as f:
            f.write(floppy(image))
        cmd = [qemu, "-drive", f"file={path},format=raw,if=floppy,readonly=on", "-boot", "a", "-m", "16",
               "-display", "none", "-no-reboot", "-device", "isa-debug-exit,iobase=0xf4,iosize=0x01"]
        t0 = time.perf_counter()
        res = subprocess.run(cmd, capture_output=True, timeout=600)
        elapsed = time.perf_counter() - t0
    if res.returncode != 1:                       # isa-debug-exit: (0 << 1) | 1
        raise RuntimeError(f"qemu did not reach the exit port (status {res.returncode})")
    return elapsed


def run_hybrid(image: bytes, native: bool = True, count: bool = True) -> tuple[float, dict]:
    from devices.exit_port import ExitPort
    from monitor.machine import Machine

    m = Machine(memory_mb=4, native=native, count_instructions=count)
    m.attach(ExitPort(on_exit=lambda v: m.stop(f"exit {v}", v)))
    m.memory.write(ORG, image)
    m.enter_real_mode(0, ORG)
    t0 = time.perf_counter()
    m.run(timeout_s=600)
    elapsed = time.perf_counter() - t0
    if m.exit_status != 0:
        raise RuntimeError(f"bench guest did not finish: {m.stop_reason}")
    return elapsed, m.statistics()


def run_bare(image: bytes, mode16: bool = True) -> float:
    """The image on bare Unicorn: real mode start, its own mode switch, no monitor."""
    uc = Uc(UC_ARCH_X86, UC_MODE_16 if mode16 else UC_MODE_32)
    uc.mem_map(0, 0x200000)
    uc.mem_write(ORG, image)

    def on_out(uc_, port, size, value, _):
        if port == 0xF4:
            uc_.emu_stop()

    uc.hook_add(UC_HOOK_INSN, on_out, None, 1, 0, UC_X86_INS_OUT)
    t0 = time.perf_counter()
    uc.emu_start(ORG, 0x1FFFFF)
    return time.perf_counter() - t0


def per_iteration(run, short: bytes, long: bytes, extra: int, repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        a = run(short)
        b = run(long)
        samples.append(max(b - a, 1e-9) / extra)
    return statistics.median(samples)


def bench(iters: int = 200_000, repeats: int = 3, native: bool = True, progress=print,
          qemu: str | None = None) -> dict:
    short_n = iters // 20
    results = {"iterations": iters, "repeats": repeats, "modes": {}}
    qemu = qemu or shutil.which("qemu-system-i386")
    qemu_cost = {}
    if qemu:
        q_short, q_long = iters * 5, iters * 100
        for name, mode, _ in MODES:
            progress(f"qemu-system-i386, {name} image ({q_long:,} iterations) ...")
            qemu_cost[name] = per_iteration(lambda image: run_qemu(image, qemu), build(mode, q_short),
                                            build(mode, q_long), q_long - q_short, repeats)
        results["qemu"] = qemu
    images = {mode: (build(mode, short_n), build(mode, iters)) for _, mode, _ in MODES}
    bare = {}
    for ref_mode in (0, 1):
        progress(f"bare Unicorn, {'real-mode' if ref_mode == 0 else 'ring-0'} image ...")
        bare[ref_mode] = per_iteration(run_bare, *images[ref_mode], iters - short_n, repeats)
    for name, mode, world in MODES:
        progress(f"hybrid86, {name} ({world}) ...")
        stats_holder = {}

        def run_h(image, _holder=stats_holder):
            t, st = run_hybrid(image, native)
            _holder["stats"] = st
            return t

        cost = per_iteration(run_h, *images[mode], iters - short_n, repeats)
        uncounted = per_iteration(lambda image: run_hybrid(image, native, count=False)[0],
                                  *images[mode], iters - short_n, repeats)
        ref = bare[0 if mode == 0 else 1]
        st = stats_holder["stats"]
        results["modes"][name] = {
            "world": world, "hybrid_ns_per_iteration": cost * 1e9, "bare_ns_per_iteration": ref * 1e9,
            "ratio": ref / cost, "goal": GOALS[world],
            "hybrid_ns_per_iteration_uncounted": uncounted * 1e9, "ratio_uncounted": ref / uncounted,
            "de_instructions": st["de_instructions"], "bt_instructions": st["bt_instructions"],
            "callouts": st["callouts"],
        }
        if name in qemu_cost:
            q = qemu_cost[name]
            results["modes"][name].update(qemu_ns_per_iteration=q * 1e9, ratio_vs_qemu=q / cost,
                                          bare_vs_qemu=q / ref)
    return results


def format_results(r: dict) -> str:
    lines = [f"hybrid86 bench modes: {r['iterations']} iterations (loops, calls/returns, indirect calls, "
             f"memory traffic), median of {r['repeats']}",
             f"{'code':<8}{'world':<7}{'hybrid86 ns/it':>16}{'bare ns/it':>12}{'ratio':>8}{'goal':>7}"
             f"{'uncounted':>11}"]
    qemu = "qemu" in r
    if qemu:
        lines[-1] += f"{'qemu ns/it':>12}{'vs qemu':>9}{'bare vs qemu':>14}"
    for name, m in r["modes"].items():
        lines.append(f"{name:<8}{m['world']:<7}{m['hybrid_ns_per_iteration']:>16.1f}"
                     f"{m['bare_ns_per_iteration']:>12.1f}{m['ratio']:>8.3f}{m['goal']:>7.2f}"
                     f"{m['ratio_uncounted']:>11.3f}")
        if qemu:
            lines[-1] += (f"{m['qemu_ns_per_iteration']:>12.1f}{m['ratio_vs_qemu']:>9.3f}"
                          f"{m['bare_vs_qemu']:>14.3f}")
    lines.append("ratio = bare Unicorn's time per iteration / hybrid86's (1.0 = no overhead); "
                 "bare = the same image on Unicorn with no monitor (ring-0 image for ring 0 and ring 3); "
                 "uncounted = the ratio without instruction counting (the block hooks over guest code "
                 "and the TC), which the statistics need"
                 + ("; qemu = qemu-system-i386 TCG running the image in its own mode; vs qemu = QEMU's "
                    "time per iteration / hybrid86's; bare vs qemu = QEMU's / bare Unicorn's" if qemu else
                    "; " + QEMU_MISSING))
    for name, m in r["modes"].items():
        top = sorted(m["callouts"].items(), key=lambda kv: -kv[1])[:5]
        lines.append(f"  {name}: DE {m['de_instructions']:,} insns, BT {m['bt_instructions']:,} insns, "
                     f"callouts {', '.join(f'{k} {v:,}' for k, v in top)}")
    return "\n".join(lines)


def _selftest() -> None:         # python -m monitor.bench_modes
    print(format_results(bench(iters=20_000, repeats=1)))


if __name__ == "__main__":
    _selftest()


__all__ = ["bench", "format_results", "build", "floppy", "run_bare", "run_hybrid", "run_qemu"]
