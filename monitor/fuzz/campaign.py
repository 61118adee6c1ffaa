"""Campaigns: generate cases, run both paths, compare, shrink, report.

``check(case)`` runs one case through a mode's two paths and returns the
differences.  ``run_campaign`` drives hypothesis: examples are generated from
the mode's strategy with a fixed seed (reproducible), each one is checked,
the first mismatch is shrunk — by hypothesis for half of the shrink budget,
then by ``minimize`` (drop items, zero registers, clear flags) — printed
(bytes, Capstone disassembly, both final states) and saved as a regression
case (JSON, replayed by ``tests/test_fuzz_regressions.py``).

``KNOWN_BUGS`` are open monitor bugs the fuzzer found, each with a
strict-xfail test; what triggers them is left out of generation unless
``include_known``.  ``UNICORN_DEPARTURES`` are places where Unicorn is not
the hardware and the monitored path inherits it.
"""

from __future__ import annotations

import collections
import json
import os
import sys
import time
from dataclasses import dataclass, field

from monitor.fuzz.case import Case
from monitor.fuzz.compare import compare, format_mismatch
from monitor.fuzz.modes import MODES, Mode

# Generator names left out of the default campaign because they trigger a
# known translator bug (each has a strict-xfail regression test in
# tests/test_fuzz.py and an entry in docs/fuzzing.md).  `--include-known`
# puts them back.
KNOWN_BUGS = {
    # TF is not virtualized in BT: a single-step trap lands in translated code,
    # and the in-TC int n leaves TF and AC as they were (docs/real-mode-bt.md).
    # Nine other bugs the fuzzer found are fixed, with regression tests in
    # tests/test_fuzz.py.
    "ac-flag": "the in-TC int n / int3 / into delivery leaves EFLAGS.AC (and TF) set; hardware clears IF, TF and AC",
    "popf-stack": ("popf setting TF then a branch: the #DB lands in TC stub code (jcc: frame IP at the jcc, "
                   "not past it; jmp: VM stop 'exception 1 outside translated guest code'); TF is not virtualized"),
}
# Unicorn departures the monitored path inherits (it runs whole blocks where the
# reference single-steps), left out of generation the same way:
UNICORN_DEPARTURES = {
    "smc-cross-page": ("a store crossing a page boundary into the translation block Unicorn is running is "
                       "executed twice (the first part lands, the block is invalidated, the store restarts); "
                       "DE runs whole blocks: the reference ends such runs as unsupported (monitor/fuzz/smc.py)"),
    "de-ins-dummy-store": ("ins run directly (ring 3, V8086) where the I/O bitmap denies the port: QEMU's ins "
                           "stores a dummy 0 at ES:EDI (to be restartable after a page fault) before the I/O "
                           "check reaches hybrid86's hook, so the #GP(0) finds that byte/word/dword zeroed; "
                           "the CPU writes nothing.  Generation allows every port in DE when an ins is present"),
    "loope": "Unicorn computes CF wrongly after movs + shl + loope run in one TB (bare Unicorn, no hybrid86)",
    "loopne": "the same lazy-flags bug as loope",
    "rcl": "Unicorn: rcl/rcr with a zero count after cmp in one TB changes ZF/PF (count 0 must leave flags alone)",
    "rcr": "the same lazy-flags bug as rcl",
    "cmpxchg8b": "Unicorn clears PF (SDM: unaffected) when cmpxchg8b follows a flag-setting op in one TB",
}
# int1 (F1) is never generated: Unicorn raises #UD where hardware raises #DB,
# so there is no reference (tests/test_fuzz.py checks the translator takes it).


SHRINK_SECONDS = 60.0          # time given to shrinking a mismatch


@dataclass
class Result:
    mode: str
    examples: int = 0                       # cases run on both paths
    rejected: int = 0                       # no reference: step limit, or a Unicorn departure
    insns_generated: int = 0
    insns_executed: int = 0                 # reference steps
    classes: collections.Counter = field(default_factory=collections.Counter)
    names: collections.Counter = field(default_factory=collections.Counter)
    events: collections.Counter = field(default_factory=collections.Counter)
    worlds: collections.Counter = field(default_factory=collections.Counter)   # protected modes: BT / DE start
    rejections: collections.Counter = field(default_factory=collections.Counter)
    mismatches: list = field(default_factory=list)   # (case, report text)
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.examples / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict:
        return {"mode": self.mode, "examples": self.examples, "rejected": self.rejected,
                "instructions_generated": self.insns_generated, "instructions_executed": self.insns_executed,
                "classes": dict(self.classes), "names": dict(self.names), "events": dict(self.events),
                "worlds": dict(self.worlds), "rejections": dict(self.rejections),
                "mismatches": [{"case": c.to_dict(), "report": r} for c, r in self.mismatches],
                "seconds": round(self.seconds, 2), "examples_per_second": round(self.rate, 1)}


class Mismatch(AssertionError):
    def __init__(self, case: Case, report: str):
        super().__init__(report)
        self.case, self.report = case, report


