"""The modes a campaign can run, and what each needs.

Real mode is the only mode the translator supports today.  A protected-mode
mode plugs in by providing the same four things: a hypothesis strategy of
``Case``s (with its own initial-state model: descriptor tables, CPL, IOPL,
VM), a reference runner (bare Unicorn with the guest's own tables, real
ring 0 / ring 3 / V86), a monitored runner (hybrid86 through the decision
rule), and the same ``FinalState`` — ``compare`` already covers everything but
descriptor contents.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass
class Mode:
    name: str
    available: bool
    reason: str = ""
    run_reference: Callable | None = None
    run_monitored: Callable | None = None
    make_strategy: Callable | None = None

    def strategy(self, classes=None, exclude=(), max_items=None):
        return self.make_strategy(classes=classes, exclude=exclude, max_items=max_items)


def _real_strategy(classes=None, exclude=(), max_items=None):
    from hypothesis import strategies as st
    from monitor.fuzz import strategies as S
    from monitor.fuzz.case import make_case

    excluded = set(exclude or ())
    def allowed(it):
        if it.name in excluded:
            return False
        if "cs-fault" in excluded and it.name in S.FAULTING_MEM and S.has_cs_prefix(it):
            return False
        if "mov-r32-cs" in excluded and it.name == "mov-from-sreg" and bytes(it.parts[0])[:2] == b"\x66\x8c" \
                and (bytes(it.parts[0])[2] >> 3) & 7 == 1:
            return False
        if "cs-store-cs" in excluded and it.name == "mov-from-sreg" and S.has_cs_prefix(it):
            return False
        return True
    items = S.items_strategy(classes).filter(allowed)
    n = max_items or S.MAX_ITEMS

    @st.composite
    def cases(draw):
        from hypothesis import reject
        its = draw(st.lists(items, min_size=1, max_size=n))
        cs = draw(st.integers(0x2100, 0x2FF0))
        regs, eflags = draw(S.initial_state())
        seed = draw(st.integers(0, 2**32 - 1))
        if "ac-flag" in excluded:
            from monitor.fuzz.case import AC
            eflags &= ~AC
            its = [S.without_ac(it) for it in its]
        try:
            return make_case(its, cs, regs, eflags, seed)
        except ValueError:
            reject()
    return cases()


def _real_reference(case):
    from monitor.fuzz.reference import run_reference
    return run_reference(case)


def _real_monitored(case):
    from monitor.fuzz.monitored import run_monitored
    return run_monitored(case)


_NOT_YET = "the translator runs real mode only today; {what} arrives with issue 4 (protected mode)"

MODES = {
    "real": Mode("real", True, "", _real_reference, _real_monitored, _real_strategy),
    "pm16": Mode("pm16", False, _NOT_YET.format(what="16-bit ring-0 protected mode")),
    "pm32": Mode("pm32", False, _NOT_YET.format(what="32-bit ring-0 protected mode")),
    "ring3": Mode("ring3", False, _NOT_YET.format(what="ring 3 (direct execution)")),
    "v86": Mode("v86", False, _NOT_YET.format(what="V8086 (direct execution)")),
}
