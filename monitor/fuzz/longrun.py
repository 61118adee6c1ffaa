"""The long campaign: chunks of ``hybrid86 fuzz`` over every mode, in parallel
processes, until a number of generated guest instructions is reached.

    python -m monitor.fuzz.longrun --instructions 1000000 --jobs 2 --out fuzz-long

Each chunk is one ``python -m monitor.fuzz.cli --mode M --examples N --seed S``
(a fresh hypothesis run: memory stays flat however long the campaign), with
its JSON report in ``--out``; the modes take turns, the seeds count up from
``--seed``.  The totals (examples, instructions generated and executed,
classes, sensitive classes, events, rejections, mismatches, rate) are
printed at the end and written to ``OUT/summary.json``.  Exit status 1 when a
chunk found a mismatch (its shrunk report is in the chunk's JSON and on
stdout), else 0.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

MODES = ("real", "pm16", "pm32", "ring3", "v86")


def _chunk(mode: str, examples: int, seed: int, out: str, nice: int) -> dict:
    path = os.path.join(out, f"{mode}-{seed}.json")
    cmd = [sys.executable, "-m", "monitor.fuzz.cli", "--mode", mode, "--examples", str(examples),
           "--seed", str(seed), "--quiet", "--report", path]
    if nice:
        cmd = ["nice", "-n", str(nice)] + cmd
    proc = subprocess.run(cmd, capture_output=True, text=True)
    with open(path) as f:
        rep = json.load(f)
    rep["stdout"] = proc.stdout
    rep["returncode"] = proc.returncode
    return rep


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m monitor.fuzz.longrun")
    p.add_argument("--instructions", type=int, default=1_000_000, help="generated instructions to reach")
    p.add_argument("--chunk", type=int, default=2500, help="examples per chunk (default 2500)")
    p.add_argument("--jobs", type=int, default=2, help="chunks run at once (default 2)")
    p.add_argument("--seed", type=int, default=100, help="first seed (default 100)")
    p.add_argument("--modes", default=",".join(MODES), help="comma-separated modes (default all)")
    p.add_argument("--out", default="fuzz-long", help="directory for the chunk reports")
    p.add_argument("--nice", type=int, default=10, help="nice level of the chunks (0: none)")
    p.add_argument("--max-minutes", type=float, default=40.0, help="start no chunk after this (default 40)")
    args = p.parse_args(argv)
    modes = args.modes.split(",")
    os.makedirs(args.out, exist_ok=True)
    start = time.monotonic()
    totals = collections.Counter()
    per_mode = collections.defaultdict(collections.Counter)
    classes, names, events, rejections, sensitive = (collections.Counter() for _ in range(5))
    mismatches = []
    seed = args.seed
    turn = 0
    pending = []

    def account(rep):
        for m in rep["modes"]:
            for key, field in (("examples", "examples"), ("instructions", "instructions_generated"),
                               ("executed", "instructions_executed"), ("rejected", "rejected"),
                               ("seconds", "seconds")):
                totals[key] += m[field]
                per_mode[m["mode"]][key] += m[field]
            classes.update(m["classes"])
            names.update(m["names"])
            events.update(m["events"])
            rejections.update(m["rejections"])
            for mm in m["mismatches"]:
                mismatches.append(mm)
        sensitive.update(rep["sensitive_classes"])
        print(f"[longrun {time.monotonic() - start:6.0f} s] {totals['instructions']:>9} instructions, "
              f"{totals['examples']} examples, {len(mismatches)} mismatch(es)", flush=True)

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        while True:
            done = [f for f in pending if f.done()]
            for f in done:
                pending.remove(f)
                account(f.result())
            enough = totals["instructions"] >= args.instructions
            late = time.monotonic() - start > args.max_minutes * 60
            if (enough or late) and not pending:
                break
            if not enough and not late and len(pending) < args.jobs:
                mode = modes[turn % len(modes)]
                turn += 1
                pending.append(pool.submit(_chunk, mode, args.chunk, seed, args.out, args.nice))
                seed += 1
                continue
            time.sleep(0.5)
    wall = time.monotonic() - start
    missing = [c for c, n in sensitive.items() if not n]
    summary = {"instructions_generated": totals["instructions"], "instructions_executed": totals["executed"],
               "examples": totals["examples"], "rejected": totals["rejected"], "mismatches": len(mismatches),
               "wall_seconds": round(wall, 1), "examples_per_second_wall": round(totals["examples"] / wall, 1),
               "per_mode": {m: dict(c) for m, c in per_mode.items()}, "classes": dict(classes),
               "sensitive_classes": dict(sensitive), "sensitive_missing": missing,
               "events": dict(events.most_common(30)), "rejections": dict(rejections.most_common(20)),
               "mismatch_reports": [m["report"] for m in mismatches]}
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(f"long campaign: {totals['examples']} examples, {totals['instructions']} instructions generated, "
          f"{totals['executed']} executed (reference), {totals['rejected']} rejected, {len(mismatches)} "
          f"mismatch(es), {wall:.0f} s wall, {totals['examples'] / wall:.1f} examples/s")
    for m, c in per_mode.items():
        print(f"  {m}: {c['examples']} examples, {c['instructions']} instructions, {c['rejected']} rejected")
    print("  classes: " + ", ".join(f"{k} {v}" for k, v in sorted(classes.items())))
    print("  sensitive classes: " + ", ".join(f"{k} {v}" for k, v in sensitive.items()))
    if missing:
        print("  not generated: " + ", ".join(missing))
    for mm in mismatches:
        print(mm["report"])
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
