"""The modes a campaign can run, and what each needs.

Each mode provides a hypothesis strategy of ``Case``s, a reference runner
(bare Unicorn: real mode in ``reference.py``; the guest's own tables, real
ring 0 / ring 3 / V8086 in ``pmreference.py``), a monitored runner (hybrid86
through its decision rule: ``monitored.py``, ``pmmonitored.py``), and the
same ``FinalState`` for ``compare``.
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


def _pm_strategy(mode: str):
    def make(classes=None, exclude=(), max_items=None):
        from monitor.fuzz import pmstrategies as P
        return P.pm_cases(mode, classes=classes, exclude=exclude, max_items=max_items or P.MAX_ITEMS)
    return make


def _pm_reference(case):
    from monitor.fuzz.pmreference import run_pm_reference
    return run_pm_reference(case)


def _pm_monitored(case):
    from monitor.fuzz.pmmonitored import run_pm_monitored
    return run_pm_monitored(case)


MODES = {
    "real": Mode("real", True, "", _real_reference, _real_monitored, _real_strategy),
    "pm16": Mode("pm16", True, "16-bit ring-0 protected mode (BT)", _pm_reference, _pm_monitored,
                 _pm_strategy("pm16")),
    "pm32": Mode("pm32", True, "32-bit ring-0 protected mode (BT; far returns to ring 3 switch to DE)",
                 _pm_reference, _pm_monitored, _pm_strategy("pm32")),
    "ring3": Mode("ring3", True, "32-bit ring 3: DE at IOPL < 3 with IF=1, BT at IOPL 3 or IF=0",
                  _pm_reference, _pm_monitored, _pm_strategy("ring3")),
    "v86": Mode("v86", True, "V8086 (DE)", _pm_reference, _pm_monitored, _pm_strategy("v86")),
}
