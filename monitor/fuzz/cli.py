"""``hybrid86 fuzz``: translator-versus-interpreter equivalence campaigns.

Wiring (monitor/cli.py, done by the lead)::

    from monitor.fuzz import cli as fuzz_cli
    p = sub.add_parser("fuzz", help="equivalence fuzzing: translator vs interpreter")
    fuzz_cli.add_arguments(p)
    p.set_defaults(func=fuzz_cli.main)          # main(args) -> exit status

Exit status: 0 when every requested mode ran with zero mismatches; 1 on a
mismatch; 2 when a requested mode is not available.
"""

from __future__ import annotations

import argparse
import json
import sys

MODE_CHOICES = ("real", "pm16", "pm32", "ring3", "v86", "all")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mode", choices=MODE_CHOICES, default="real",
                        help="CPU mode to fuzz: real, pm16 / pm32 (ring 0, BT), ring3 (DE, and BT at IOPL 3 "
                             "or IF=0), v86 (DE), or all (default real)")
    parser.add_argument("--examples", type=int, default=500, metavar="N",
                        help="examples (generated blocks) per mode (default 500)")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="hypothesis seed (default 0)")
    parser.add_argument("--report", metavar="FILE", help="write a JSON report (counts, mismatches) to FILE")
    parser.add_argument("--save-regressions", metavar="DIR",
                        help="save each shrunk mismatch as a JSON regression case in DIR")
    parser.add_argument("--include-known", action="store_true",
                        help="also generate what triggers known, open bugs (campaign.KNOWN_BUGS)")
    parser.add_argument("--no-shrink", action="store_true", help="report the first mismatch unshrunk")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def main(args) -> int:
    import time

    from monitor.fuzz.campaign import KNOWN_BUGS, coverage, default_progress, run_campaign, summary
    from monitor.fuzz.modes import MODES

    wanted = [m for m in MODE_CHOICES if m != "all"] if args.mode == "all" else [args.mode]
    skipped = [m for m in wanted if not MODES[m].available]
    if args.mode != "all" and skipped:
        print(f"hybrid86 fuzz: mode {args.mode} is not available yet: {MODES[args.mode].reason}", file=sys.stderr)
        return 2
    results = []
    start = time.monotonic()
    for name in wanted:
        if name in skipped:
            continue
        if not args.quiet:
            print(f"[fuzz {name}] {args.examples} examples, seed {args.seed}", file=sys.stderr, flush=True)
        res = run_campaign(name, examples=args.examples, seed=args.seed,
                           progress=None if args.quiet else default_progress,
                           include_known=args.include_known, shrink=not args.no_shrink,
                           regressions_dir=getattr(args, "save_regressions", None))
        results.append(res)
        print(summary(res), flush=True)
        for case, report in res.mismatches:
            print(report)
    for name in skipped:
        print(f"mode {name}: skipped, not available yet ({MODES[name].reason})")
    total = sum(len(r.mismatches) for r in results)
    seconds = time.monotonic() - start
    examples = sum(r.examples for r in results)
    counts, missed = coverage(results)
    if len(results) > 1:
        print(f"total: {examples} examples, {sum(r.insns_generated for r in results)} instructions generated, "
              f"{sum(r.rejected for r in results)} rejected, {total} mismatch(es), {seconds:.1f} s, "
              f"{examples / seconds if seconds else 0:.1f} examples/s")
        print("  per mode: " + ", ".join(f"{r.mode} {r.examples}" for r in results))
    print("sensitive classes: " + ("all %d covered" % len(counts) if not missed else
                                   "not generated: " + ", ".join(missed)))
    if not args.include_known:
        print(f"known open bugs left out of generation: {', '.join(sorted(KNOWN_BUGS))} "
              f"(--include-known puts them back)")
    if args.report:
        with open(args.report, "w") as f:
            json.dump({"seed": args.seed, "examples_per_mode": args.examples,
                       "skipped": {m: MODES[m].reason for m in skipped},
                       "known_bugs_excluded": [] if args.include_known else sorted(KNOWN_BUGS),
                       "sensitive_classes": counts, "sensitive_missing": missed,
                       "modes": [r.to_dict() for r in results], "mismatches": total,
                       "seconds": round(seconds, 1)}, f, indent=1)
    return 1 if total else 0


if __name__ == "__main__":                                   # python -m monitor.fuzz.cli
    p = argparse.ArgumentParser(prog="hybrid86 fuzz")
    add_arguments(p)
    sys.exit(main(p.parse_args()))