def check(case: Case, mode: Mode | None = None):
    """(reference state, monitored state, differences) of one case."""
    mode = mode or MODES[case.mode]
    ref = mode.run_reference(case)
    if ref.event.kind in ("limit", "unsupported"):
        return ref, None, None
    mon = mode.run_monitored(case)
    return ref, mon, compare(case, ref, mon)


def assert_equivalent(case: Case) -> None:
    """Raise Mismatch (with the full report) when the two paths differ."""
    ref, mon, diffs = check(case)
    if diffs:
        raise Mismatch(case, format_mismatch(case, ref, mon, diffs))


def save_regression(case: Case, report: str, directory: str, reason: str = "") -> str:
    os.makedirs(directory, exist_ok=True)
    import hashlib
    name = f"{case.mode}-{hashlib.sha1(case.to_json().encode()).hexdigest()[:10]}.json"
    path = os.path.join(directory, name)
    with open(path, "w") as f:
        json.dump({"reason": reason or report.splitlines()[1].strip("- "), "case": case.to_dict(),
                   "report": report}, f, indent=1, sort_keys=True)
    return path


def run_campaign(mode_name: str = "real", examples: int = 100, seed: int = 0, progress=None,
                 exclude=None, include_known: bool = False, classes=None, shrink: bool = True,
                 regressions_dir: str | None = None, max_items: int | None = None,
                 shrink_seconds: float = SHRINK_SECONDS) -> Result:
    from hypothesis import HealthCheck, Phase, assume, given, settings
    from hypothesis import seed as hseed

    mode = MODES[mode_name]
    if not mode.available:
        raise ValueError(f"mode {mode_name} is not available: {mode.reason}")
    excluded = set(exclude or ())
    if not include_known:
        excluded |= set(KNOWN_BUGS) | set(UNICORN_DEPARTURES)
    result = Result(mode_name)
    strategy = mode.strategy(classes=classes, exclude=excluded, max_items=max_items)
    start = time.monotonic()
    last_fail: list = []
    shrinking = [False]

    shrink_start: list = []

    def body(case):
        if shrinking[0]:
            # Shrinking replays many variants; past the budget every variant
            # "passes", so hypothesis ends at once with the smallest failure so far.
            if not shrink_start:
                shrink_start.append(time.monotonic())
            elif time.monotonic() - shrink_start[0] > shrink_seconds:
                return
        ref, mon, diffs = check(case, mode)
        if mon is None:
            if not shrinking[0]:
                result.rejected += 1
                result.rejections[ref.event.detail.split(" (")[0][:60]] += 1
            assume(False)
        if not shrinking[0]:
            result.examples += 1
            result.insns_generated += case.insns
            result.insns_executed += ref.steps
            result.classes.update(case.classes)
            result.names.update(case.names)
            result.events[_event_label(ref)] += 1
            if case.env is not None:
                result.worlds[case.env.get("world") or "?"] += 1
            if progress is not None and result.examples % 50 == 0:
                progress(result, time.monotonic() - start)
        if diffs:
            shrinking[0] = True
            report = format_mismatch(case, ref, mon, diffs)
            last_fail[:] = [(case, report)]
            raise Mismatch(case, report)

    shrink_seconds /= 2                     # half for hypothesis's shrinking, half for minimize()
    phases = [Phase.generate, Phase.shrink] if shrink else [Phase.generate]
    test = settings(max_examples=examples, deadline=None, database=None, phases=phases, derandomize=False,
                    suppress_health_check=list(HealthCheck), print_blob=False)(given(strategy)(body))
    test = hseed(seed)(test)
    try:
        test()
    except Mismatch:
        pass
    except Exception as exc:            # hypothesis wraps multiple failures; keep the last shrunk one
        if not last_fail:
            raise
        _ = exc
    if last_fail and shrink:
        case = minimize(last_fail[0][0], mode, shrink_seconds)
        ref, mon, diffs = check(case, mode)
        if diffs:
            last_fail[:] = [(case, format_mismatch(case, ref, mon, diffs))]
    if last_fail:
        case, report = last_fail[0]
        result.mismatches.append((case, report))
        if regressions_dir:
            save_regression(case, report, regressions_dir)
    result.seconds = time.monotonic() - start
    return result


def minimize(case: Case, mode: Mode | None = None, seconds: float = 30.0) -> Case:
    """Make a mismatching case smaller without hypothesis: drop items (halves,
    then one at a time), then zero registers, clear EFLAGS bits and the memory
    seed, keeping each change that still mismatches.  Cases built by
    ``make_case``/``make_pm_case`` carry what this needs; others are returned
    as they are."""
    mode = mode or MODES[case.mode]
    rebuild = case.__dict__.get("_rebuild")
    if rebuild is None:
        return case
    deadline = time.monotonic() + seconds
    items, build = list(rebuild[0]), rebuild[1]
    regs, eflags, seed = dict(case.regs), case.eflags, case.mem_seed

    def attempt(its, r, fl, sd):
        if time.monotonic() > deadline:
            return None
        try:
            c = build(its, r, fl, sd)
        except (ValueError, AssertionError):
            return None
        try:
            _, mon, diffs = check(c, mode)
        except Exception:
            return None
        return c if diffs else None

    best = case
    chunk = max(1, len(items) // 2)
    while chunk >= 1 and len(items) > 1:
        i, changed = 0, False
        while i < len(items) and len(items) > 1:
            trial = items[:i] + items[i + chunk:]
            c = attempt(trial, regs, eflags, seed) if trial else None
            if c is not None:
                items, best, changed = trial, c, True
            else:
                i += chunk
        if not changed:
            chunk //= 2
    for name in list(regs):
        if regs[name] and name in ("eax", "ecx", "edx", "ebx", "ebp", "esi", "edi"):
            r = dict(regs, **{name: 0})
            c = attempt(items, r, eflags, seed)
            if c is not None:
                regs, best = r, c
    for bit in range(31, -1, -1):
        if eflags >> bit & 1 and bit != 1:
            c = attempt(items, regs, eflags & ~(1 << bit), seed)
            if c is not None:
                eflags, best = eflags & ~(1 << bit), c
    if seed:
        c = attempt(items, regs, eflags, 0)
        if c is not None:
            best = c
    return best


def _event_label(ref) -> str:
    from monitor.fuzz.case import STUB_OFF, STUB_SEG
    ev = ref.event
    if ev.kind == "event":
        return f"vector {ev.vector:#04x}" + (" (int)" if ev.soft else "")
    if ev.kind == "hlt" and ev.cs == STUB_SEG:
        return f"vector {ev.ip - 1 - STUB_OFF:#04x}"
    if ev.kind == "hlt" and ref.first_delivery is None:
        return "hlt"
    return ev.kind


# The sensitive classes of issue 6 and the generator names that exercise them.
ISSUE_CLASSES = {
    "cli": ("cli",), "sti": ("sti",), "pushf": ("pushf",), "popf": ("popf", "popf-stack"), "iret": ("iret",),
    "int": ("int",), "int3": ("int3",), "into": ("into",),
    "segment loads": ("mov-sreg", "pop-sreg"), "segment reads": ("mov-from-sreg", "push-sreg"),
    "lds": ("lds",), "les": ("les",), "lfs": ("lfs",), "lgs": ("lgs",), "lss": ("lss",),
    "far jmp": ("jmpf",), "far call": ("callf",), "far ret": ("retf",),
    "lgdt": ("lgdt",), "lidt": ("lidt",), "sgdt": ("sgdt",), "sidt": ("sidt",), "sldt": ("sldt",),
    "str": ("str",), "smsw": ("smsw",), "lmsw": ("lmsw",), "lsl": ("lsl",), "lar": ("lar",),
    "verr": ("verr",), "verw": ("verw",), "in": ("in",), "out": ("out",),
    "mov to crN": ("mov-to-cr",), "mov from crN": ("mov-from-cr",),
    "sysenter": ("sysenter",), "sysexit": ("sysexit",), "self-modifying stores": ("smc",),
}


def coverage(results) -> tuple[dict, list]:
    """({issue class: count over `results`}, [classes never generated])."""
    names = collections.Counter()
    for r in results:
        names.update(r.names)
    counts = {c: sum(names.get(n, 0) for n in ns) for c, ns in ISSUE_CLASSES.items()}
    return counts, [c for c, n in counts.items() if not n]


def summary(result: Result) -> str:
    lines = [f"mode {result.mode}: {result.examples} examples, {result.insns_generated} instructions generated, "
             f"{result.insns_executed} executed (reference), {result.rejected} rejected, "
             f"{len(result.mismatches)} mismatch(es), {result.seconds:.1f} s, {result.rate:.1f} examples/s"]
    lines.append("  classes: " + ", ".join(f"{k} {v}" for k, v in sorted(result.classes.items())))
    counts, missed = coverage([result])
    lines.append("  sensitive covered: " + ", ".join(f"{c} {n}" for c, n in counts.items() if n))
    if missed:
        lines.append("  sensitive not generated in this mode: " + ", ".join(missed))
    lines.append("  events: " + ", ".join(f"{k} {v}" for k, v in result.events.most_common(12)))
    if result.worlds:
        lines.append("  initial world: " + ", ".join(f"{k} {v}" for k, v in sorted(result.worlds.items())))
    if result.rejections:
        lines.append("  rejected (no reference): " + ", ".join(f"{k} {v}" for k, v in result.rejections.most_common(6)))
    return "\n".join(lines)


def default_progress(result: Result, elapsed: float) -> None:
    print(f"[fuzz {result.mode}] {result.examples} examples, {result.insns_generated} insns, "
          f"{result.rejected} rejected, {result.examples / elapsed if elapsed else 0:.1f}/s",
          file=sys.stderr, flush=True)
